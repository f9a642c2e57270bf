"""A live Chromium tab that actions drive: click, type, select, check, upload, scroll, back, wait.

Everything here runs on the renderer's Chromium thread (through :meth:`ChromiumRenderer.call`, under its
watchdog). Every request the tab makes is served by the policy-checked fetcher (the renderer's route
handler); for this tab the handler answers a refused, redirected or downloaded main-frame document with
``204 No Content``, so the page stays as it was and this tab decides what happens next:

* a redirect is followed here, hop by hop, each hop routed (and so checked) again;
* a download is handed to ``on_download`` (which saves it into the workspace, or not);
* a request that is not a GET (a form submission, a script's POST) is first put to ``approve``.

Each action returns an *outcome*: a JSON-able dict with the page snapshot after it (see
:mod:`~ossagent.tools.browser.elements`), what happened (``events``) and, when the action could not be done,
an ``error`` for the model. Outcomes are what a recording stores.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

from ossagent.tools.base import ModelError, ToolCallError, ToolFailure
from ossagent.tools.browser.action_config import ActionConfig
from ossagent.tools.browser.chromium import ChromiumRenderer
from ossagent.tools.browser.elements import SNAPSHOT_JS
from ossagent.tools.browser.fetch import Response

Outcome = dict[str, Any]
_MAX_REDIRECTS = 8


class LiveTab:
    """One tab of the renderer's Chromium kept open across actions (one per browser)."""

    def __init__(self, renderer: ChromiumRenderer, config: ActionConfig,
                 approve: Callable[[str, str, str], bool] | None = None,
                 on_download: Callable[[Response], dict[str, Any]] | None = None) -> None:
        self.renderer = renderer
        self.config = config  # read at each action: allow_passwords, dialogs, action_timeout_s
        self.approve = approve
        self.on_download = on_download
        self.attr = f"data-ossagent-{secrets.token_hex(4)}"
        self.next_id = 0
        self._page: Any = None
        self._context: Any = None
        self._browser: Any = None
        self._events: list[dict[str, Any]] = []
        self._errors: list[tuple[str, ToolCallError]] = []
        self._redirects: list[tuple[str, str, str]] = []
        self._download_urls: list[str] = []
        self.uploads: dict[str, bytes] = {}  # file name -> bytes, of files attached by upload

    # ----- called from any thread -----

    def run(self, action: str, target: int | None = None, extra_s: float = 0.0, **args: Any) -> Outcome:
        what = f"running {action}" + (f" on element {target}" if target is not None else "")
        return self.renderer.call(self._run, action, target, args, what=what, extra_s=extra_s,
                                  hint="The tab was restarted: load the page again with page.goto.")

    def close(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                self.renderer.call(self._context.close, what="closing the tab", hint="")
            self._context = self._page = None

    # ----- the route handler's questions (TabHooks), on the Chromium thread -----

    def allow(self, method: str, url: str, kind: str) -> bool:
        if self.approve is None or self.approve(method, url, kind):
            return True
        self._events.append({"kind": "held", "method": method, "url": url})
        return False

    def redirect(self, url: str, location: str, method: str) -> None:
        self._redirects.append((url, urljoin(url, location), method))

    def download(self, resp: Response) -> None:
        if self.on_download is None:
            self._events.append({"kind": "download", "url": resp.url, "refused": "downloads are not enabled"})
        else:
            self._events.append(self.on_download(resp))

    def body(self, content: bytes | None, content_type: str) -> bytes | None:
        """Put the bytes of files attached by ``upload`` back into a multipart body (Chromium sends them empty)."""
        if not content or not self.uploads or not content_type.lower().startswith("multipart/form-data"):
            return content
        for name, data in self.uploads.items():
            part = re.compile(rb'(filename="' + re.escape(name.encode()) + rb'"\r\n(?:[^\r\n]+\r\n)*\r\n)(\r\n--)')
            content = part.sub(lambda m, d=data: m.group(1) + d + m.group(2), content)  # type: ignore[misc]
        return content

    # ----- on the Chromium thread -----

    def _tab(self) -> Any:
        browser = self.renderer._start()
        if self._page is not None and not self._page.is_closed() and browser is self._browser:
            return self._page
        lost = self._page is not None
        self._context, page = self.renderer.new_tab(
            lambda route: self.renderer._route(route, self._errors, None, self))
        page.on("dialog", self._dialog)
        page.on("download", self._download_event)
        self._context.on("page", lambda other: self._events.append({"kind": "popup"}) if other != page else None)
        self._page, self._browser = page, browser
        if lost:
            raise ToolFailure("The browser tab was restarted and its page was lost.",
                              hint="Load the page again with page.goto.")
        return page

    @property
    def _timeout_ms(self) -> float:
        return self.config.action_timeout_s * 1000

    def _dialog(self, dialog: Any) -> None:
        accept = self.config.dialogs == "accept" or dialog.type == "beforeunload"
        self._events.append({"kind": "dialog", "type": dialog.type, "message": dialog.message,
                             "accepted": accept})
        with contextlib.suppress(Exception):
            dialog.accept() if accept else dialog.dismiss()

    def _download_event(self, download: Any) -> None:  # <a download>: Chromium's request bypasses route()
        self._download_urls.append(download.url)
        with contextlib.suppress(Exception):
            download.cancel()

    def _run(self, action: str, target: int | None, args: dict[str, Any]) -> Outcome:
        from playwright.sync_api import Error as PlaywrightError

        page = self._tab()
        self._events, self._errors, self._redirects, self._download_urls = [], [], [], []
        before = page.url
        error: ToolCallError | None = None
        try:
            getattr(self, f"_do_{action}")(page, target, **args)
        except ToolCallError as e:
            error = e
        except PlaywrightError as e:
            first = str(e).splitlines()[0]
            error = ToolFailure(f"Could not {action}" + (f" element {target}" if target is not None else "")
                                + f": {first}", hint="Look at the page below and try another way.")
        self._finish(page)
        for kind, err in self._errors:
            if kind == "document":
                self._events.append({"kind": "refused", "message": err.for_model()})
        if page.url != before and page.url != "about:blank":
            self._events.append({"kind": "navigated", "url": page.url})
        out: Outcome = {"events": self._events}
        if error is None or (action != "goto" and page.url != "about:blank"):
            out.update(self._snapshot(page))
        if error is not None:
            out["error"] = {"fault": "model" if isinstance(error, ModelError) else "tool",
                            "message": str(error.args[0]), "hint": error.hint}
        return out

    def _finish(self, page: Any) -> None:
        """Let the page settle, follow redirects the route handler held, fetch ``<a download>`` files."""
        from playwright.sync_api import Error as PlaywrightError

        for _ in range(_MAX_REDIRECTS + 1):
            with contextlib.suppress(PlaywrightError):
                page.wait_for_load_state("load", timeout=self.renderer.config.navigation_timeout_s * 1000)
            self.renderer._settle(page)
            if not self._redirects:
                break
            _, location, _ = self._redirects.pop(0)
            self._redirects.clear()
            with contextlib.suppress(PlaywrightError):  # a refused hop is answered 204: goto reports an abort
                page.goto(location, wait_until="load", timeout=self.renderer.config.navigation_timeout_s * 1000)
        for url in self._download_urls:
            try:
                self.download(self._fetch_file(url))
            except ToolCallError as e:
                self._events.append({"kind": "download", "url": url, "refused": e.for_model()})

    def _fetch_file(self, url: str) -> Response:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self.renderer.fetcher.request_once(current)
            location = resp.header("location")
            if 300 <= resp.status < 400 and location:
                current = urljoin(current, location)
                continue
            if resp.status >= 400:
                raise ToolFailure(f"Error fetching `{current}`: HTTP {resp.status}.")
            return resp
        raise ToolFailure(f"Too many redirects from `{url}`.")

    def _snapshot(self, page: Any) -> Outcome:
        token = f"oss{secrets.token_hex(5)}q"
        limit = 2 * self.renderer.fetcher.limits.max_bytes
        from playwright.sync_api import Error as PlaywrightError

        try:
            snap = page.evaluate(SNAPSHOT_JS, [self.attr, self.next_id, token, limit])
        except PlaywrightError:  # navigating while we read it: read the page it arrives at
            self._finish(page)
            try:
                snap = page.evaluate(SNAPSHOT_JS, [self.attr, self.next_id, token, limit])
            except PlaywrightError as e:
                raise ToolFailure(f"Could not read the page: {str(e).splitlines()[0]}",
                                  hint="Wait with page.wait_for, or load the page again with page.goto.") from e
        self.next_id = int(snap.pop("nextId"))
        return {"snapshot": snap, "token": token}

    def _locate(self, page: Any, target: int | None) -> Any:
        loc = page.locator(f'[{self.attr}="{target}"]')
        if loc.count() == 0:
            raise ModelError(f"Element {target} is no longer on the page: the page changed since it was shown.",
                             hint="The page as it is now is shown below; use an id from it.")
        return loc.first

    # ----- the actions: each raises ToolCallError for the model, or PlaywrightError -----

    def _do_goto(self, page: Any, target: int | None, url: str) -> None:
        from playwright.sync_api import Error as PlaywrightError

        with contextlib.suppress(PlaywrightError):  # a refused page is answered 204 and reported from _errors
            page.goto(url, wait_until="load", timeout=self.renderer.config.navigation_timeout_s * 1000)
        errors = [e for kind, e in self._errors if kind == "document"]
        if errors:
            self._errors.clear()
            raise errors[0]

    def _do_look(self, page: Any, target: int | None) -> None:
        pass

    def _do_click(self, page: Any, target: int | None) -> None:
        el = self._locate(page, target)
        if el.evaluate("e => e.tagName === 'INPUT' && e.type === 'file'"):
            raise ModelError(f"Element {target} is a file field.", hint="Use page.upload with a workspace file.")
        # one tab only: links and forms that would open a new window open here
        el.evaluate("e => { for (const t of [e.closest('a'), e.closest('form'), e.form]) "
                    "if (t) t.removeAttribute('target'); }")
        el.click(timeout=self._timeout_ms)

    def _do_type(self, page: Any, target: int | None, text: str, submit: bool = False) -> None:
        el = self._locate(page, target)
        if el.evaluate("e => e.tagName === 'INPUT' && e.type === 'password'") and not self.config.allow_passwords:
            raise ModelError(f"Element {target} is a password field: typing passwords is not allowed here.",
                             hint="Ask the user to sign in, or to allow passwords in the browser's settings.")
        el.fill(text, timeout=self._timeout_ms)
        if submit:
            el.press("Enter", timeout=self._timeout_ms)

    def _do_select(self, page: Any, target: int | None, option: str) -> None:
        el = self._locate(page, target)
        try:
            el.select_option(label=option, timeout=self._timeout_ms)
        except Exception:  # no option with that label: try it as a value
            el.select_option(value=option, timeout=self._timeout_ms)

    def _do_check(self, page: Any, target: int | None, on: bool = True) -> None:
        self._locate(page, target).set_checked(on, timeout=self._timeout_ms)

    def _do_upload(self, page: Any, target: int | None, file: dict[str, Any]) -> None:
        """Attach ``file`` ({"name", "mimeType", "buffer"}: bytes the caller read, not a path opened here)."""
        el = self._locate(page, target)
        if not el.evaluate("e => e.tagName === 'INPUT' && e.type === 'file'"):
            raise ModelError(f"Element {target} is not a file field.")
        el.set_input_files(file, timeout=self._timeout_ms)
        self.uploads[file["name"]] = file["buffer"]

    def _do_scroll(self, page: Any, target: int | None, direction: str) -> None:
        page.evaluate("d => window.scrollBy(0, d * window.innerHeight)", 1 if direction == "down" else -1)

    def _do_back(self, page: Any, target: int | None) -> None:
        timeout = self.renderer.config.navigation_timeout_s * 1000
        page.go_back(wait_until="load", timeout=timeout)
        if page.url == "about:blank":  # the tab's first entry: there was no page before
            page.go_forward(wait_until="load", timeout=timeout)
            raise ModelError("There is no previous page in this tab.", hint="Use page.goto with a URL.")

    def _do_wait_for(self, page: Any, target: int | None, text: str, timeout: float) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        start = time.monotonic()
        try:
            page.wait_for_function("t => document.body && document.body.innerText.includes(t)", arg=text,
                                   timeout=timeout * 1000, polling=100)
            self._events.append({"kind": "waited", "text": text, "found": True,
                                 "seconds": round(time.monotonic() - start, 1)})
        except PlaywrightTimeout:
            self._events.append({"kind": "waited", "text": text, "found": False, "seconds": timeout})

    def _do_screenshot(self, page: Any, target: int | None, save: Callable[[bytes], object]) -> None:
        """Hand the PNG to ``save`` (which writes it into the workspace); Chromium writes no file itself."""
        save(page.screenshot(timeout=self._timeout_ms))

