"""A remote OpenAI-compatible chat-completions server (vLLM, Ollama, a hosted API, ``ossagent serve``) as a
harmony-token :class:`~ossagent.agent.backends.base.Backend`.

The prompt's conversation (the messages it was rendered from, which the loop hands over with the tokens) goes
out as chat messages (analysis -> ``reasoning_content``, function calls -> ``tool_calls``, tool answers ->
``tool`` messages), the agent's function tools, tool choice and answer format go along as ``tools`` /
``tool_choice`` / ``response_format``, and the streamed reply is rendered back into
harmony tokens, so the loop cannot tell this backend from the local engine. Built-in tools (``python``,
``browser.*``) are offered to the server as functions named ``python`` and ``browser__search``; their
calls come back under their harmony names and run locally.

Connection failures, 429 and 5xx are retried with exponential backoff until the first token arrives;
after that an error ends the generation (the loop keeps the transcript).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from ossagent.agent import prompt as hp
from ossagent.agent.backends.base import GenerationParams, default_encoding
from ossagent.agent.transcript import Msg
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
FREE_FORM = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


class RemoteError(RuntimeError):
    """The remote server failed or refused (after retries); the message says what it answered."""


def _fn_name(recipient: str) -> str:
    return recipient.removeprefix("functions.").replace(".", "__")


class RemoteBackend:
    takes_hooks = False  # the server decodes; its own constraints apply
    vocab_size = None

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 600.0,
        retries: int = 3, backoff: float = 0.5, encoding: Any = None, client: httpx.Client | None = None,
        context_window: int | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"remote base URL must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.context_window = context_window  # the remote model's window in tokens, when configured
        self.retries, self.backoff = retries, backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), headers=headers)
        if encoding is None:
            encoding = default_encoding()
        self.encoding = encoding

    # ----------------------------------------------------------------------------------- request
    def request_body(self, prompt: hp.Prompt, params: GenerationParams) -> dict[str, Any]:
        cfg = prompt.config
        body: dict[str, Any] = {
            "model": self.model, "stream": True, "messages": chat_messages(list(prompt.messages), cfg),
            "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if cfg.reasoning:
            body["reasoning_effort"] = cfg.reasoning
        tools = [{"type": "function", "function": {"name": f.name, "description": f.description,
                                                   "parameters": f.parameters or {"type": "object", "properties": {}}}}
                 for f in cfg.function_tools]
        for ns in cfg.builtin_tools:
            for f in ns.functions or (None,):
                name = f"{ns.name}__{f.name}" if f else ns.name
                desc = (f.description if f else ns.description) or ns.description
                tools.append({"type": "function", "function": {
                    "name": name, "description": desc, "parameters": (f.parameters if f else None) or FREE_FORM}})
        if tools:
            body["tools"] = tools
            body["tool_choice"] = prompt.tool_choice.to_openai()
        if cfg.response_format:
            name, schema, desc = cfg.response_format
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": name, "schema": schema, **({"description": desc} if desc else {})}}
        return body

    # ----------------------------------------------------------------------------------- generate
    def takes_raw_prompts(self) -> bool:
        return False  # it sends conversations, not tokens

    def generate(self, prompt: hp.Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        body = self.request_body(prompt, params)
        builtin = {_fn_name(f"{ns.name}.{f.name}" if f else ns.name): (f"{ns.name}.{f.name}" if f else ns.name,
                                                                      f is None or f.parameters is None)
                   for ns in prompt.config.builtin_tools for f in (ns.functions or (None,))}
        return self._tokens(body, params, builtin)

    def _stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        attempt = 0
        while True:
            try:
                with self.client.stream("POST", f"{self.base_url}/chat/completions", json=body) as resp:
                    if resp.status_code >= 400:
                        text = resp.read().decode(errors="replace")
                        if resp.status_code in RETRY_STATUS and attempt < self.retries:
                            raise _Retry(f"HTTP {resp.status_code}: {text[:300]}")
                        raise RemoteError(f"{self.base_url} answered HTTP {resp.status_code}: {text[:500]}")
                    for line in resp.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        chunk = json.loads(data)
                        if "error" in chunk:
                            raise RemoteError(f"{self.base_url}: {chunk['error']}")
                        yield chunk
                    return
            except (_Retry, httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt >= self.retries:
                    raise RemoteError(f"{self.base_url} failed after {attempt + 1} attempts: {exc}") from exc
                time.sleep(self.backoff * 2**attempt)
                attempt += 1

    def _tokens(
        self, body: dict[str, Any], params: GenerationParams, builtin: dict[str, tuple[str, bool]]
    ) -> Iterator[int]:
        w = _HarmonyWriter(self.encoding, builtin)
        finish = None
        for chunk in self._stream(body):
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    yield from w.text("analysis", reasoning)
                if delta.get("content"):
                    yield from w.text("final", delta["content"])
                for call in delta.get("tool_calls") or []:
                    yield from w.call(call)
                finish = choice.get("finish_reason") or finish
        yield from w.close(finish)


class _Retry(Exception):
    pass


class _HarmonyWriter:
    """Renders a streamed chat reply as the harmony tokens the model would have written."""

    def __init__(self, encoding: Any, builtin: dict[str, tuple[str, bool]]) -> None:
        self.enc = encoding
        self.builtin = builtin
        self.channel: str | None = None
        self.started = False
        self.call_index: int | None = None
        self.args = ""
        self.call_name = ""

    def _special(self, name: str) -> list[int]:
        return list(self.enc.encode(name, allowed_special="all"))

    def _open(self, header: str) -> Iterator[int]:
        if self.channel is not None:
            yield from self._special("<|end|>")
        prefix = "<|start|>assistant" if self.started else ""
        self.started = True
        yield from self._special(prefix + header + "<|message|>")

    def text(self, channel: str, text: str) -> Iterator[int]:
        if self.call_index is not None:
            return  # text after a call started: harmony ends the turn at the call
        if self.channel != channel:
            yield from self._open(f"<|channel|>{channel}")
            self.channel = channel
        yield from self.enc.encode_ordinary(text)

    def call(self, call: dict[str, Any]) -> Iterator[int]:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if self.call_index is None:
            self.call_index = index
            self.call_name = fn.get("name") or ""
        if index != self.call_index:
            return  # harmony makes one call per turn; later parallel calls are dropped
        if fn.get("name") and not self.call_name:
            self.call_name = fn["name"]
        self.args += fn.get("arguments") or ""
        return
        yield

    def close(self, finish: str | None) -> Iterator[int]:
        if self.call_index is not None:
            recipient, free_form = self.builtin.get(self.call_name, (f"functions.{self.call_name}", False))
            body = self.args or "{}"
            if free_form:
                with contextlib.suppress(json.JSONDecodeError, AttributeError):
                    body = str(json.loads(body).get("input", body))
            channel = "analysis" if recipient in {v[0] for v in self.builtin.values()} else "commentary"
            ctype = "" if free_form else " <|constrain|>json"
            yield from self._open(f" to={recipient}<|channel|>{channel}{ctype}")
            self.channel = None
            yield from self.enc.encode_ordinary(body)
            yield from self._special("<|call|>")
            return
        if finish == "length":
            return  # cut off: no stop token, the loop reports the token limit
        if self.channel != "final":
            yield from self.text("final", "")
        yield from self._special("<|return|>")


def chat_messages(msgs: list[Msg], cfg: hp.PromptConfig) -> list[dict[str, Any]]:
    """Harmony conversation -> chat messages (system/developer messages come from ``cfg``).

    A call without a ``call_id`` of its own is named ``call_N``, N its index in the rendered prompt."""
    out: list[dict[str, Any]] = []
    head = len(hp.head_messages(cfg))
    if cfg.instructions:
        out.append({"role": "system", "content": cfg.instructions})
    reasoning: list[str] = []
    calls: dict[int, str] = {}
    for i, m in enumerate(msgs):
        if m.role in ("system", "developer"):
            continue
        if m.role == "user":
            out.append({"role": "user", "content": m.text})
        elif m.role == "assistant" and m.is_tool_call:
            call_id = str(m.meta.get("call_id") or f"call_{head + i}")
            calls[i] = call_id
            entry: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [{
                "id": call_id, "type": "function",
                "function": {"name": _fn_name(m.recipient or ""), "arguments": _args(m)}}]}
            if reasoning:
                entry["reasoning_content"] = "".join(reasoning)
                reasoning = []
            out.append(entry)
        elif m.role == "assistant" and m.channel == "analysis":
            reasoning.append(m.text)
        elif m.role == "assistant":
            entry = {"role": "assistant", "content": m.text}
            if reasoning:
                entry["reasoning_content"] = "".join(reasoning)
                reasoning = []
            out.append(entry)
        elif m.role == "tool":
            prev = max((j for j in calls if j < i), default=None)
            out.append({"role": "tool", "tool_call_id": calls.get(prev, "call_0") if prev is not None else "call_0",
                        "content": m.text})
    return out


def _args(m: Msg) -> str:
    if m.content_type and "json" in m.content_type:
        return m.text
    return json.dumps({"input": m.text}, ensure_ascii=False)
