"""The browser: a stack of pages under cursors, usable from Python and through the model.

Every :meth:`Browser.search`, :meth:`Browser.open` (a scroll included) and :meth:`Browser.find` pushes a page;
its cursor is its index on the stack. Fetched pages are cached for the life of the browser (one
conversation), so a page is fetched once however often it is opened or scrolled.

Fetching: a plain GET with httpx first; the page is rendered again in Chromium when it needs JavaScript
(``render="auto"``: scripts and little text, or a ``<noscript>`` asking for JavaScript), always
(``render="always"``) or never (``render="never"``).

Acting on pages (``goto``, ``click``, ``type``, ``select``, ``check``, ``upload``, ``scroll`` with a direction,
``back``, ``wait_for``, ``screenshot``) runs in a live Chromium tab: see :mod:`ossagent.tools.browser.actions`.
Their pages join the same stack, so cursors and citations work across reading and acting.
"""

from __future__ import annotations

import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from ossagent.tools.base import ModelError, UserError
from ossagent.tools.browser import citations
from ossagent.tools.browser.actions import ActionConfig, ActionResult, Actions
from ossagent.tools.browser.chromium import ChromiumConfig, ChromiumRenderer
from ossagent.tools.browser.fetch import FetchLimits, HttpFetcher, Response
from ossagent.tools.browser.page import View, Viewport, find_in_page, render
from ossagent.tools.browser.policy import UrlPolicy
from ossagent.tools.browser.search import SearchBackend, results_page
from ossagent.tools.browser.text import PageContents, html_to_page, plain_to_page, sanitize, strip_links

RENDER_MODES = ("auto", "always", "never")
_SCRIPT_RE = re.compile(rb"<script\b", re.IGNORECASE)
_NOSCRIPT_JS_RE = re.compile(rb"<noscript\b[^>]*>[^<]{0,400}javascript", re.IGNORECASE)
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class BrowserConfig:
    """Everything the browser needs from the person configuring it."""

    policy: UrlPolicy = field(default_factory=UrlPolicy)
    limits: FetchLimits = field(default_factory=FetchLimits)
    render: str = "auto"  # auto | always | never
    chromium: ChromiumConfig = field(default_factory=ChromiumConfig)
    view_tokens: int = 1024
    max_search_results: int = 20  # the reference ignores the model's topn and always asks for 20
    js_min_words: int = 60  # "auto": fewer visible words than this, with scripts, means render
    verify_tls: bool | ssl.SSLContext = True  # an SSLContext to trust a private CA
    actions: ActionConfig = field(default_factory=ActionConfig)  # page actions: workspace, passwords, approvals

    def __post_init__(self) -> None:
        if self.render not in RENDER_MODES:
            raise UserError(f"render must be one of {RENDER_MODES}, not {self.render!r}")
        if self.view_tokens < 16:
            raise UserError("view_tokens must be at least 16")


@dataclass
class FetchStats:
    pages: int = 0
    rendered: int = 0
    cache_hits: int = 0


def needs_javascript(resp: Response, page: PageContents, min_words: int) -> bool:
    """A heuristic: the HTML has scripts and shows almost no text, or its <noscript> asks for JavaScript."""
    if not _SCRIPT_RE.search(resp.body):
        return False
    if _NOSCRIPT_JS_RE.search(resp.body):
        return True
    body = page.text.split("\n", 3)[-1] if page.text.startswith("\nURL: ") else page.text
    return len(strip_links(body).split()) < min_words


