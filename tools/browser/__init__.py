"""The browser tool: search, open and find over a stack of pages with cursors and citations.

Use from Python::

    from ossagent.tools.browser import Browser, OfflineBackend

    with Browser(OfflineBackend("docs/")) as b:
        view = b.search("sliding window")
        print(view.text)
        page = b.open(0)            # follow link 0 of the newest page
        b.find("sinks")
        b.resolve_citations("as shown 【1†L3-L5】")

and for the model: ``BrowserTool(Browser(...))`` (an :class:`ossagent.tools.base.Tool`).
"""

from __future__ import annotations

from ossagent.tools.browser.browser import Browser, BrowserConfig, create_browser, needs_javascript
from ossagent.tools.browser.chromium import ChromiumConfig, ChromiumRenderer
from ossagent.tools.browser.citations import Citation
from ossagent.tools.browser.fetch import FetchLimits, HttpFetcher, Response
from ossagent.tools.browser.page import View
from ossagent.tools.browser.policy import PolicyError, UrlPolicy
from ossagent.tools.browser.search import OfflineBackend, SearchBackend, SearchResult, SearxngBackend
from ossagent.tools.browser.text import PageContents, html_to_page
from ossagent.tools.browser.tool import BrowserTool

__all__ = [
    "Browser",
    "BrowserConfig",
    "BrowserTool",
    "ChromiumConfig",
    "ChromiumRenderer",
    "Citation",
    "FetchLimits",
    "HttpFetcher",
    "OfflineBackend",
    "PageContents",
    "PolicyError",
    "Response",
    "SearchBackend",
    "SearchResult",
    "SearxngBackend",
    "UrlPolicy",
    "View",
    "create_browser",
    "html_to_page",
    "needs_javascript",
]
