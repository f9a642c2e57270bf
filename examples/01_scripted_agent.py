"""01 - An agent task end to end: the model reasons, calls a Python function, and answers.

Run: python examples/01_scripted_agent.py        (uses OSSAGENT_MODEL when set, else a scripted model)
"""

from __future__ import annotations

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.events import FinalDelta, ReasoningDelta, ToolCall, ToolResultEvent
from ossagent.agent.loop import Agent, RunResult

SCRIPT = [
    "<|channel|>analysis<|message|>The user wants the trip length. I should look up the distance.<|end|>"
    "<|start|>assistant to=functions.distance_km<|channel|>commentary <|constrain|>json<|message|>"
    '{"origin":"Paris","destination":"Berlin"}<|call|>',
    "<|channel|>analysis<|message|>878 km at 100 km/h is about 8.8 hours.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Paris to Berlin is 878 km: about 8.8 hours at 100 km/h."
    "<|return|>",
]

DISTANCES = {("Paris", "Berlin"): 878, ("Paris", "Madrid"): 1054}


def distance_km(origin: str, destination: str) -> int:
    """Road distance between two cities in kilometres.

    Args:
        origin: the city you leave from
        destination: the city you go to
    """
    return DISTANCES.get((origin, destination)) or DISTANCES.get((destination, origin)) or -1


def main(use_model: bool = True) -> RunResult:
    backend, _ = example_backend(SCRIPT, use_model=use_model)
    agent = Agent(backend, functions=[distance_km], reasoning="low",
                  instructions="Answer with the distance and the driving time at 100 km/h.")
    stream = agent.stream("How long does it take to drive from Paris to Berlin?")
    answering = False
    for ev in stream:
        if isinstance(ev, ReasoningDelta):
            print(f"\033[2m{ev.text}\033[0m", end="", flush=True)
        elif isinstance(ev, ToolCall):
            print(f"\n-> {ev.recipient}({ev.arguments})")
        elif isinstance(ev, ToolResultEvent):
            print(f"<- {ev.text}")
        elif isinstance(ev, FinalDelta):
            if not answering:
                answering = True
                print("\n")
            print(ev.text, end="", flush=True)
    result = stream.result()
    print(f"\n\n[{result.stop_reason}; {result.usage.turns} turns, {result.usage.completion_tokens} tokens generated]")
    return result


if __name__ == "__main__":
    main()