def create_browser(
    *,
    searxng_url: str | None = None,
    brave_api_key: str | None = None,
    offline_folder: str | None = None,
    allow_networks: tuple[str, ...] = (),
    allow_private: bool = False,
    render: str = "auto",
    chromium_executable: str | None = None,
    chromium_sandbox: str = "auto",
    encoding: Any = None,
) -> Browser:
    """A browser from plain options (what a CLI or server reads from its settings).

    ``searxng_url``, ``brave_api_key`` and ``offline_folder`` choose the search backend (at most one;
    none: no search, pages are opened by URL).
    """
    from ossagent.tools.browser.search import BraveBackend, OfflineBackend, SearxngBackend

    if sum(bool(x) for x in (searxng_url, brave_api_key, offline_folder)) > 1:
        raise UserError("choose one search backend: a SearXNG URL, a Brave API key or an offline folder")
    backend: SearchBackend | None = None
    if brave_api_key:
        backend = BraveBackend(brave_api_key)
    elif searxng_url:
        backend = SearxngBackend(searxng_url)
    elif offline_folder:
        backend = OfflineBackend(offline_folder)
    config = BrowserConfig(
        policy=UrlPolicy(allow_private=allow_private, allow_networks=tuple(allow_networks)),
        render=render,
        chromium=ChromiumConfig(executable=chromium_executable, sandbox=chromium_sandbox),
    )
    return Browser(backend, config, encoding=encoding)


