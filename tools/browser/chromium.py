"""Rendering pages that need JavaScript: Playwright driving Debian's Chromium, with no network of its own.

Every request Chromium makes is intercepted (``context.route``) and answered by the policy-checked
:class:`~ossagent.tools.browser.fetch.HttpFetcher`: scripts, XHR/fetch and documents are fetched by us
(each one, and each redirect hop, checked after DNS resolution); images, media, fonts, stylesheets and
everything else are aborted before any byte moves. Downloads are refused, service workers blocked,
popups closed as they open.

How Chromium is isolated (``sandbox``):

* ``"chromium"`` — Chromium's own sandbox (namespaces + seccomp-bpf). Chromium refuses it as root.
* ``"bwrap"`` — Chromium runs in a jail (:mod:`ossagent.tools.browser.jail`): bubblewrap with **no network at
  all** (it can only reach the world through our route handler), a dedicated non-root uid when the host is root,
  no capabilities, a read-only ``/usr`` and the few ``/etc`` files it needs, seccomp, and Chromium's own
  sandbox inside when the kernel allows it.
* ``"none"`` — ``--no-sandbox`` without bwrap (explicit opt-in, for debugging).
* ``"auto"`` (default) — ``"chromium"`` for a non-root user, ``"bwrap"`` as root when bubblewrap works,
  otherwise a :class:`UserError` (fail closed).

Chromium is launched once, lazily, on a dedicated thread: Playwright's sync API is bound to the thread
that started it, and the browser must be callable from any thread (the agent loop, a server worker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ossagent.tools.base import ModelError, ToolCallError, ToolFailure, UserError
from ossagent.tools.browser.fetch import HttpFetcher, Response, is_textual
from ossagent.tools.browser.jail import chromium_sandbox_works, jail_uid, resolve_sandbox, write_launcher

ALLOWED_RESOURCES = frozenset({"document", "subdocument", "script", "xhr", "fetch"})
CHROMIUM_FLAGS = (
    "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--blink-settings=imagesEnabled=false",
    # Anything that escapes route() (it should not) goes to a closed port instead of the network.
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--dns-prefetch-disable",
)


def default_executable() -> str | None:
    for cand in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


@dataclass(frozen=True)
class ChromiumConfig:
    executable: str | None = None  # default: Debian's /usr/lib/chromium/chromium, else PATH
    sandbox: str = "auto"  # auto | chromium | bwrap | none
    navigation_timeout_s: float = 15.0
    settle_ms: int = 3000  # after "load", wait at most this long for the page to go quiet
    watchdog_slack_s: float = 10.0  # a render taking navigation + settle + this long is killed
    quiet_ms: int = 200  # quiet: no request for this long (every request passes through our route handler)


T = TypeVar("T")


class TabHooks(Protocol):
    """What a live tab (page actions) decides in the route handler; a render has none of these.

    A main-frame document that is refused, redirected or a download is answered ``204 No Content``, which
    leaves the page as it was; the hooks record why, and the tab follows allowed redirects itself.
    """

    def allow(self, method: str, url: str, kind: str) -> bool:
        """Whether a request that is not a GET may be sent (an approval policy may hold it)."""
        ...

    def redirect(self, url: str, location: str, method: str) -> None: ...

    def download(self, resp: Response) -> None: ...

    def body(self, content: bytes | None, content_type: str) -> bytes | None:
        """The request body to send (Chromium leaves uploaded files' bytes out of intercepted bodies)."""
        ...


@dataclass
class Rendered:
    url: str
    title: str
    html: str
    elapsed_s: float


class ChromiumRenderer:
    """Renders URLs in headless Chromium; all its traffic is served by ``fetcher``."""

    def __init__(self, fetcher: HttpFetcher, config: ChromiumConfig | None = None) -> None:
        self.fetcher = fetcher
        self.config = config or ChromiumConfig()
        exe = self.config.executable or default_executable()
        if not exe or not os.access(exe, os.X_OK):
            raise UserError(f"no Chromium found{f' at {exe}' if exe else ''}: install Debian's chromium "
                            "or pass ChromiumConfig(executable=...)")
        self.executable = exe
        self.sandbox = resolve_sandbox(self.config.sandbox)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ossagent-chromium")
        self._state: dict[str, Any] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.bytes_fetched = 0  # by requests Chromium made (the document handed over is not counted)
        self._last_request = 0.0
        self._needs_launch = True
        self.max_html_chars = 2 * fetcher.limits.max_bytes  # of the rendered DOM read back
        self._marker = f"--ossagent-renderer={uuid.uuid4().hex}"  # finds our processes for the watchdog
        self._call: dict[str, Any] = {"errors": [], "prefetched": None}
        self.blocked = 0  # requests aborted before any byte moved: images, media, fonts, styles, refused URLs

    # --- everything below the public methods runs on the Chromium thread ---

    def render(self, url: str, prefetched: Response | None = None) -> Rendered:
        """Render ``url``; a page that hangs Chromium (a script looping forever) gets it killed."""
        return self.call(self._render, url, prefetched, what=f"rendering `{url}`", hint="Open another result.")

    def call(self, fn: Callable[..., T], *args: Any, what: str, hint: str, extra_s: float = 0.0) -> T:
        """Run ``fn(*args)`` on the Chromium thread (Playwright's sync API is bound to it), under the watchdog.

        A call that outlives navigation + settle + slack (+ ``extra_s``) gets Chromium killed: the error says
        what was being done (``what``) and what to do next (``hint``).
        """
        budget = (self.config.navigation_timeout_s + self.config.settle_ms / 1000 + self.config.watchdog_slack_s
                  + extra_s)
        if self._needs_launch:
            budget += 30  # this call (re)launches Chromium
        fut = self._pool.submit(fn, *args)
        try:
            return fut.result(timeout=budget)
        except FuturesTimeout:
            self._kill()
            self._needs_launch = True
            with contextlib.suppress(Exception):  # the kill makes the stuck call fail; that is the point
                fut.result(timeout=15)
            raise ToolFailure(f"Error {what}: the page did not finish within {budget:.0f} s "
                              "and the browser was restarted.", hint=hint) from None

    def _kill(self) -> None:
        """SIGKILL this renderer's Chromium (found by the marker switch on its command line)."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if self._marker.encode() in cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(proc.name), signal.SIGKILL)

    def close(self) -> None:
        try:
            self._pool.submit(self._shutdown).result(timeout=30)
        finally:
            self._pool.shutdown(wait=True)
            if self._tmp is not None:
                self._tmp.cleanup()

    def _start(self) -> Any:
        browser = self._state.get("browser")
        if browser is not None and browser.is_connected():
            return browser
        if browser is not None:  # it died (killed by the watchdog, or crashed): start afresh
            self._state.pop("page", None)
            self._state.pop("context", None)
            with contextlib.suppress(Exception):
                self._shutdown()
        from playwright.sync_api import sync_playwright

        args = [*CHROMIUM_FLAGS, self._marker]
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ossagent-chromium-")
        exe = self.executable
        own_sandbox = self.sandbox == "chromium"
        if self.sandbox == "bwrap":
            uid = self._state.setdefault("jail_uid", jail_uid())
            own_sandbox = chromium_sandbox_works(uid)
            exe = str(write_launcher(Path(self._tmp.name), self.executable, uid=uid, own_sandbox=own_sandbox))
        elif self.sandbox == "none":
            args.append("--no-sandbox")
        pw = sync_playwright().start()
        try:
            browser = pw.chromium.launch(executable_path=exe, args=args, headless=True,
                                         chromium_sandbox=own_sandbox, timeout=30_000,
                                         env={"PATH": "/usr/bin:/bin", "HOME": self._tmp.name})
        except Exception as e:
            pw.stop()
            raise ToolFailure(f"Chromium could not start: {e}",
                              hint="Open the page without JavaScript rendering.") from e
        self._state.update(pw=pw, browser=browser)
        self._needs_launch = False
        return browser

    def _shutdown(self) -> None:
        self._state.pop("page", None)
        self._state.pop("context", None)
        browser, pw = self._state.pop("browser", None), self._state.pop("pw", None)
        if browser is not None:
            with contextlib.suppress(Exception):  # it may be dead already
                browser.close()
        if pw is not None:
            pw.stop()

    def _route(self, route: Any, errors: list[tuple[str, ToolCallError]], prefetched: Response | None,
               tab: TabHooks | None = None) -> None:
        request = route.request
        kind = request.resource_type
        if kind == "document" and not self._is_main_frame(request):
            kind = "subdocument"  # an iframe: its failure is not the page's failure
        self._last_request = time.monotonic()
        url = request.url
        keep = tab is not None and kind == "document"  # answer 204: the tab keeps the page it shows

        def refuse() -> None:
            self.blocked += 1
            route.fulfill(status=204) if keep else route.abort("blockedbyclient")

        if kind not in ALLOWED_RESOURCES or (tab is not None and request.method not in ("GET", "HEAD")
                                             and not tab.allow(request.method, url, kind)):
            refuse()
            return
        try:
            if prefetched is not None and url == prefetched.url and request.method == "GET":
                resp = prefetched
            else:
                before = self.fetcher.bytes_fetched
                content = request.post_data_buffer
                if tab is not None:
                    content = tab.body(content, request.headers.get("content-type", ""))
                resp = self.fetcher.request_once(url, method=request.method, headers=request.headers,
                                                 content=content)
                self.bytes_fetched += self.fetcher.bytes_fetched - before
        except (ModelError, ToolFailure) as e:
            errors.append((kind, e))
            refuse()
            return
        if keep and tab is not None and 300 <= resp.status < 400 and resp.header("location"):
            tab.redirect(url, resp.header("location"), request.method)  # Chromium would not route the next hop
            route.fulfill(status=204)
            return
        if not 300 <= resp.status < 400 and kind in ("document", "subdocument"):
            disposition = resp.header("content-disposition").lower()
            if disposition.startswith("attachment") or not is_textual(resp.content_type):
                if keep and tab is not None:
                    tab.download(resp)
                    route.fulfill(status=204)
                    return
                errors.append((kind, ToolFailure(f"Refused to download `{url}`: `{resp.content_type}` is not "
                                                 "a web page.", hint="Downloads are not allowed.")))
                route.abort("blockedbyclient")
                return
        headers = {k: v for k, v in resp.headers if k.lower() not in ("content-length", "set-cookie")}
        route.fulfill(status=resp.status, headers=headers, body=resp.body)

    @staticmethod
    def _is_main_frame(request: Any) -> bool:
        try:
            return request.frame.parent_frame is None
        except Exception:  # no frame (a worker's request)
            return False

    def _settle(self, page: Any) -> None:
        """Let scripts run until no request has been made for ``quiet_ms`` (at most ``settle_ms``).

        Every request goes through :meth:`_route`, so its clock sees all network activity; a page that
        keeps polling is read as it is when ``settle_ms`` runs out.
        """
        from playwright.sync_api import Error as PlaywrightError

        quiet = self.config.quiet_ms / 1000
        end = time.monotonic() + self.config.settle_ms / 1000
        self._last_request = max(self._last_request, time.monotonic())
        with contextlib.suppress(PlaywrightError):
            while time.monotonic() < end:
                page.wait_for_timeout(50)
                if time.monotonic() - self._last_request >= quiet:
                    break

    @staticmethod
    def _failure(url: str, errors: list[tuple[str, ToolCallError]], detail: str) -> ToolCallError:
        """Why the page could not be shown: a refused or failed document request if there was one."""
        for kind, err in reversed(errors):
            if kind == "document":
                return err
        return ToolFailure(f"Error rendering `{url}`: {detail}", hint="Try again, or open another result.")

    def _page(self) -> Any:
        """The conversation's one context and tab, made on first use and again if the tab died.

        Reusing the tab keeps its renderer process warm (a new tab costs 0.2-0.5 s). Nothing persists
        between pages that matters: cookies are never sent or stored, storage is per-origin.
        """
        page = self._state.get("page")
        if page is not None and not page.is_closed():
            return page
        self._start()  # first: a dead browser is cleaned up before its context is closed
        if "context" in self._state:
            self._state.pop("context").close()
        context, page = self.new_tab(lambda route: self._route(route, self._call["errors"], self._call["prefetched"]))
        page.on("download", lambda d: d.cancel())
        self._state.update(context=context, page=page)
        return page

    def new_tab(self, route: Callable[[Any], None]) -> tuple[Any, Any]:
        """A fresh context and tab whose every request goes to ``route`` (call on the Chromium thread).

        WebSockets are closed (route() does not see them), service workers blocked, popups closed as they
        open, downloads not accepted by Chromium.
        """
        browser = self._start()
        context = browser.new_context(accept_downloads=False, service_workers="block",
                                      java_script_enabled=True, viewport={"width": 1280, "height": 2000})
        context.route("**/*", route)
        context.route_web_socket("**/*", lambda ws: ws.close())
        page = context.new_page()
        context.on("page", lambda other: other.close() if other != page else None)  # popups, window.open
        return context, page

    def _render(self, url: str, prefetched: Response | None) -> Rendered:
        from playwright.sync_api import Error as PlaywrightError

        start = time.monotonic()
        page = self._page()
        errors: list[tuple[str, ToolCallError]] = []
        self._call = {"errors": errors, "prefetched": prefetched}
        try:
            try:
                page.goto(url, wait_until="load", timeout=self.config.navigation_timeout_s * 1000)
            except PlaywrightError as e:
                raise self._failure(url, errors, str(e).splitlines()[0]) from e
            self._settle(page)
            if page.url.startswith("chrome-error:"):
                raise self._failure(url, errors, "the page navigated to an address that could not be loaded")
            try:
                html = page.evaluate("n => document.documentElement ? document.documentElement.outerHTML.slice(0, n) "
                                     ": ''", self.max_html_chars)
                title = page.title()
            except PlaywrightError as e:  # navigated away while we read it
                raise self._failure(url, errors, str(e).splitlines()[0]) from e
            return Rendered(url=page.url, title=title, html=html, elapsed_s=time.monotonic() - start)
        finally:
            with contextlib.suppress(PlaywrightError):  # stop the page's scripts until the next render
                page.goto("about:blank", timeout=5000)
            self._call = {"errors": [], "prefetched": None}
