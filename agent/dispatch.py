"""Route a tool call to the tool that answers it, and turn every failure into a message for the model.

Built-in tools (``python``, ``browser.*``) and local function tools (``functions.NAME`` backed by a Python
callable) run here; function tools without a callable belong to the caller and are returned to it. Whose
fault a failure is decides what happens: a malformed or unknown call and a tool failure or timeout go back
to the model as the tool's answer (it can recover); nothing here raises into the loop.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ossagent.tools.base import ModelError, Tool, ToolCallError, ToolFailure, ToolResult, UserError


@dataclass
class Dispatcher:
    tools: Sequence[Tool] = ()
    caller_functions: frozenset[str] = frozenset()  # functions.NAME answered by the caller
    timeout: float | None = None  # seconds per call; None trusts the tool's own limits

    def __post_init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._by_name: dict[str, Tool] = {}
        for tool in self.tools:
            if tool.name in self._by_name:
                raise UserError(f"two tools share the namespace {tool.name!r}")
            self._by_name[tool.name] = tool

    def namespace(self, recipient: str) -> str:
        return recipient.split(".", 1)[0]

    def tool_for(self, recipient: str) -> Tool | None:
        return self._by_name.get(self.namespace(recipient))

    def returns_to_caller(self, recipient: str) -> bool:
        if not recipient.startswith("functions."):
            return False
        return recipient.split(".", 1)[1] in self.caller_functions

    def known_recipients(self) -> list[str]:
        out = []
        for tool in self.tools:
            fns = tool.description().functions
            out += [f"{tool.name}.{f.name}" for f in fns] if fns else [tool.name]
        out += [f"functions.{n}" for n in sorted(self.caller_functions)]
        return sorted(set(out), key=out.index)

    def call(self, recipient: str, content: str) -> ToolResult:
        """Run one call; never raises for the model's or the tool's faults."""
        started = time.monotonic()
        tool = self._by_name.get(self.namespace(recipient))
        try:
            if tool is None:
                raise ModelError(
                    f"Unknown tool {recipient!r}.",
                    hint="Available: " + (", ".join(self.known_recipients()) or "no tools") + ".",
                )
            result = self._run(tool, recipient, content)
        except ToolCallError as exc:
            result = ToolResult(recipient, exc.for_model(), is_error=True,
                                metadata={"fault": "model" if isinstance(exc, ModelError) else "tool"})
        except Exception as exc:  # a bug in a local function: the tool's fault, the model may try again
            result = ToolResult(recipient, f"The tool failed: {type(exc).__name__}: {exc}", is_error=True,
                                metadata={"fault": "tool"})
        result.metadata.setdefault("elapsed_s", round(time.monotonic() - started, 4))
        return result

    def _run(self, tool: Tool, recipient: str, content: str) -> ToolResult:
        if self.timeout is None:
            return tool.call(recipient, content)
        # One long-lived worker thread: tools may start processes tied to the thread that started them
        # (PR_SET_PDEATHSIG), so that thread must live as long as the tools do.
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ossagent-tool")
        future = self._pool.submit(tool.call, recipient, content)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            stuck, self._pool = self._pool, None  # the next call gets a fresh worker
            stuck.shutdown(wait=False, cancel_futures=True)
            raise ToolFailure(
                f"{recipient} did not answer within {self.timeout:g} s.",
                hint="Try a smaller or simpler request.",
            ) from None

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for tool in self.tools:  # close on the thread that started the tools' processes
                pool.submit(tool.close)
            pool.shutdown(wait=True)
        else:
            for tool in self.tools:
                tool.close()
