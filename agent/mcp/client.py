"""A connection to one MCP server, used from the agent's (synchronous) threads.

The SDK is async; each connection runs its own event loop in a daemon thread that holds the session open
for the agent's life. :meth:`Connection.call` sends one ``tools/call`` and waits for it. A server that dies
(the process exits, the HTTP endpoint goes away) fails the call in flight with :class:`ServerDied`; the
tool adapter restarts it once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import threading
from pathlib import Path
from typing import Any

from ossagent.agent.mcp.config import MCPServerConfig
from ossagent.agent.mcp.launch import server_argv
from ossagent.tools.base import UserError

CONNECT_TIMEOUT = 30.0


class ServerDied(RuntimeError):
    """The server went away during a call (or before it)."""


class Connection:
    """An open session with one server: its tools (``tools``) and calls to them."""

    def __init__(self, config: MCPServerConfig, workspace: Path) -> None:
        self.config = config
        self.workspace = workspace
        self.tools: list[Any] = []  # mcp_types.Tool
        self.instructions: str | None = None
        self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._closing: asyncio.Event | None = None
        self._client: Any = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),),
                                        name=f"mcp-{config.name}", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout=CONNECT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            message = f"MCP server {config.name} did not answer within {CONNECT_TIMEOUT:g} s" + self._stderr_hint()
            self.close()
            raise UserError(message) from None
        except Exception as exc:
            message = f"MCP server {config.name} could not be started: {_reason(exc)}" + self._stderr_hint()
            self.close()
            raise UserError(message) from exc

    def _transport(self) -> Any:
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client

        if self.config.url:
            if self.config.headers:
                import httpx2

                client = httpx2.AsyncClient(headers=dict(self.config.headers), timeout=self.config.timeout)
                return streamable_http_client(self.config.url, http_client=client)
            return streamable_http_client(self.config.url)
        argv, env = server_argv(self.config, self.workspace)
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        return stdio_client(params, errlog=self._errlog)

    async def _main(self) -> None:
        self._closing = asyncio.Event()
        try:
            from mcp import Client

            async with Client(self._transport(), read_timeout_seconds=self.config.timeout) as client:
                listed = await client.list_tools()
                tools = list(listed.tools)
                while listed.next_cursor:
                    listed = await client.list_tools(cursor=listed.next_cursor)
                    tools += listed.tools
                self.tools, self.instructions, self._client = tools, client.instructions, client
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # the server failed to start, or died; calls in flight see it
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
        finally:
            self._client = None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._client is not None

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """``tools/call``: the ``CallToolResult``; :class:`ServerDied` when the server is gone."""
        client = self._client
        if client is None or not self._thread.is_alive():
            raise ServerDied(f"the MCP server {self.config.name} is not running")
        future = asyncio.run_coroutine_threadsafe(client.call_tool(name, arguments), self._loop)
        try:
            return future.result(timeout=self.config.timeout + 5)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{name} did not answer within {self.config.timeout:g} s") from None
        except Exception as exc:
            if not self.alive or "closed" in str(exc).lower():
                raise ServerDied(f"the MCP server {self.config.name} stopped during the call "
                                 f"({_reason(exc)})") from exc
            raise

    def _stderr_hint(self) -> str:
        try:
            self._errlog.seek(0)
            tail = self._errlog.read()[-400:].strip()
        except (OSError, ValueError):
            return ""
        return f" (its last output: {tail})" if tail else ""

    def close(self) -> None:
        if self._thread.is_alive() and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._errlog.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
