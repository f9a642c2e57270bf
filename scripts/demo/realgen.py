"""Gold transcripts produced by the product itself: the real :class:`ossagent.agent.loop.Agent`, the real tools
(python in the sandbox, the browser over the offline search backend, function tools) and our harmony renderer.

A :class:`GoldBackend` plays the model: at each call it reads the tool results from the prompt, computes the
next gold messages of the task, and emits their tokens. The training sequence is the last prompt plus the last
completion, exactly what the agent loop shows the model; the loss mask marks the tokens the backend emitted.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ossagent.agent import prompt as hp
from ossagent.agent.backends.base import GenerationParams, HarnessError, Prompt
from ossagent.agent.harmony.tokens import END, RETURN
from ossagent.agent.transcript import Msg
from scripts.demo.tasks import Task


class GoldBackend:
    def __init__(self, task: Task, encoding: Any, tools: Sequence[Any] = ()) -> None:
        self.task, self.enc, self.tools = task, encoding, list(tools)
        self.calls: list[tuple[list[int], list[int]]] = []
        self.encoding, self.vocab_size, self.takes_hooks = encoding, None, False  # the backend protocol

    def _next_messages(self, prompt: Sequence[int]) -> list[Msg]:
        msgs = hp.parse_prompt(prompt, self.enc)
        last_user = max(i for i, m in enumerate(msgs) if m.role == "user")
        obs = [m.text for m in msgs[last_user + 1 :] if m.role == "tool"]
        calls_done = len(obs)
        if self.task.python_restart_before == calls_done:
            self._kill_python()
        i = 0
        while calls_done:  # skip the steps already taken: everything up to the calls_done-th call
            if self.task.steps[i].recipient:
                calls_done -= 1
            i += 1
        out = []
        for step in self.task.steps[i:]:
            text = step.text(obs) if callable(step.text) else step.text
            out.append(Msg("assistant", text, recipient=step.recipient, channel=step.channel,
                           content_type=step.content_type))
            if step.recipient or step.channel == "final":
                break
        return out

    def _kill_python(self) -> None:
        for t in self.tools:
            proc = getattr(getattr(t, "_sandbox", None), "proc", None)  # dev script: reach into the real tool
            if t.name == "python" and proc is not None:
                proc.kill()
                proc.wait()

    def generate(self, prompt: Prompt, params: GenerationParams, hook: Any = None) -> Iterator[int]:
        tokens: list[int] = []
        for m in self._next_messages(prompt.tokens):
            tokens += hp.render_message(m, self.enc)
        start = hp.assistant_start(self.enc)
        if tokens[: len(start)] != start:
            raise HarnessError("a rendered assistant message must begin with <|start|>assistant")
        tokens = tokens[len(start) :]
        if tokens[-1] == END:
            tokens[-1] = RETURN
        self.calls.append((list(prompt.tokens), tokens))
        yield from tokens


def write_world(task: Task, root: Path) -> tuple[Path, Path]:
    """The task's workspace files and site pages on disk."""
    ws, site = root / "workspace", root / "site"
    ws.mkdir()
    site.mkdir()
    for name, text in task.files.items():
        (ws / name).write_text(text)
    for url, (title, text) in task.pages.items():
        body = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
        (site / url.rsplit("/", 1)[-1]).write_text(
            f"<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{body}</body></html>\n")
    return ws, site


def make_tools(task: Task, ws: Path, site: Path, stack: ExitStack) -> list[Any]:
    tools: list[Any] = []
    if "python" in task.builtin_tools:
        from ossagent.tools.python import PythonTool

        tools.append(PythonTool(ws))
    if "browser" in task.builtin_tools:
        from ossagent.tools.browser import Browser, BrowserConfig, BrowserTool, OfflineBackend

        tools.append(BrowserTool(Browser(OfflineBackend(site), BrowserConfig())))
    for t in tools:
        stack.callback(t.close)
    return tools


def make_functions(task: Task) -> list[Any]:
    from ossagent.agent.functions import FunctionTool

    return [FunctionTool.from_schema(f.name, f.parameters, f.description,
                                     implementation=lambda _f=f, **kw: _f.impl(kw)) for f in task.functions]


def make_agent(task: Task, backend: Any, tools: list[Any], constrained: bool | None = False,
               temperature: float = 1.0, current_date: str | None = None) -> Any:
    """The agent for ``task``; the system message carries ``current_date``, by default the task's own."""
    from ossagent.agent.loop import Agent

    return Agent(backend, tools=tools, functions=make_functions(task), instructions=task.instructions,
                 reasoning=task.effort,
                 response_format=task.response_format[1] if task.response_format else None,
                 temperature=temperature, current_date=current_date or task.date, constrained=constrained)


def gold_sequence(task: Task, encoding: Any) -> tuple[list[int], list[bool], Any]:
    """Run the task's gold policy through the real agent and tools; (tokens, loss mask, run result)."""
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ossagent-demo-") as tmp:
        ws, site = write_world(task, Path(tmp))
        tools = make_tools(task, ws, site, stack)
        for t in tools:
            if t.name == "python":
                # start the sandbox from this (long-lived) thread: the agent's dispatcher calls tools from
                # short-lived threads, and bwrap --die-with-parent kills the process when that thread ends,
                # which would make restarts (and so the data) depend on timing
                t.call("python", "pass")
        backend = GoldBackend(task, encoding, tools)
        result = make_agent(task, backend, tools).run(task.user)
    prompt, out = backend.calls[-1]
    tokens = prompt + out
    mask = [False] * len(tokens)
    for p, o in backend.calls:
        if tokens[: len(p)] != p:
            raise AssertionError("each prompt must extend the previous one (KV-prefix property of the loop)")
        for j in range(len(p), len(p) + len(o)):
            mask[j] = True
    return tokens, mask, result


def dump(task: Task, tokens: list[int], encoding: Any) -> str:
    return json.dumps({"family": task.family, "effort": task.effort, "text": encoding.decode(tokens)})
