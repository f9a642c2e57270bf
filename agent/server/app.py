"""The OpenAI-compatible HTTP server: ``/v1/models``, ``/v1/chat/completions``, ``/v1/responses``, and
``/v1/completions`` for raw prompts (agent/server/completions.py).

Each request becomes one agent run over the configured backend: the caller's functions are returned to
it as tool calls; built-in tools (python, browser), when the server enables them, run server-side inside
the run. Requests wait for a slot in a :class:`FairScheduler`; a client that disconnects frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ossagent.agent.backends.base import Backend
from ossagent.agent.events import Event
from ossagent.agent.functions import FunctionTool
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent, HookFactory, RunStream
from ossagent.agent.server.adapters import backend_for, model_cards, response_model
from ossagent.agent.server.chat import ChatFormatter
from ossagent.agent.server.completions import (
    DEFAULT_MAX_TOKENS,
    CompletionFormatter,
    CompletionRequest,
    RawRun,
    check_context,
    parse_completion,
    prompt_tokens,
)
from ossagent.agent.server.conventions import apply_defaults, model_aliases, refuse_unsupported, version_info
from ossagent.agent.server.cors import add_cors
from ossagent.agent.server.errors import (
    APIError,
    bad_request,
    context_length_exceeded,
    overloaded,
    server_error,
    unauthorized,
)
from ossagent.agent.server.guard import (
    COMPILE_THREADS,
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_TOOLS,
    RequestGuard,
    in_thread,
    is_panic,
    key_matches,
    panic_summary,
    too_deep,
)
from ossagent.agent.server.metrics import USAGE_KEY, Metrics, Observer
from ossagent.agent.server.reasoning_memory import ReasoningMemory
from ossagent.agent.server.requests import GenRequest, parse_chat
from ossagent.agent.server.responses import ResponsesFormatter
from ossagent.agent.server.responses_request import parse_responses
from ossagent.agent.server.runner import Job
from ossagent.agent.server.scheduler import FairScheduler
from ossagent.agent.server.store import ResponseStore
from ossagent.agent.server.stored import add_stored_routes, start_background, wants_store
from ossagent.agent.transcript import Transcript
from ossagent.tools.base import Tool, UserError


@dataclass
class ServerConfig:
    backend: Backend
    model_id: str = "gpt-oss-20b"
    encoding: Any = None
    tools_factory: Callable[[], Sequence[Tool]] | None = None  # fresh built-in tools per request
    hook_factory: HookFactory | None = None
    slots: int = 1
    max_waiting: int = 256
    api_key: str | None = None
    max_turns: int = 8
    default_max_tokens: int | None = 4096
    max_time: float | None = 600.0
    default_temperature: float | None = None  # for requests that give none (None: the API's 1.0)
    default_seed: int | None = None
    instructions: str | None = None  # developer instructions put before each request's own
    aliases: tuple[str, ...] | None = None  # other names of the model (None: the usual ones for gpt-oss ids)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (empty: no CORS)
    store_path: Path | None = None  # SQLite file of stored responses (None: in memory)
    default_reasoning: str | None = "medium"
    reasoning_budget: int | None = None  # tokens per free-text message (bounds a random test model)
    stored_responses: int = 256
    reasoning_memory: int = 1024  # tool-call ids whose reasoning is kept for clients that drop it
    allow_mcp: bool = False  # connect to the MCP servers (streamable HTTP) a Responses request names
    max_body_bytes: int = MAX_BODY_BYTES  # larger request bodies get 413 (agent/server/guard.py)
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides the bound address and loopback names
    context: int | None = None  # window in tokens (None: what the backend offers)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.scheduler = FairScheduler(config.slots, config.max_waiting)
        self.responses: OrderedDict[str, Transcript] = OrderedDict()
        self.created = int(time.time())
        self.active_jobs: weakref.WeakSet[Job] = weakref.WeakSet()  # requests admitted or waiting
        self.reasoning = ReasoningMemory(config.reasoning_memory)
        self.metrics = Metrics()
        self.store = ResponseStore(config.store_path)
        self.background: dict[str, asyncio.Future[None]] = {}  # background responses still running
        self.aliases = config.aliases if config.aliases is not None else model_aliases(config.model_id)
        self.compiling = asyncio.Semaphore(COMPILE_THREADS)  # requests building their run (compiling schemas) at once

    def agent(self, req: GenRequest, backend: Backend | None = None) -> Agent:
        cfg = self.config
        mcp = req.extra.get("mcp")
        if mcp is not None and mcp.servers and not cfg.allow_mcp:
            raise bad_request("this server does not connect to MCP servers (start it with --allow-mcp)", "tools")
        if len(req.functions) > MAX_TOOLS:
            raise bad_request(f"at most {MAX_TOOLS} tools may be given, got {len(req.functions)}", "tools")
        tools = list(cfg.tools_factory()) if cfg.tools_factory else []
        try:
            functions = [FunctionTool.from_schema(f.name, f.parameters, f.description, lenient=True)
                         for f in req.functions]
            return Agent(
                backend or cfg.backend, tools=tools, functions=functions, instructions=req.instructions,
                reasoning=req.reasoning or cfg.default_reasoning, response_format=req.response_format,
                limits=Limits(max_turns=cfg.max_turns, max_tokens=req.max_tokens or cfg.default_max_tokens,
                              max_time=cfg.max_time, context=cfg.context, compaction=req.truncation == "auto"),
                temperature=req.temperature, top_p=req.top_p, seed=req.seed, stop=req.stop,
                tool_choice=req.tool_choice, hook_factory=cfg.hook_factory, encoding=cfg.encoding,
                reasoning_budget=cfg.reasoning_budget, mcp=mcp.servers if mcp else (),
                approvals=mcp.policy() if mcp else None,
            )
        except UserError as exc:
            for tool in tools:
                tool.close()
            raise bad_request(str(exc)) from exc
        except BaseException as exc:  # a grammar compiler panic is the request's schemas' fault: 400, no backtrace
            if not is_panic(exc):
                raise
            for tool in tools:
                tool.close()
            raise bad_request(f"the constrained decoder cannot compile these schemas: {panic_summary(exc)}",
                              "tools") from None

    def check_model(self, name: str) -> Backend:
        """The backend for model ``name`` (the served id, an alias, or an adapter served by name); a 404 (every
        endpoint's) for any other name."""
        return backend_for(self.config.backend, name, self.config.model_id, self.aliases)

    def client(self, request: Request, body: dict[str, Any]) -> str:
        """Whom the scheduler's round-robin counts a request against: its user, API key, else its address."""
        return str(body.get("user") or request.headers.get("authorization") or
                   (request.client.host if request.client else "?"))

    def job(self, req: GenRequest, request: Request, body: dict[str, Any]) -> tuple[Job, list[RunStream]]:
        backend = self.check_model(req.model)
        cfg = self.config
        apply_defaults(req, body, temperature=cfg.default_temperature, seed=cfg.default_seed,
                       instructions=cfg.instructions)
        messages = self.reasoning.restore(req.messages)
        if req.previous_response_id:
            prev = self.previous(req.previous_response_id)
            if prev is None:
                raise bad_request(f"previous response {req.previous_response_id!r} not found",
                                  "previous_response_id", "previous_response_not_found")
            messages = prev.messages + messages
        agent = self.agent(req, backend)
        try:  # building the run checks the conversation (e.g. a tool call without its answer): a 400
            mcp = req.extra.get("mcp")
            stream = agent.stream(transcript=Transcript(messages), approvals=mcp.decisions if mcp else ())
        except UserError as exc:
            agent.close()
            raise bad_request(str(exc), "messages") from exc
        budget, size = stream.budget, stream.prompt_tokens()
        if not budget.compaction and not budget.fits(size):
            agent.close()
            raise context_length_exceeded(budget.window or 0, size, budget.reserve,
                                          "input" if "input" in body else "messages")
        holder = [stream]

        def make() -> RunStream:
            return stream

        return Job(make, self.scheduler, self.client(request, body), cleanup=agent.close), holder

    def completion_job(self, req: CompletionRequest, request: Request, body: dict[str, Any]) -> tuple[Job, list[Any]]:
        """A ``/v1/completions`` request as a job (its prompts checked here: a 400 before it queues)."""
        cfg, backend = self.config, self.check_model(req.model)
        takes_raw = getattr(backend, "takes_raw_prompts", None)  # None: a backend written before the method
        if takes_raw is None or not takes_raw():
            raise bad_request("this server's backend cannot continue raw prompts (a remote model speaks chat); "
                              "use /v1/chat/completions or /v1/responses", "prompt", "unsupported_endpoint")
        apply_defaults(req, body, temperature=cfg.default_temperature, seed=cfg.default_seed, instructions=None)
        prompts = prompt_tokens(req, backend.encoding, backend.vocab_size or backend.encoding.n_vocab)
        max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
        windows = [w for w in (getattr(backend, "context_window", None), cfg.context) if w]
        check_context(prompts, max_tokens, min(windows) if windows else None)
        run = RawRun(backend, prompts, req, max_tokens=max_tokens, max_time=cfg.max_time)
        return Job(lambda: run, self.scheduler, self.client(request, body)), []

    def close_streams(self) -> None:
        """Stop every run (the server is shutting down): open streams end with their usual tail."""
        for job in list(self.active_jobs):
            job.cancel()

    def previous(self, response_id: str) -> Transcript | None:
        """The conversation of an earlier response: recent ones in memory, stored ones from the store."""
        return self.responses.get(response_id) or self.store.transcript(response_id)

    def remember(self, response_id: str, stream: RunStream, stored: dict[str, Any] | None = None) -> None:
        """Keep a finished response's conversation (and, when ``stored`` is given, that response object)."""
        self.reasoning.remember(stream.transcript.messages)
        if stored is not None:
            self.store.put(stored, stream.transcript)
        self.responses[response_id] = stream.transcript
        while len(self.responses) > self.config.stored_responses:
            self.responses.popitem(last=False)


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


_TOO_DEEP = object()


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        body = _TOO_DEEP
    if body is _TOO_DEEP or (isinstance(body, dict) and too_deep(body)):
        raise bad_request(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


class _CollectedJSON(Response):
    """A non-streaming answer computed while watching the connection: if the client disconnects first,
    the run is cancelled (its slot freed) instead of finishing for nobody. (``Request.is_disconnected``
    does not see the disconnect through FastAPI's receive wrappers; the ASGI ``receive`` does.)"""

    def __init__(self, produce: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        super().__init__(status_code=200, media_type="application/json")
        self.produce = produce

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        work = asyncio.ensure_future(self.produce())
        watch = asyncio.ensure_future(client_left())
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return
        watch.cancel()
        try:
            status, body = 200, work.result()
        except APIError as exc:
            status, body = exc.status, exc.body()
        await JSONResponse(body, status_code=status)(scope, receive, send)


async def _collect(job: Job, on_event: Callable[[Event], object]) -> None:
    """Drain a job (non-streaming); cancelling this coroutine cancels the run."""
    events = job.events()
    try:
        async for ev in events:
            on_event(ev)
    finally:
        job.cancel()
        await events.aclose()  # type: ignore[attr-defined]


async def _respond(server: Server, request: Request, req: Any, body: dict[str, Any], fmt: Any,
                   stream_start: Callable[[], list[bytes]], encode: Callable[[dict[str, Any]], bytes],
                   tail: Callable[[], list[bytes]], final: Callable[[], dict[str, Any]],
                   on_stop: Callable[[RunStream], None], build: Callable[..., tuple[Job, list[Any]]] | None = None,
                   ) -> Response:
    """Admit the request, run it, and answer with SSE (``stream``) or one JSON object. ``build(req, request,
    body)`` makes the job (default: an agent run, :meth:`Server.job`)."""
    # Schemas compile while the job is built: on a worker thread, so a huge tool list never blocks the event loop.
    async with server.compiling:
        job, holder = await in_thread(build or server.job, req, request, body)
    request.scope[USAGE_KEY] = lambda: fmt.usage  # for the request's log line and /metrics
    server.active_jobs.add(job)
    sched = server.scheduler
    if sched.waiting >= sched.max_waiting:
        job.discard()
        raise overloaded(f"the server has {sched.waiting} requests waiting; try again later")
    # Admission happens inside the response: there a client that leaves while queued cancels the wait
    # (Starlette watches the connection for streaming responses, _CollectedJSON for the others).
    if req.stream:
        async def sse() -> AsyncIterator[bytes]:
            await job.admit()
            events = job.events()
            try:
                for chunk in stream_start():
                    yield chunk
                async for ev in events:
                    for out in fmt.on_event(ev):
                        yield encode(out)
                if holder:
                    on_stop(holder[0])
                for chunk in tail():
                    yield chunk
            finally:
                job.cancel()  # also when the generator is closed before reading any event
                await events.aclose()  # type: ignore[attr-defined]

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def produce() -> dict[str, Any]:
        await job.admit()
        await _collect(job, fmt.on_event)
        if holder:
            on_stop(holder[0])
        if fmt.errors and any(e.kind in ("backend", "server") for e in fmt.errors) and fmt.usage.turns == 0:
            raise server_error(fmt.errors[0].message)
        return final()

    return _CollectedJSON(produce)


def create_app(config: ServerConfig) -> FastAPI:
    server = Server(config)

    async def auth(request: Request) -> None:
        # A dependency, not an HTTP middleware: Starlette's BaseHTTPMiddleware hides client disconnects.
        if (config.api_key and (request.url.path.startswith("/v1/") or request.url.path == "/metrics")
                and not key_matches(request.headers.get("authorization"), config.api_key)):
            raise unauthorized()

    app = FastAPI(title="ossagent", version="0.1.0", dependencies=[Depends(auth)])
    app.add_middleware(RequestGuard, max_body_bytes=config.max_body_bytes, allowed_hosts=config.allowed_hosts)
    app.state.server = server
    add_cors(app, config.cors_origins)
    app.add_middleware(Observer, metrics=server.metrics)  # outermost: logs and counts every answer
    _add_error_handlers(app)
    _add_info_routes(app, server)
    _add_generation_routes(app, server)
    add_stored_routes(app, server)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answer in OpenAI's shape: the API's own errors and Starlette's (404, 405, ...)."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        err = APIError(exc.status_code, str(exc.detail), type=kind)
        return JSONResponse(err.body(), status_code=exc.status_code)



def _add_info_routes(app: FastAPI, server: Server) -> None:
    """What the server is and how it fares: ``/health``, ``/version``, ``/metrics``, ``/v1/models``."""
    config = server.config

    def cards() -> list[dict[str, Any]]:
        return model_cards(config.backend, config.model_id, server.created)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": config.model_id, "active": server.scheduler.active,
                "waiting": server.scheduler.waiting}

    @app.get("/version")
    async def version() -> dict[str, Any]:
        return version_info(config.model_id, server.aliases)

    @app.get("/metrics")
    async def metrics() -> Response:
        sched = server.scheduler
        text = server.metrics.render({
            "ossagent_queue_depth": ("Requests waiting for a slot.", sched.waiting),
            "ossagent_active_requests": ("Requests holding a slot.", sched.active),
            "ossagent_slots": ("Concurrent generations allowed.", sched.slots),
            "ossagent_reasoning_restored_total": ("Turns whose dropped reasoning was restored.",
                                                  server.reasoning.restored),
        })
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": cards()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        server.check_model(model_id)
        return next((c for c in cards() if c["id"] == model_id), cards()[0])  # an alias: the served model's


def _add_generation_routes(app: FastAPI, server: Server) -> None:
    """The endpoints that run the model: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/responses``."""
    config = server.config

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await _body(request)
        req = parse_completion(body)
        fmt = CompletionFormatter(response_model(config.backend, req.model, config.model_id), len(req.prompt) * req.n)

        def tail() -> list[bytes]:
            return ([_sse(fmt.usage_chunk())] if req.include_usage else []) + [_sse("[DONE]")]

        return await _respond(server, request, req, body, fmt, list, _sse, tail, fmt.completion, lambda s: None,
                              server.completion_job)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await _body(request)
        refuse_unsupported(body)
        req = parse_chat(body)
        fmt = ChatFormatter(response_model(config.backend, req.model, config.model_id), {f.name for f in req.functions})

        def tail() -> list[bytes]:
            return ([_sse(fmt.usage_chunk())] if req.include_usage else []) + [_sse("[DONE]")]

        return await _respond(server, request, req, body, fmt, lambda: [_sse(fmt.first_chunk())], _sse, tail,
                              fmt.completion, lambda s: server.reasoning.remember(s.transcript.messages))

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        body = await _body(request)
        refuse_unsupported(body)
        prev = server.previous(str(body.get("previous_response_id")))
        known = {str(m.meta["call_id"]): (m.recipient or "").split(".", 1)[-1]
                 for m in (prev.messages if prev else []) if m.is_tool_call and "call_id" in m.meta}
        req = parse_responses(body, known)
        fmt = ResponsesFormatter(response_model(config.backend, req.model, config.model_id), {f.name for f in req.functions},
                                 body, req.extra["mcp"].labels)

        def start() -> list[bytes]:
            return [_sse(e, e["type"]) for e in fmt.start()]

        if body.get("background"):
            return await start_background(server, request, req, body, fmt, _collect)
        return await _respond(server, request, req, body, fmt, start, lambda e: _sse(e, e["type"]), list,
                              fmt.response,
                              lambda s: server.remember(fmt.id, s, fmt.response() if wants_store(body) else None))
