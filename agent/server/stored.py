"""The stored-response routes: ``GET``/``DELETE /v1/responses/{id}``, ``POST /v1/responses/{id}/cancel``, and
``background: true`` requests that answer at once and run on (poll with ``GET``).

A background response is stored as ``queued``, then ``in_progress`` once it has a slot, then its final state
(``completed``, ``incomplete``, ``failed``) or ``cancelled``. Only background responses can be cancelled; a
finished one is returned as it is. A background request needs ``store`` (it has nowhere else to go) and
cannot stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ossagent.agent.events import Event
from ossagent.agent.server.errors import APIError, bad_request

if TYPE_CHECKING:
    from ossagent.agent.server.requests import GenRequest
    from ossagent.agent.server.responses import ResponsesFormatter
    from ossagent.agent.server.runner import Job

Collect = Callable[["Job", Callable[[Event], object]], Awaitable[None]]
Server = Any  # agent.server.app.Server (its store, background tasks, job() and remember()); app imports this module


def wants_store(body: dict[str, Any]) -> bool:
    return body.get("store", True) is not False


def not_found(response_id: str) -> APIError:
    return APIError(404, f"No response with id '{response_id}' found.", type="invalid_request_error",
                    param="response_id", code="response_not_found")


async def start_background(server: Server, request: Request, req: GenRequest, body: dict[str, Any],
                           fmt: ResponsesFormatter, collect: Collect) -> JSONResponse:
    """Admit a ``background: true`` request: store it as queued, run it on a task, answer now."""
    if req.stream:
        raise bad_request("background responses cannot stream here; poll GET /v1/responses/{id}", "stream")
    if not wants_store(body):
        raise bad_request("background responses need store (true or unset)", "store")
    job, holder = server.job(req, request, body)
    fmt.status = "queued"
    server.store.put(fmt.response())

    async def run() -> None:
        try:
            await job.admit()
            fmt.status = "in_progress"
            server.store.put(fmt.response())
            await collect(job, fmt.on_event)
        except asyncio.CancelledError:
            fmt.status = "cancelled"
            server.store.put(fmt.response())
            raise
        except APIError as exc:  # e.g. the queue was full
            fmt.status = "failed"
            fmt.errors.append(_error(exc.message))
            server.store.put(fmt.response())
            return
        finally:
            server.background.pop(fmt.id, None)
        if holder:
            server.remember(fmt.id, holder[0], fmt.response())

    server.background[fmt.id] = asyncio.ensure_future(run())
    return JSONResponse(fmt.response())


def _error(message: str) -> Any:
    from ossagent.agent.events import ErrorEvent

    return ErrorEvent("server", message)


async def _cancel(server: Server, response_id: str) -> asyncio.Future[None] | None:
    """Cancel a running background response and wait until its task has ended; the task, or None."""
    task: asyncio.Future[None] | None = server.background.get(response_id)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return task


def add_stored_routes(app: FastAPI, server: Server) -> None:
    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str) -> dict[str, Any]:
        found = server.store.get(response_id)
        if found is None:
            raise not_found(response_id)
        return found

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> dict[str, Any]:
        await _cancel(server, response_id)  # a running one first stops (and writes its last state)
        if not server.store.delete(response_id):
            raise not_found(response_id)
        server.responses.pop(response_id, None)
        return {"id": response_id, "object": "response", "deleted": True}

    @app.post("/v1/responses/{response_id}/cancel")
    async def cancel_response(response_id: str) -> dict[str, Any]:
        task = await _cancel(server, response_id)
        found = server.store.get(response_id)
        if found is None:
            raise not_found(response_id)
        if task is None and found.get("background") is not True:
            raise bad_request("only background responses can be cancelled", "response_id")
        return found
