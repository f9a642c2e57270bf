"""The tool as the model sees it: trained texts verbatim, calls, and errors for the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.base import ModelError, Tool
from ossagent.tools.browser import Browser, BrowserTool

# the copy of openai-harmony's texts kept with the project docs (shared/docs, above the checkout)
TRAINED = next((p / "shared/docs/harmony-builtin-tools.json" for p in Path(__file__).resolve().parents
                if (p / "shared/docs/harmony-builtin-tools.json").exists()), Path("shared/docs/missing"))


@pytest.fixture()
def tool(browser: Browser) -> BrowserTool:
    return BrowserTool(browser)


def test_is_a_tool(tool: BrowserTool) -> None:
    assert isinstance(tool, Tool) and tool.name == "browser"


def test_description_is_the_trained_text(tool: BrowserTool, harmony_encoding: Any) -> None:
    desc = tool.description()
    if TRAINED.exists():  # the copy of openai-harmony's texts kept with the project docs
        trained = json.loads(TRAINED.read_text())["browser"]
        assert desc.description == trained["description"]
        assert [(f.name, f.description, f.parameters) for f in desc.functions] == [
            (t["name"], t["description"], t["parameters"]) for t in trained["tools"]]
    # and openai-harmony's own browser namespace (the reference library) agrees
    import openai_harmony as oh

    ref = oh.ToolNamespaceConfig.browser()
    assert desc.description == ref.description
    assert [(f.name, f.description, f.parameters) for f in desc.functions] == [
        (t.name, t.description, t.parameters) for t in ref.tools]


def test_calls_route_to_the_browser(site: Any, tool: BrowserTool, golden: Any) -> None:
    r = tool.call("browser.open", json.dumps({"id": site.base + "/static.html"}))
    assert r.recipient == "browser.open" and r.metadata["cursor"] == 0
    golden("open_static", r.text, site)
    r = tool.call("browser.open", '{"id": 0, "cursor": 0.0}')
    assert r.metadata["url"] == site.base + "/second.html"
    r = tool.call("browser.open", '{"id": "1", "cursor": 0}')  # a numeric string is a link id
    assert r.metadata["url"] == site.base + "/third.html"
    r = tool.call("browser.find", '{"pattern": "sink", "cursor": 1}')
    assert r.metadata["cursor"] == 3 and "match at L2" in r.text
    r = tool.call("browser.open", '{"loc": 2, "num_lines": 1, "cursor": 0}')
    assert r.metadata["lines"] == [2, 2]


BAD_CALLS = [
    ("browser.click", "{}"),
    ("browser.open", "{id: 1}"),
    ("browser.open", "[1]"),
    ("browser.open", '{"url": "x"}'),
    ("browser.open", '{"cursor": "a"}'),
    ("browser.open", '{"loc": 1.5}'),
    ("browser.find", "{}"),
    ("browser.search", '{"query": 3}'),
    ("browser.search", '{"query": "x"}'),
    ("browser.open", '{"view_source": "yes"}'),
    ("browser.open", ""),
    ("browser.open", '{"id": "file:///etc/passwd"}'),
    ("browser.open", '{"id": "gopher://example.org/"}'),
    ("browser.open", '{"id": "http://10.0.0.1/admin"}'),
    ("browser.open", '{"id": "http://[::1]:8080/"}'),
]


def test_bad_calls_are_model_errors(tool: BrowserTool, golden: Any) -> None:
    shown = []
    for recipient, content in BAD_CALLS:
        with pytest.raises(ModelError) as e:
            tool.call(recipient, content)
        shown.append(f"{recipient} {content}\n{e.value.for_model()}")
    golden("errors_tool_calls", "\n\n".join(shown))


def test_search_through_the_tool(offline_browser: Browser, golden: Any) -> None:
    tool = BrowserTool(offline_browser)
    r = tool.call("browser.search", '{"query": "sliding window attention", "topn": 1, "source": "web"}')
    golden("search_offline", r.text)  # the reference ignores topn: same page as the Python call
    base = "https://offline.invalid/"
    assert r.metadata["results"] == [  # each result's URL and title, in the page's order, for the caller
        {"url": base + "attention.html", "title": "Attention in gpt-oss"},
        {"url": base + "experts.html", "title": "Mixture of experts"},
    ]
    opened = tool.call("browser.open", '{"id": 0}')
    assert "results" not in opened.metadata  # only a search lists results


def test_search_results_metadata_survives_titles_that_look_like_markup(tmp_path: Path, enc: Any) -> None:
    from ossagent.tools.browser import BrowserConfig, OfflineBackend, UrlPolicy

    (tmp_path / "a.html").write_text("<title>Fish † chips 【0†x】</title><p>fish supper</p>")
    (tmp_path / "b.md").write_text("# B\n\nmore fish\n")
    browser = Browser(OfflineBackend(tmp_path), BrowserConfig(policy=UrlPolicy(), render="never"), encoding=enc)
    try:
        r = BrowserTool(browser).call("browser.search", '{"query": "fish"}')
    finally:
        browser.close()
    results = r.metadata["results"]
    assert sorted(x["url"].rsplit("/", 1)[1] for x in results) == ["a.html", "b.md"]
    titles = {x["url"].rsplit("/", 1)[1]: x["title"] for x in results}
    assert titles == {"a.html": "Fish ‡ chips 〖0‡x〗", "b.md": "b"}  # as the page shows them
    for n, x in enumerate(results):
        assert f"【{n}†{x['title']}†" in r.text
