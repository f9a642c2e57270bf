"""Long runs: the context budget of a run, tool outputs bounded in tokens, and compaction.

:mod:`~ossagent.agent.context.budget` says how many tokens a prompt may have (the window the backend offers
minus the room kept for the next completion) and cuts tool outputs to their token budget;
:mod:`~ossagent.agent.context.compaction` shrinks a conversation that outgrew its budget, step by step;
:mod:`~ossagent.agent.context.summary` asks the model itself for a summary of the oldest turns.
"""
