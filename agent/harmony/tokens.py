"""The ids of harmony's special tokens in o200k_harmony: the one place the agent spells them out.

Everything in :mod:`ossagent.agent` that needs an id (the renderer, the parser, the prompt builder, the
grammar hooks, the backends' stop tokens) imports it from here. tests/agent/test_harmony_tokens.py checks
each id against the tokenizer.
"""

from __future__ import annotations

RETURN = 200002  # <|return|>: the final answer is done (the turn ends)
CONSTRAIN = 200003  # <|constrain|>: the content type of a call's body (``<|constrain|>json``)
CHANNEL = 200005  # <|channel|>
START = 200006  # <|start|>: a message header begins
END = 200007  # <|end|>: a message ends and another follows
MESSAGE = 200008  # <|message|>: the header ends, the content begins
CALL = 200012  # <|call|>: a tool call is done (the turn ends)
ENDOFTEXT = 199_999  # <|endoftext|>: gpt-oss's end of a raw document (a raw completion stops there)

NAMES = {RETURN: "<|return|>", CONSTRAIN: "<|constrain|>", CHANNEL: "<|channel|>", START: "<|start|>",
         END: "<|end|>", MESSAGE: "<|message|>", CALL: "<|call|>", ENDOFTEXT: "<|endoftext|>"}
STOPS = (RETURN, CALL)  # the tokens that end an assistant turn (generation stops there)
FIRST_SPECIAL = 199_998  # every id from here up is a special token (<|startoftext|>, then reserved ones)
GPT_OSS_VOCAB = 201_088  # rows of gpt-oss's embedding (the tokenizer has one more reserved id)
