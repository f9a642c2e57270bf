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

Acting on pages (a live Chromium tab; the same actions from Python and for the model)::

    config = BrowserConfig(policy=UrlPolicy(allow_networks=("127.0.0.1/32",)),
                           actions=ActionConfig(workspace="work/"))
    with Browser(config=config) as b:
        page = b.goto("http://127.0.0.1:8000/login")   # controls shown as 【#3 textbox "User name"】
        b.type(3, "alice")
        b.click(5)                                     # the next page, or what was refused and why

and for the model: ``browser_tools(b)``, the ``browser`` and ``page`` namespaces over one browser.
"""

from __future__ import annotations

from ossagent.tools.browser.action_tool import PageTool, browser_tools
from ossagent.tools.browser.actions import ActionConfig, ActionResult, Actions, SideEffect
from ossagent.tools.browser.browser import Browser, BrowserConfig, create_browser, needs_javascript
from ossagent.tools.browser.chromium import ChromiumConfig, ChromiumRenderer
from ossagent.tools.browser.citations import Citation
from ossagent.tools.browser.fetch import FetchLimits, HttpFetcher, Response
from ossagent.tools.browser.page import View
from ossagent.tools.browser.policy import PolicyError, UrlPolicy
from ossagent.tools.browser.search import (
    BraveBackend,
    OfflineBackend,
    SearchBackend,
    SearchResult,
    SearxngBackend,
)
from ossagent.tools.browser.text import PageContents, html_to_page
from ossagent.tools.browser.tool import BrowserTool

__all__ = [
    "ActionConfig",
    "ActionResult",
    "Actions",
    "BraveBackend",
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
    "PageTool",
    "PolicyError",
    "Response",
    "SearchBackend",
    "SearchResult",
    "SearxngBackend",
    "SideEffect",
    "UrlPolicy",
    "View",
    "browser_tools",
    "create_browser",
    "html_to_page",
    "needs_javascript",
]
