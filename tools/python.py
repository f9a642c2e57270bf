"""The ``python`` tool: a stateful, sandboxed interpreter, described to the model exactly as in training.

The model sends raw code (recipient ``python``); a long-lived worker inside :mod:`ossagent.sandbox` keeps the
globals across calls like a notebook kernel. A call that runs past the timeout is interrupted and keeps the
state; one that cannot be interrupted (or crashes the interpreter) costs a restart, and the model is told its
variables are gone. The workspace is mounted at ``/mnt/data``.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

from ossagent.sandbox import Backend, ExecResult, Policy, PythonSandbox, SandboxUnavailable, choose_backend
from ossagent.tools.base import ModelError, ToolDescription, ToolFailure, ToolResult, UserError

# harmony's ToolNamespaceConfig.python(), word for word (see shared/docs/harmony-builtin-tools.json).
PYTHON_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a stateful Jupyter "
    "notebook environment. python will respond with the output of the execution or time out after 120.0 "
    "seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this "
    "session is UNKNOWN. Depends on the cluster."
)

NO_OUTPUT = "[WARN] No output available. Use print() to output anything to stdout to receive the output"
STATE_LOST = (
    "The Python state was lost: variables, imports and files outside /mnt/data are gone; files in /mnt/data "
    "were kept. Run again the imports and definitions you still need."
)


def _status_text(status: int | None) -> str:
    if status is None:
        return "unknown exit status"
    sig = -status if status < 0 else status - 128 if status > 128 else 0
    if sig:
        try:
            return f"killed by signal {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {status}"


def format_result(result: ExecResult, timeout: float, *, restarted_before: bool = False) -> str:
    """The text the model sees for one call."""
    parts: list[str] = []
    if restarted_before:
        parts.append("[NOTE] The Python process had stopped since the last call and was restarted. " + STATE_LOST)
    body = result.output
    if result.value is not None:
        body = body + ("" if not body or body.endswith("\n") else "\n") + result.value
    if body:
        parts.append(body.rstrip("\n"))
    if result.error == "killed":
        parts.append(
            f"[ERROR] The code was still running {timeout:g} seconds after it started and did not stop when "
            f"interrupted, so the Python process was killed. {STATE_LOST}"
        )
    elif result.error == "crashed":
        parts.append(f"[ERROR] The Python process crashed ({_status_text(result.exit_status)}). {STATE_LOST}")
    if not parts:
        return NO_OUTPUT
    return "\n".join(parts)


class PythonTool:
    """``python``: stateful code execution in a sandbox (see :mod:`ossagent.sandbox` for what is enforced)."""

    def __init__(self, workspace: Path, *, backend: Backend | None = None, policy: Policy | None = None,
                 timeout: float = 120.0) -> None:
        workspace = Path(workspace)
        if not workspace.is_dir():
            raise UserError(f"python tool: workspace {workspace} is not a directory")
        self.policy = replace(policy, workspace=workspace) if policy else Policy(workspace=workspace)
        self.policy = replace(self.policy, wall_timeout=timeout)
        try:
            # probed now, so a machine without isolation fails at start-up, not at the model's first call
            self.backend = choose_backend(backend, network=self.policy.network)
        except SandboxUnavailable as exc:
            raise UserError(f"python tool: {exc}") from exc
        self._sandbox: PythonSandbox | None = None

    @property
    def name(self) -> str:
        return "python"

    def description(self) -> ToolDescription:
        return ToolDescription(name="python", description=PYTHON_DESCRIPTION)

    def call(self, recipient: str, content: str) -> ToolResult:
        if recipient not in ("python", "functions.python"):
            raise ModelError(f"Unknown function {recipient!r}.", hint="Send the code to `python` itself.")
        if not content.strip():
            raise ModelError("The message to python was empty.", hint="Send the Python code to run as the message.")
        if len(content.encode()) > 1 << 20:
            raise ModelError("The code is larger than 1 MiB.", hint="Write large data to /mnt/data instead.")
        try:
            if self._sandbox is None:
                self._sandbox = PythonSandbox(self.policy, self.backend)
            before = self._sandbox.restarts
            lost_before = self._sandbox.proc is not None and self._sandbox.proc.poll() is not None
            result = self._sandbox.run(content)
        except SandboxUnavailable as exc:
            raise ToolFailure(
                f"The Python sandbox could not start: {exc}",
                hint="Python is unavailable for now; continue without running code.",
            ) from exc
        text = format_result(result, self.policy.wall_timeout, restarted_before=lost_before)
        return ToolResult(
            recipient=recipient,
            text=text,
            is_error=result.error in ("killed", "crashed"),
            metadata={
                "error": result.error,
                "state_lost": result.state_lost or self._sandbox.restarts != before,
                "truncated": result.truncated,
                "seconds": round(result.seconds, 3),
                "backend": self.backend.value,
            },
        )

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
