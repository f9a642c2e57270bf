"""The OpenAI-compatible HTTP server: ``/v1/models``, ``/v1/chat/completions``, ``/v1/responses``.

Each request becomes one agent run over the configured backend: the caller's functions are returned to
it as tool calls; built-in tools (python, browser), when the server enables them, run server-side inside
the run. Requests wait for a slot in a :class:`FairScheduler`; a client that disconnects frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ossagent.agent.backends.base import Backend
from ossagent.agent.events import Event
from ossagent.agent.functions import FunctionTool
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent, HookFactory, RunStream
from ossagent.agent.server.chat import ChatFormatter
from ossagent.agent.server.errors import (
    APIError,
    bad_request,
    context_length_exceeded,
    not_found,
    overloaded,
    server_error,
    unauthorized,
)
from ossagent.agent.server.requests import GenRequest, parse_chat, parse_responses
from ossagent.agent.server.responses import ResponsesFormatter
from ossagent.agent.server.runner import Job
from ossagent.agent.server.scheduler import FairScheduler
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
    default_max_tokens: int = 4096
    max_time: float | None = 600.0
    default_reasoning: str | None = "medium"
    reasoning_budget: int | None = None  # tokens per free-text message (bounds a random test model)
    stored_responses: int = 256
    context: int | None = None  # window in tokens (None: what the backend offers)


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.scheduler = FairScheduler(config.slots, config.max_waiting)
        self.responses: OrderedDict[str, Transcript] = OrderedDict()
        self.created = int(time.time())
        self.active_jobs: set[Job] = set()

    def agent(self, req: GenRequest) -> Agent:
        cfg = self.config
        tools = list(cfg.tools_factory()) if cfg.tools_factory else []
        try:
            functions = [FunctionTool.from_schema(f.name, f.parameters, f.description, lenient=True)
                         for f in req.functions]
            return Agent(
                cfg.backend, tools=tools, functions=functions, instructions=req.instructions,
                reasoning=req.reasoning or cfg.default_reasoning, response_format=req.response_format,
                limits=Limits(max_turns=cfg.max_turns, max_tokens=req.max_tokens or cfg.default_max_tokens,
                              max_time=cfg.max_time, context=cfg.context, compaction=req.truncation == "auto"),
                temperature=req.temperature, top_p=req.top_p, seed=req.seed, stop=req.stop,
                tool_choice=req.tool_choice, hook_factory=cfg.hook_factory, encoding=cfg.encoding,
                reasoning_budget=cfg.reasoning_budget,
            )
        except UserError as exc:
            for tool in tools:
                tool.close()
            raise bad_request(str(exc)) from exc

    def job(self, req: GenRequest, request: Request, body: dict[str, Any]) -> tuple[Job, list[RunStream]]:
        if req.model != self.config.model_id:
            raise not_found(f"The model '{req.model}' does not exist; this server serves '{self.config.model_id}'.")
        messages = list(req.messages)
        if req.previous_response_id:
            prev = self.responses.get(req.previous_response_id)
            if prev is None:
                raise bad_request(f"previous response {req.previous_response_id!r} not found",
                                  "previous_response_id", "previous_response_not_found")
            messages = prev.messages + messages
        agent = self.agent(req)
        try:  # building the run checks the conversation (e.g. a tool call without its answer): a 400
            stream = agent.stream(transcript=Transcript(messages))
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

        client = str(body.get("user") or request.headers.get("authorization") or
                     (request.client.host if request.client else "?"))
        return Job(make, self.scheduler, client, cleanup=agent.close), holder

    def remember(self, response_id: str, stream: RunStream) -> None:
        self.responses[response_id] = stream.transcript
        while len(self.responses) > self.config.stored_responses:
            self.responses.popitem(last=False)


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from exc
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


async def _respond(server: Server, request: Request, req: GenRequest, body: dict[str, Any], fmt: Any,
                   stream_start: Callable[[], list[bytes]], encode: Callable[[dict[str, Any]], bytes],
                   tail: Callable[[], list[bytes]], final: Callable[[], dict[str, Any]],
                   on_stop: Callable[[RunStream], None]) -> Response:
    """Admit the request, run it, and answer with SSE (``stream``) or one JSON object."""
    job, holder = server.job(req, request, body)
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
        if (config.api_key and request.url.path.startswith("/v1/")
                and request.headers.get("authorization") != f"Bearer {config.api_key}"):
            raise unauthorized()

    app = FastAPI(title="ossagent", version="0.1.0", dependencies=[Depends(auth)])
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        err = APIError(exc.status_code, str(exc.detail), type=kind)
        return JSONResponse(err.body(), status_code=exc.status_code)

    def model_card() -> dict[str, Any]:
        return {"id": config.model_id, "object": "model", "created": server.created, "owned_by": "ossagent"}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active": server.scheduler.active, "waiting": server.scheduler.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != config.model_id:
            raise not_found(f"The model '{model_id}' does not exist.")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await _body(request)
        req = parse_chat(body)
        fmt = ChatFormatter(config.model_id, {f.name for f in req.functions})

        def tail() -> list[bytes]:
            return ([_sse(fmt.usage_chunk())] if req.include_usage else []) + [_sse("[DONE]")]

        return await _respond(server, request, req, body, fmt, lambda: [_sse(fmt.first_chunk())], _sse, tail,
                         fmt.completion, lambda s: None)

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        body = await _body(request)
        prev = server.responses.get(str(body.get("previous_response_id")))
        known = {str(m.meta["call_id"]): (m.recipient or "").split(".", 1)[-1]
                 for m in (prev.messages if prev else []) if m.is_tool_call and "call_id" in m.meta}
        req = parse_responses(body, known)
        fmt = ResponsesFormatter(config.model_id, {f.name for f in req.functions}, body)

        def start() -> list[bytes]:
            return [_sse(e, e["type"]) for e in fmt.start()]

        return await _respond(server, request, req, body, fmt, start, lambda e: _sse(e, e["type"]), list,
                         fmt.response, lambda s: server.remember(fmt.id, s))

    return app
