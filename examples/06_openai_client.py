"""06 - Using ``ossagent serve`` from the official openai client: chat, streaming and tool calls.

Starts the server in this process on a free loopback port (``ossagent serve`` does the same on a fixed one).
Run: python examples/06_openai_client.py
"""

from __future__ import annotations

import json
from typing import Any

import openai

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import start_in_thread

SCRIPT = [
    "<|channel|>analysis<|message|>Say hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello there!<|return|>",
    "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant to=functions.get_weather"
    '<|channel|>commentary <|constrain|>json<|message|>{"city":"Oslo"}<|call|>',
    "<|channel|>final<|message|>It is 4 °C and snowing in Oslo.<|return|>",
]
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def main(use_model: bool = True) -> list[str]:
    backend, _ = example_backend(SCRIPT, use_model=use_model)
    server = start_in_thread(create_app(ServerConfig(backend=backend, model_id="gpt-oss-20b")))
    client = openai.OpenAI(base_url=server.url, api_key="not-needed")
    answers = []
    try:
        stream = client.chat.completions.create(model="gpt-oss-20b", stream=True,
                                                messages=[{"role": "user", "content": "Say hi"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        print("streamed:", text)
        answers.append(text)
        messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
        r = client.chat.completions.create(model="gpt-oss-20b", messages=messages, tools=[WEATHER])
        call = r.choices[0].message.tool_calls[0]
        print("tool call:", call.function.name, call.function.arguments)
        weather = {"city": json.loads(call.function.arguments)["city"], "celsius": 4, "sky": "snow"}
        messages += [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather)}]
        r = client.chat.completions.create(model="gpt-oss-20b", messages=messages, tools=[WEATHER])
        print("answer:", r.choices[0].message.content)
        answers.append(r.choices[0].message.content or "")
    finally:
        server.stop()
    return answers


if __name__ == "__main__":
    main()
