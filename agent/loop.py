"""The agent loop: render, generate, parse, dispatch, append, repeat.

:class:`Agent` holds what frames a run (backend, tools, instructions, reasoning effort, limits, answer
format). :meth:`Agent.stream` yields typed events (:mod:`ossagent.agent.events`) as the model produces
them; :meth:`Agent.run` collects them into a :class:`RunResult`.

CoT follows harmony: during a tool chain every message stays and the next prompt is the previous prompt
plus exactly the tokens the model produced plus the tool's answer, so the engine's KV prefix cache
computes only the new tokens. When a turn ends in a final answer, the chain of thought before it is
dropped from later prompts (the transcript keeps it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ossagent.agent import prompt as hp
from ossagent.agent.approvals import Approver, Decision, PendingCall, Policy, record, refusal
from ossagent.agent.backends.base import Backend, Closable, GenerationParams, HarnessError
from ossagent.agent.choices import ReasoningEffort, ToolChoice, effort
from ossagent.agent.context.budget import ContextBudget, bound_tool_output
from ossagent.agent.context.compaction import Compactor
from ossagent.agent.context.summary import ModelSummariser
from ossagent.agent.dispatch import Dispatcher
from ossagent.agent.events import (
    ErrorEvent,
    Event,
    FinalDelta,
    PreambleDelta,
    ReasoningDelta,
    Stopped,
    ToolCall,
    ToolCallDelta,
    ToolCallStarted,
    ToolResultEvent,
    Usage,
)
from ossagent.agent.functions import NAMESPACE, Functions
from ossagent.agent.grammar_hooks import ConstraintRequest, GrammarHooks, HookFactory
from ossagent.agent.limits import Limits, StopMatcher
from ossagent.agent.output import OutputError
from ossagent.agent.output import response_format as response_format_from
from ossagent.agent.transcript import Msg, Transcript, tool_result, user
from ossagent.tools.base import Tool, UserError

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook

@dataclass
class RunResult:
    """What a run produced. ``transcript`` is always complete, whatever ``stop_reason`` says."""

    text: str
    stop_reason: str
    transcript: Transcript
    usage: Usage
    output: Any = None  # the structured answer (a pydantic instance or parsed JSON) when a format was set
    citations: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)  # calls returned to the caller
    errors: list[ErrorEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final" and not any(e.kind == "output" for e in self.errors)


class Agent:
    """A gpt-oss agent over any :class:`~ossagent.agent.backends.base.Backend`.

    tools: built-in tools (``PythonTool``, ``BrowserTool``, ``FilesTool``) that run here.
    functions: function tools (``functions.NAME``): Python callables, pydantic models,
        :class:`~ossagent.agent.functions.FunctionTool` objects or a ``Functions`` namespace. Those with
        an implementation run here; a call to one without ends the run with ``stop_reason == "tool_calls"``
        so the caller can run it and resume with ``tool_outputs``.
    response_format: a pydantic model class or a JSON Schema (dict) the final answer must follow.
    constrained: constrain decoding with grammars (valid calls and formats, ``tool_choice``); the default
        (None) does it when the backend takes step hooks (the local engine).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        tools: Sequence[Tool] = (),
        functions: Functions | Iterable[Any] = (),
        instructions: str | None = None,
        reasoning: ReasoningEffort | str | None = "medium",
        response_format: Any = None,
        limits: Limits | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        tool_choice: ToolChoice | str | tuple[str, str] | Mapping[str, Any] = "auto",
        tool_timeout: float | None = 120.0,
        model_identity: str | None = None,
        current_date: str | None = None,
        constrained: bool | None = None,
        reasoning_budget: int | None = None,
        hook_factory: HookFactory | None = None,
        encoding: Any = None,
        mcp: Sequence[Any] = (),
        workspace: str | None = None,
        approvals: Policy | None = None,
        approver: Approver | None = None,
    ) -> None:
        self.backend = backend
        self.approvals, self.approver = approvals or Policy(), approver
        self.reasoning = effort(reasoning)
        self.limits = limits or Limits()
        if not 0.0 <= temperature <= 2.0:
            raise UserError(f"temperature must be within [0, 2], not {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise UserError(f"top_p must be within (0, 1], not {top_p}")
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.stop = tuple(stop)
        StopMatcher(self.stop)  # validates
        if any(t.name == NAMESPACE for t in tools):
            raise UserError("pass function tools as functions=, not tools=")
        mcp_tools: list[Tool] = []
        if mcp:  # connected now; closed if the rest fails
            from ossagent.agent.mcp import connect

            mcp_tools = connect(mcp, workspace or ".")
        tools = [*tools, *mcp_tools]
        try:
            self.functions = functions if isinstance(functions, Functions) else Functions(functions)
            caller = frozenset(f.name for f in self.functions if f.implementation is None)
            local = [self.functions] if len(caller) < len(self.functions) else []
            self.dispatcher = Dispatcher([*tools, *local], caller, tool_timeout)
            self.answer = response_format_from(response_format)
            self.config = hp.PromptConfig(
                reasoning=self.reasoning,
                instructions=instructions,
                builtin_tools=tuple(t.description() for t in tools),
                function_tools=self.functions.description().functions,
                response_format=(self.answer.name, self.answer.schema, self.answer.description or None)
                if self.answer else None,
                model_identity=model_identity,
                current_date=current_date,
            )
            self.tool_choice = ToolChoice.parse(tool_choice).check(
                [f.name for f in self.config.function_tools], bool(self.config.function_tools or self.config.builtin_tools))
        except BaseException:
            for tool in mcp_tools:
                tool.close()
            raise
        self.builtin_recipients = tuple(
            f"{t.name}.{f.name}" if f else t.name
            for t in self.config.builtin_tools for f in (t.functions or (None,))
        )
        if hook_factory is None and (constrained or (constrained is None and backend.takes_hooks)):
            hook_factory = GrammarHooks(self, reasoning_budget)
        self.hook_factory = hook_factory
        self.encoding = encoding if encoding is not None else backend.encoding

    def run(self, task: str | None = None, **kwargs: Any) -> RunResult:
        """Run to a final answer, a call for the caller, or a limit; see :meth:`stream`."""
        return self.stream(task, **kwargs).result()

    def stream(
        self,
        task: str | None = None,
        *,
        transcript: Transcript | None = None,
        tool_outputs: Sequence[tuple[str, str]] = (),
        reasoning: ReasoningEffort | str | None = None,
        limits: Limits | None = None,
        approvals: Sequence[Decision] = (),
    ) -> RunStream:
        """Events of one run (iterate); the last two are :class:`Usage` and :class:`Stopped`.

        transcript: continue this conversation (it is copied; the result carries the new one).
        tool_outputs: answers to calls returned earlier, as (recipient, text), appended first.
        reasoning: this run's effort, overriding the agent's.
        approvals: decisions on calls a run paused for (``stop_reason == "approval"``), by call id.
        """
        run = _Run(self, transcript, reasoning, limits)
        run.decisions = {d.call_id: d for d in approvals}
        for recipient, text in tool_outputs:
            run.transcript.append(tool_result(recipient, text, channel="commentary"))
        pending = run.transcript.pending_tool_call()
        if pending is not None and self.dispatcher.returns_to_caller(pending.recipient or ""):
            raise UserError(f"the transcript ends with a call to {pending.recipient} that you run: pass its "
                            "output as tool_outputs=[(recipient, text)]")
        if task is not None:
            if pending is not None:
                raise UserError(f"the transcript ends with a call to {pending.recipient} that was never answered;"
                                " resume it without a new task first")
            run.transcript.append(user(task))
        if not run.transcript.messages:
            raise UserError("nothing to do: give a task or a transcript that ends with one")
        return RunStream(run)

    def close(self) -> None:
        self.dispatcher.close()


class _Run:
    """The state of one :meth:`Agent.stream` call."""

    def __init__(
        self, agent: Agent, transcript: Transcript | None, reasoning: ReasoningEffort | str | None,
        limits: Limits | None,
    ) -> None:
        self.agent = agent
        self.limits = limits or agent.limits
        run_effort = effort(reasoning) if reasoning is not None else agent.reasoning
        self.config = replace(agent.config, reasoning=run_effort)
        self.transcript = transcript.copy() if transcript is not None else Transcript()
        self.transcript.settings = {**self.transcript.settings, **self.config.settings()}
        self.usage = Usage()
        self.started = time.monotonic()
        self.prev_tokens: list[int] = []  # last prompt + what the model produced (the engine's KV prefix)
        self.decisions: dict[str, Decision] = {}
        self.budget = ContextBudget.resolve(self.limits, agent.backend)

    def _timed_out(self) -> bool:
        lim = self.limits.max_time
        return lim is not None and time.monotonic() - self.started > lim

    def _budget(self, prompt_tokens: int) -> int:
        per_turn = min(self.limits.max_turn_tokens, self.budget.room(prompt_tokens) or self.limits.max_turn_tokens)
        if self.limits.max_tokens is None:
            return per_turn
        return min(per_turn, self.limits.max_tokens - self.usage.completion_tokens)

    def _approved(self, call: Msg, resumed: bool = False) -> Generator[Event, None, Msg | None]:
        """Run a call if the approval policy (or a decision on it) lets it, else refuse it; None: it waits for a
        decision (the run pauses). ``resumed``: a call from a paused run, announced again before it is decided."""
        agent, recipient, call_id = self.agent, call.recipient or "", call.meta.get("call_id", "")
        tool = agent.dispatcher.tool_for(recipient)
        verdict = agent.approvals.verdict(recipient, call.text, tool)
        if verdict == "allow":  # recorded for tools that would ask by default (MCP servers)
            meta = {"approval": record(None, verdict)} if hasattr(tool, "default_approval") else {}
            msg, event = self._dispatch(call, **meta)
            yield event
            return msg
        decision = self.decisions.get(call_id) if verdict == "ask" else None
        if verdict == "ask" and decision is None and agent.approver is not None:
            decision = agent.approver(PendingCall(call_id, recipient, call.text))
        if verdict == "ask" and decision is None:
            return None
        if resumed:
            yield ToolCall(call_id, recipient, call.text, call.channel, call.content_type)
        approval = record(decision, verdict)
        if self.transcript.messages and self.transcript.messages[-1] is call:
            self.transcript.messages[-1] = call.with_meta(approval=approval)
        if decision is not None and decision.approve:
            msg, event = self._dispatch(call, approval=approval)
        else:
            reason = decision.reason if decision is not None else "the approval policy denies it"
            msg = tool_result(recipient, refusal(recipient, reason), channel=call.channel, call_id=call_id,
                              is_error=True, metadata={"fault": "approval"}, approval=approval)
            self.transcript.append(msg)
            event = ToolResultEvent(call_id, recipient, msg.text, True, {"fault": "approval"})
        yield event
        return msg

    def _dispatch(self, call: Msg, **meta: Any) -> tuple[Msg, ToolResultEvent]:
        """Run a call here and append its answer to the transcript."""
        recipient = call.recipient or ""
        result = self.agent.dispatcher.call(recipient, call.text)
        text, cut = bound_tool_output(result.text, recipient, self.budget, self.agent.encoding)
        if cut:
            result.metadata["cut_tokens"] = cut
        msg = tool_result(recipient, text, channel=call.channel, call_id=call.meta.get("call_id"),
                          is_error=result.is_error, metadata=result.metadata, **meta)
        self.transcript.append(msg)
        return msg, ToolResultEvent(call.meta.get("call_id", ""), recipient, text, result.is_error,
                                    dict(result.metadata))

    def _render(self) -> list[int]:
        return hp.render_prompt(self.config, self.transcript.prompt_messages(), self.agent.encoding)

    def _fit(self, prompt: list[int]) -> Generator[Event, None, list[int] | None]:
        """The prompt within the context budget: as it is, compacted, or None (the run must stop)."""
        if self.budget.fits(len(prompt)):
            return prompt
        if self.budget.compaction:
            out = self._compactor().compact(self.transcript.messages)
            self.transcript.messages = out.messages
            u = self.usage
            self.usage = replace(u, prompt_tokens=u.prompt_tokens + out.prompt_tokens,
                                 completion_tokens=u.completion_tokens + out.completion_tokens)
            yield from out.events
            prompt = self._render()
            if self.budget.fits(len(prompt)):
                return prompt
        yield ErrorEvent("limit", f"run stopped: the conversation needs {len(prompt)} prompt tokens but the "
                                  f"{self.budget.window}-token context holds {self.budget.limit} with "
                                  f"{self.budget.reserve} kept for the answer"
                                  + ("" if self.budget.compaction else " (compaction is off)"))
        return None

    def _compactor(self) -> Compactor:
        agent = self.agent
        hooks = agent.hook_factory
        hook = None
        if isinstance(hooks, GrammarHooks):
            hook = hooks.summary_hook
        summarise = ModelSummariser(agent.backend, agent.encoding, self.config, hook=hook,
                                    temperature=agent.temperature, seed=agent.seed)
        return Compactor(self.config, agent.encoding, self.budget, summarise)

    def events(self) -> Generator[Event, None, None]:
        agent, enc = self.agent, self.agent.encoding
        self.started = time.monotonic()  # the clock starts when the run does (not while it queues)
        chain: list[int] | None = None
        pending = self.transcript.pending_tool_call()
        # a saved run that stopped between a call and its answer (or paused for approval): answer it first
        if pending is not None and (yield from self._approved(pending, resumed=True)) is None:
            yield from self._stop("approval")
            return
        while True:
            reason = self._limit_reason()
            if reason:
                yield ErrorEvent("limit", f"run stopped: {reason.replace('_', ' ')} reached")
                yield from self._stop(reason)
                return
            choice = agent.tool_choice if chain is None else ToolChoice()  # forced only for the first call
            fitted = yield from self._fit(chain if chain is not None else self._render())
            if fitted is None:
                yield from self._stop("context")
                return
            built = hp.build_prompt(self.config, self.transcript.prompt_messages(), enc, choice, fitted)
            prompt = built.tokens
            cached = _common_prefix(prompt, self.prev_tokens)
            params = GenerationParams(max_tokens=self._budget(len(prompt)), temperature=agent.temperature,
                                      top_p=agent.top_p, seed=agent.seed)
            hook = agent.hook_factory(ConstraintRequest(self.config, choice, enc)) if agent.hook_factory else None
            turn = _Turn(self, enc)
            try:
                yield from turn.generate(built, params, hook)
            except (HarnessError, AssertionError, GeneratorExit):  # a broken script, a bug, or the consumer left
                self.transcript.extend(turn.finish())
                self._count(prompt, cached, turn.generated, turn.reasoning)
                raise
            except Exception as exc:  # the backend failed: keep what we have and report
                self.transcript.extend(turn.finish())
                self._count(prompt, cached, turn.generated, turn.reasoning)
                yield ErrorEvent("backend", f"{type(exc).__name__}: {exc}")
                yield from self._stop("error")
                return
            new_msgs = turn.finish()
            self.transcript.extend(new_msgs)
            self._count(prompt, cached, turn.generated, turn.reasoning)
            self.prev_tokens = prompt + turn.generated
            if turn.stop_hit:
                yield from self._stop("stop")
                return
            if turn.timed_out:
                yield ErrorEvent("limit", "run stopped: max time reached")
                yield from self._stop("timeout")
                return
            last = new_msgs[-1] if new_msgs else None
            ended = bool(turn.generated) and turn.generated[-1] in params.stop_tokens
            if last is None or not ended:
                yield ErrorEvent("limit", "the model's output was cut off by the token limit")
                yield from self._stop("max_tokens")
                return
            if not last.is_tool_call:
                yield from self._finish_final(last)
                return
            recipient = last.recipient or ""
            if agent.dispatcher.returns_to_caller(recipient):
                yield from self._stop("tool_calls")
                return
            answer = yield from self._approved(last)
            if answer is None:
                yield from self._stop("approval")
                return
            chain = self.prev_tokens + hp.render_message(answer, enc) + hp.assistant_start(enc)

    def _limit_reason(self) -> str | None:
        if self.usage.turns >= self.limits.max_turns:
            return "max_turns"
        if self.limits.max_tokens is not None and self.usage.completion_tokens >= self.limits.max_tokens:
            return "max_tokens"
        if self._timed_out():
            return "timeout"
        return None

    def _count(self, prompt: list[int], cached: int, generated: list[int], reasoning: int = 0) -> None:
        u = self.usage
        self.usage = Usage(u.prompt_tokens + len(prompt), u.completion_tokens + len(generated),
                           u.cached_tokens + cached, u.turns + 1, u.reasoning_tokens + reasoning)

    def _finish_final(self, last: Msg) -> Iterator[Event]:
        answer = self.agent.answer
        if answer is not None and last.channel == "final":
            try:
                answer.parse(last.text)
            except OutputError as exc:
                yield ErrorEvent("output", str(exc))
        yield from self._stop("final" if last.channel in ("final", None) else "incomplete")

    def _stop(self, reason: str) -> Iterator[Event]:
        yield self.usage
        yield Stopped(reason)


class _Turn:
    """One model call: tokens in, events and messages out."""

    def __init__(self, run: _Run, encoding: Any) -> None:
        self.run = run
        self.parser = hp.TurnParser(encoding)
        self.generated: list[int] = []
        self.matcher = StopMatcher(run.agent.stop)
        self.stop_hit = False
        self.timed_out = False
        self.reasoning = 0  # generated tokens inside chain-of-thought bodies
        self._call_id: str | None = None
        self._msgs: list[Msg] = []

    def generate(self, prompt: hp.Prompt, params: GenerationParams, hook: StepHook | None) -> Iterator[Event]:
        stream = self.run.agent.backend.generate(prompt, params, hook)
        try:
            for tok in stream:
                self.generated.append(tok)
                self.reasoning += self.parser.in_reasoning
                for item in self.parser.feed(tok):
                    yield from self._on(item)
                if self.matcher.hit:
                    self.stop_hit = True
                    return
                if self.run._timed_out():
                    self.timed_out = True
                    return
        finally:
            if isinstance(stream, Closable):
                stream.close()

    def _on(self, item: hp.Delta | Msg | hp.ParseProblem) -> Iterator[Event]:
        if isinstance(item, Msg):
            yield from self._message_done(item)
            return
        if isinstance(item, hp.ParseProblem):
            if item.kind != "truncated":  # a cut-off turn is reported as the limit that cut it
                yield ErrorEvent("model", f"malformed harmony output ({item.kind}): {item.message}")
            return
        if item.recipient:
            if self._call_id is None:
                self._call_id = "call_" + uuid.uuid4().hex[:24]
                yield ToolCallStarted(self._call_id, item.recipient, item.channel)
            if item.text:
                yield ToolCallDelta(self._call_id, item.text)
        elif item.channel == "analysis":
            yield ReasoningDelta(item.text)
        elif item.channel == "commentary":
            yield PreambleDelta(item.text)
        else:
            text = self.matcher.feed(item.text)
            if text:
                yield FinalDelta(text)

    def _message_done(self, msg: Msg) -> Iterator[Event]:
        if msg.is_tool_call:
            call_id = self._call_id or "call_" + uuid.uuid4().hex[:24]
            msg = msg.with_meta(call_id=call_id)
            yield ToolCall(call_id, msg.recipient or "", msg.text, msg.channel, msg.content_type)
        elif msg.channel in ("final", None) and msg.role == "assistant":
            tail = self.matcher.flush()
            if tail:
                yield FinalDelta(tail)
        self._call_id = None
        self._msgs.append(msg)

    def finish(self) -> list[Msg]:
        """Messages of this turn, including a partial last one (cut by a limit or a stop sequence)."""
        partial = [m for m in self.parser.finish() if isinstance(m, Msg)]
        msgs = self._msgs + [m.with_meta(truncated=True) for m in partial]
        if self.stop_hit and msgs and msgs[-1].channel in ("final", None):
            text = msgs[-1].text
            cut = min((i for i in (text.find(s) for s in self.matcher.stops) if i >= 0), default=len(text))
            msgs[-1] = replace(msgs[-1], text=text[:cut])
        self._msgs = []
        return msgs


def _resolve_citations(agent: Agent, text: str) -> list[dict[str, Any]]:
    """Citation markers (``【3†L10-L15】``) in the answer, resolved by the browser that showed the pages."""
    out: list[dict[str, Any]] = []
    for tool in agent.dispatcher.tools:
        resolve = getattr(getattr(tool, "browser", None), "resolve_citations", None)
        if resolve is None or "【" not in text:
            continue
        for c in resolve(text):
            out.append({"cursor": c.cursor, "url": c.url, "title": c.title,
                        "lines": list(c.lines) if c.lines else None, "quote": c.quote})
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RunStream:
    """The events of one run, as an iterator; ``transcript`` and ``usage`` are live while it runs."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._events = run.events()
        self.stop_reason: str | None = None
        self._result = _Collector(run.agent)

    @property
    def transcript(self) -> Transcript:
        return self._run.transcript

    @property
    def usage(self) -> Usage:
        return self._run.usage

    @property
    def budget(self) -> ContextBudget:
        return self._run.budget

    def prompt_tokens(self) -> int:
        """The size of the next prompt, as the transcript stands (before any compaction)."""
        return len(self._run._render())

    def __iter__(self) -> RunStream:
        return self

    def __next__(self) -> Event:
        ev = next(self._events)
        self._result.add(ev)
        return ev

    def close(self) -> None:
        """Stop early (a client went away); the transcript keeps what was produced."""
        self._events.close()

    def result(self) -> RunResult:
        """Run to the end (if not there yet) and fold the events into a :class:`RunResult`."""
        for _ in self:
            pass
        return self._result.result(self._run.transcript)


class _Collector:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.final: list[str] = []
        self.usage = Usage()
        self.reason = "error"
        self.citations: list[dict[str, Any]] = []
        self.calls: list[ToolCall] = []
        self.errors: list[ErrorEvent] = []

    def add(self, ev: Event) -> None:
        if isinstance(ev, FinalDelta):
            self.final.append(ev.text)
        elif isinstance(ev, Usage):
            self.usage = ev
        elif isinstance(ev, Stopped):
            self.reason = ev.reason
        elif isinstance(ev, ToolCall):
            self.calls.append(ev)
        elif isinstance(ev, ToolResultEvent):
            self.calls = [c for c in self.calls if c.call_id != ev.call_id]
            self.citations += list(ev.metadata.get("citations", []))
        elif isinstance(ev, ErrorEvent):
            self.errors.append(ev)

    def result(self, transcript: Transcript) -> RunResult:
        text = "".join(self.final)
        output = None
        if self.agent.answer is not None and self.reason == "final":
            try:
                output = self.agent.answer.parse(text)
            except OutputError:
                output = None
        calls = self.calls if self.reason == "tool_calls" else []
        pending = transcript.pending_tool_call() if self.reason == "approval" else None
        if pending is not None:  # the call waiting for a decision
            calls = [ToolCall(pending.meta.get("call_id", ""), pending.recipient or "", pending.text,
                              pending.channel, pending.content_type)]
        self.citations += _resolve_citations(self.agent, text)
        return RunResult(text, self.reason, transcript, self.usage, output, self.citations, calls,
                         self.errors)