class Browser:
    """Search, open and find, with cursors. Thread-safe; one instance per conversation."""

    def __init__(self, search_backend: SearchBackend | None = None, config: BrowserConfig | None = None,
                 *, encoding: Any = None) -> None:
        self.config = config or BrowserConfig()
        self.backend = search_backend
        if encoding is None:
            from ossagent.model.tokenizer import o200k_harmony

            encoding = o200k_harmony()
        self.viewport = Viewport(encoding, self.config.view_tokens)
        self.http = HttpFetcher(self.config.policy, self.config.limits, verify=self.config.verify_tls)
        self._chromium: ChromiumRenderer | None = None
        self.stack: list[PageContents] = []
        self._cache: dict[str, PageContents] = {}
        self._raw: dict[str, Response] = {}
        self._lock = threading.RLock()
        self.stats = FetchStats()
        self.chromium_unavailable: str | None = None  # why "auto" could not render, if it could not
        self._actions: Actions | None = None
        self._closed = False
        if self.config.actions.record or self.config.actions.replay:  # open and search are recorded too
            self._actions = Actions(self, self.config.actions)

    # ----- the page stack -----

    def page(self, cursor: int = -1) -> PageContents:
        """The page at ``cursor`` (-1: the newest)."""
        with self._lock:
            if not self.stack:
                raise ModelError("No pages to access!", hint="Use `search` or `open` with a URL first.")
            if cursor == -1:
                return self.stack[-1]
            if not isinstance(cursor, int) or isinstance(cursor, bool):
                raise ModelError(f"`cursor` should be an integer, not `{type(cursor).__name__}`.")
            if not 0 <= cursor < len(self.stack):
                last = len(self.stack) - 1
                raise ModelError(f"cursor {cursor} does not exist; open pages are 0 to {last}.",
                                 hint="Use a cursor shown in brackets, like `[0]`, or -1 for the newest page.")
            return self.stack[cursor]

    def _push(self, page: PageContents, loc: int = 0, num_lines: int = -1) -> View:
        """Show ``page`` as the new top of the stack; a bad ``loc`` leaves the stack unchanged."""
        with self._lock:
            view = render(page, len(self.stack), loc, num_lines, self.viewport)
            self.stack.append(page)
            return view

    # ----- the three functions -----

    def search(self, query: str, topn: int | None = None) -> View:
        """Search with the configured backend and show the results page."""
        if self.backend is None:
            raise ModelError("Search is not available in this browser.",
                             hint="Open a URL directly with `open` and `id` set to the URL.")
        if not isinstance(query, str) or not query.strip():
            raise ModelError("`query` must be a non-empty string.")
        rec = self._recording()
        if rec is not None and rec.replaying:
            return self._push(rec.replayed_page(f"search:{query}"))
        n = topn if topn is not None and topn > 0 else self.config.max_search_results
        page = results_page(query, self.backend.search(query, n))
        if rec is not None:
            rec.record_page(f"search:{query}", page)
        return self._push(page)

    def open(self, id: int | str = -1, cursor: int = -1, loc: int = -1, num_lines: int = -1,
             view_source: bool = False, render: str | None = None) -> View:
        """Follow link ``id`` of page ``cursor``, open a URL (``id`` a string), or scroll (no ``id``)."""
        snippet_line: int | None = None
        if isinstance(id, str):
            url = id.strip()
            page = self._open_url(url, view_source, render)
        else:
            current = self.page(cursor)
            if id >= 0:
                url = current.urls.get(str(id), "")
                if not url:
                    known = f"0 to {len(current.urls) - 1}" if current.urls else "none on this page"
                    raise ModelError(f"Invalid link id `{id}`.",
                                     hint=f"Link ids on page [{self._cursor_of(cursor)}] are {known}.")
                snip = (current.snippets or {}).get(str(id))
                if snip is not None and snip.line_idx is not None:
                    snippet_line = snip.line_idx
                page = self._open_url(url, view_source, render)
            elif view_source:
                page = self._open_url(current.url, True, render)
            else:
                page = current  # scroll: the same page is pushed again
        if loc < 0:
            loc = snippet_line - 4 if snippet_line is not None and snippet_line > 4 else (snippet_line or 0)
        return self._push(page, loc, num_lines)

    def scroll(self, loc: int | str, cursor: int = -1, num_lines: int = -1) -> View:
        """Show page ``cursor`` from line ``loc``; ``"down"``/``"up"`` scrolls the live tab instead (an action)."""
        if isinstance(loc, str):
            return self.actions.scroll(loc).view
        return self.open(-1, cursor=cursor, loc=loc, num_lines=num_lines)

    def find(self, pattern: str, cursor: int = -1) -> View:
        """Case-insensitive exact matches of ``pattern`` in page ``cursor``, as a results page."""
        if not isinstance(pattern, str) or not pattern:
            raise ModelError("`pattern` must be a non-empty string.")
        page = self.page(cursor)
        if page.snippets is not None and "/find?pattern=" in page.url:
            raise ModelError("Cannot run `find` on a find results page.",
                             hint="Run `find` on the page itself: pass its cursor.")
        return self._push(find_in_page(page, pattern))

    # ----- page actions (a live Chromium tab; see actions.py) -----

    @property
    def actions(self) -> Actions:
        with self._lock:
            if self._actions is None:
                self._actions = Actions(self, self.config.actions)
            return self._actions

    def goto(self, url: str) -> ActionResult:
        """Load ``url`` in the live tab, with its controls marked for the actions below."""
        return self.actions.goto(url)

    def click(self, id: int) -> ActionResult:
        return self.actions.click(id)

    def type(self, id: int, text: str, submit: bool = False) -> ActionResult:
        return self.actions.type(id, text, submit)

    def select(self, id: int, option: str) -> ActionResult:
        return self.actions.select(id, option)

    def check(self, id: int, on: bool = True) -> ActionResult:
        return self.actions.check(id, on)

    def upload(self, id: int, path: str) -> ActionResult:
        return self.actions.upload(id, path)

    def back(self) -> ActionResult:
        return self.actions.back()

    def wait_for(self, text: str, timeout: float = 10.0) -> ActionResult:
        return self.actions.wait_for(text, timeout)

    def screenshot(self) -> ActionResult:
        return self.actions.screenshot()

    def _cursor_of(self, cursor: int) -> int:
        return len(self.stack) - 1 if cursor == -1 else cursor

    # ----- fetching -----

    def _open_url(self, url: str, view_source: bool, render_mode: str | None) -> PageContents:
        if url.startswith("view-source:"):
            url, view_source = url[len("view-source:"):], True
        mode = render_mode or self.config.render
        if mode not in RENDER_MODES:
            raise ModelError(f"render must be one of {RENDER_MODES}.")
        # a page asked for rendered is cached apart from its text-only reading (the fetch is shared)
        key = ("view-source:" if view_source else "always:" if mode == "always" else "") + url
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self.stats.cache_hits += 1
                return cached
        rec = self._recording()
        if rec is not None and rec.replaying:
            page = self._cache[key] = rec.replayed_page(key)
            return page
        if self.backend is not None and not view_source:
            served = self.backend.fetch(url)
            if served is not None:
                self._cache[key] = served
                if rec is not None:
                    rec.record_page(key, served)
                return served
        self.config.policy.check_url(url)
        resp = self._raw.get(url) or self.http.get(url)
        self._raw[url] = resp
        self.stats.pages += 1
        if view_source:
            page = PageContents(url=resp.url, title=f"view-source:{resp.url}",
                                text=f"\nURL: view-source:{resp.url}\n" + sanitize(resp.text()))
        elif resp.content_type in _HTML_TYPES or not resp.content_type:
            page = html_to_page(resp.text(), resp.url)
            if mode == "always" or (mode == "auto" and needs_javascript(resp, page, self.config.js_min_words)):
                page = self._rendered(resp, mode) or page
        else:
            page = plain_to_page(resp.text(), resp.url)
        page.truncated = resp.truncated
        if resp.truncated:
            page.text += "\n\n[The page was cut at the download limit.]"
        if rec is not None:
            rec.record_page(key, page)
        with self._lock:
            self._cache[key] = page
            if resp.redirects:
                self._cache.setdefault(resp.url, page)
        return page

    def _recording(self) -> Actions | None:
        """The actions that record or replay this session (its pages too), if it is recorded or replayed."""
        return self._actions if self.config.actions.record or self.config.actions.replay else None

    def _rendered(self, resp: Response, mode: str) -> PageContents | None:
        """The page as Chromium renders it; None when "auto" finds no usable Chromium (keep the text)."""
        try:
            renderer = self.chromium()
        except UserError as e:
            if mode == "always":
                raise
            self.chromium_unavailable = str(e)
            return None
        done = renderer.render(resp.url, prefetched=resp)
        self.stats.rendered += 1
        return html_to_page(done.html, done.url, title=done.title or None, scripted=True)

    def clear_cache(self) -> None:
        """Forget fetched pages (the stack stays): the next open fetches again."""
        with self._lock:
            self._cache.clear()
            self._raw.clear()

    def chromium(self) -> ChromiumRenderer:
        """The JavaScript renderer (started on first use); :class:`UserError` if Chromium is unusable."""
        with self._lock:
            if self.chromium_unavailable is not None:
                raise UserError(self.chromium_unavailable)
            if self._chromium is None:
                self._chromium = ChromiumRenderer(self.http, self.config.chromium)
            return self._chromium

    # ----- state across requests -----

    def state(self) -> dict[str, Any]:
        """The page stack as JSON-able data (for a server that keeps conversations between requests)."""
        with self._lock:
            return {"version": 1, "stack": [p.to_dict() for p in self.stack]}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back a stack saved by :meth:`state`; cursors and citations mean what they meant."""
        if state.get("version") != 1 or not isinstance(state.get("stack"), list):
            raise UserError("not a browser state saved by Browser.state()")
        pages = [PageContents.from_dict(p) for p in state["stack"]]
        with self._lock:
            self.stack = pages
            for p in pages:
                if p.url and p.snippets is None:
                    self._cache.setdefault(p.url, p)

    # ----- citations -----

    def resolve_citations(self, text: str) -> list[citations.Citation]:
        """The citations in the model's ``text`` (``【3†L10-L15】``) with their pages' URLs."""
        with self._lock:
            return citations.resolve(text, list(self.stack))

    def normalize_citations(self, text: str, hide_partial: bool = False) -> tuple[str, list[dict[str, Any]], bool]:
        """``text`` with citations replaced by `` ([domain](url)) ``, the annotations, and whether it ends
        in an unfinished marker."""
        with self._lock:
            return citations.normalize(text, list(self.stack), hide_partial)

    @property
    def bytes_fetched(self) -> int:
        return self.http.bytes_fetched

    def close(self) -> None:
        """Close Chromium, the HTTP client and the search backend (again: nothing more happens)."""
        if self._closed:
            return
        self._closed = True
        if self._actions is not None:
            self._actions.close()
            self._actions = None
        if self._chromium is not None:
            self._chromium.close()
            self._chromium = None
        self.http.close()
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
