"""Build the built-in tools a person named on the command line (``--tools python,files,browser``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ossagent.agent.settings import Settings
from ossagent.tools.base import Tool, UserError

TOOL_NAMES = ("python", "files", "browser")


def build_tools(
    names: Sequence[str], workspace: Path, settings: Settings, *, search: str | None = None,
    allow_private: bool = False,
) -> list[Tool]:
    """Instantiate built-in tools by name; a machine that cannot run one is a clear :class:`UserError`."""
    unknown = [n for n in names if n not in TOOL_NAMES]
    if unknown:
        raise UserError(f"unknown tools {unknown}; choose from {', '.join(TOOL_NAMES)}")
    workspace.mkdir(parents=True, exist_ok=True)
    tools: list[Tool] = []
    for name in dict.fromkeys(names):
        if name == "python":
            from ossagent.tools.python import PythonTool

            tools.append(PythonTool(workspace))
        elif name == "files":
            from ossagent.tools.files import FilesTool

            tools.append(FilesTool(workspace))
        elif name == "browser":
            tools.extend(_browser(settings, search, allow_private, workspace))
    return tools


def _browser(settings: Settings, search: str | None, allow_private: bool, workspace: Path) -> list[Tool]:
    """``browser`` (search/open/find) and ``page`` (actions in a live tab) over one browser."""
    from ossagent.tools.browser import (
        ActionConfig,
        Browser,
        BrowserConfig,
        OfflineBackend,
        SearxngBackend,
        browser_tools,
    )
    from ossagent.tools.browser.chromium import ChromiumConfig
    from ossagent.tools.browser.policy import UrlPolicy

    backend = None
    if search and search.startswith(("http://", "https://")):
        backend = SearxngBackend(search)
    elif search:
        backend = OfflineBackend(search)
    chromium = ChromiumConfig(executable=settings.chromium) if settings.chromium else ChromiumConfig()
    config = BrowserConfig(policy=UrlPolicy(allow_private=allow_private), chromium=chromium,
                           actions=ActionConfig(workspace=workspace))
    return browser_tools(Browser(backend, config))
