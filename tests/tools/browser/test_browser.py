"""The page stack over the loopback site and the offline backend: every model-visible text is golden."""

from __future__ import annotations

from typing import Any

import pytest

from ossagent.tools.base import ModelError, ToolFailure
from ossagent.tools.browser import Browser
from ossagent.tools.browser.policy import PolicyError


def test_open_by_url_then_follow_links_across_pages(site: Any, browser: Browser, golden: Any) -> None:
    hits = site.hits.get("/static.html", 0)
    v0 = browser.open(site.base + "/static.html")
    golden("open_static", v0.text, site)
    assert v0.cursor == 0 and v0.page.urls["0"] == site.base + "/second.html"
    v1 = browser.open(0)
    golden("open_second_by_id", v1.text, site)
    assert v1.cursor == 1 and v1.title == "Second page"
    v2 = browser.open(0, cursor=1)  # back to the static page through the second page's link
    assert v2.url == site.base + "/static.html" and v2.cursor == 2
    v3 = browser.open(1, cursor=0)  # the third page, from the first page
    assert "The third page says hello." in v3.text
    assert site.hits["/static.html"] == hits + 1  # cached: fetched once in this conversation


def test_scroll_pushes_the_same_page(site: Any, browser: Browser, golden: Any) -> None:
    browser.open(site.base + "/static.html")
    v = browser.open(loc=7, num_lines=3)
    assert (v.cursor, v.loc, v.end) == (1, 7, 10)
    golden("scroll_static", v.text, site)
    v = browser.scroll(12, cursor=0)
    assert v.cursor == 2 and v.text.split("\n")[1] == "**viewing lines [12 - 13] of 13**"


def test_cursor_and_location_errors_are_for_the_model(site: Any, browser: Browser, golden: Any) -> None:
    with pytest.raises(ModelError) as e:
        browser.find("x")
    golden("error_no_pages", e.value.for_model())
    browser.open(site.base + "/static.html")
    browser.open(0)
    with pytest.raises(ModelError) as e:
        browser.open(0, cursor=7)
    golden("error_cursor", e.value.for_model())
    assert str(e.value) == "cursor 7 does not exist; open pages are 0 to 1."
    with pytest.raises(ModelError) as e:
        browser.open(9)
    golden("error_link_id", e.value.for_model())
    with pytest.raises(ModelError) as e:
        browser.open(loc=500)
    golden("error_loc", e.value.for_model())
    assert len(browser.stack) == 2  # failed calls push nothing


def test_find_and_open_a_match(site: Any, browser: Browser, golden: Any) -> None:
    browser.open(site.base + "/static.html")
    v = browser.find("ITEM")
    golden("find_static", v.text, site)
    assert v.cursor == 1 and v.page.snippets
    opened = browser.open(0)  # the match: opens the page a few lines above it
    assert opened.url == site.base + "/static.html" and opened.loc == 12 - 4
    assert browser.open(0, cursor=1, num_lines=2).loc == 8
    with pytest.raises(ModelError, match="find results page"):
        browser.find("x", cursor=1)
    assert browser.find("nothing here", cursor=0).text.endswith("No `find` results for pattern: `nothing here`")


def test_forged_markers_never_reach_the_model(site: Any, browser: Browser, golden: Any) -> None:
    v = browser.open(site.base + "/forged.html")
    golden("open_forged", v.text, site)
    body = v.text.split("\n", 3)[3]
    assert body.count("【") == 1  # the one real link
    assert browser.resolve_citations(v.text) == [] or all(c.cursor == 0 for c in browser.resolve_citations(body))


def test_huge_page_is_shown_through_the_viewport(site: Any, browser: Browser, enc: Any) -> None:
    v = browser.open(site.base + "/huge.html")
    assert v.page.truncated and v.page.text.endswith("[The page was cut at the download limit.]")
    assert v.total_lines > 1000 and v.end - v.loc < 80
    assert len(enc.encode(v.text)) < 1024 + 80
    assert browser.bytes_fetched < 2_000_000 + 300_000


def test_refusals_are_reported(site: Any, browser: Browser, golden: Any) -> None:
    with pytest.raises(PolicyError) as e:
        browser.open(site.base + "/redirect-private")
    golden("error_redirect_private", e.value.for_model(), site)
    with pytest.raises(ToolFailure) as f:
        browser.open(site.base + "/file.zip")
    golden("error_download", f.value.for_model(), site)
    with pytest.raises(PolicyError):
        browser.open("file:///etc/passwd")
    assert browser.stack == []


def test_view_source_and_plain_text(site: Any, browser: Browser, golden: Any) -> None:
    v = browser.open(site.base + "/second.html", view_source=True)
    assert "&lt;" not in v.text and "<h2>Attention sinks</h2>" in v.text
    v = browser.open(site.base + "/plain.txt")
    golden("open_plain", v.text, site)
    assert "〖1†L2〗" in v.text


def test_citations_resolve_to_urls(site: Any, browser: Browser) -> None:
    browser.open(site.base + "/static.html")
    browser.open(0)
    browser.find("sink")
    answer = "Windows are 128 tokens 【0†L4-L5】; sinks are learned 【1†L4】【2†L0】 and 【9†L1】."
    cites = browser.resolve_citations(answer)
    assert [(c.cursor, c.url, c.lines) for c in cites] == [
        (0, site.base + "/static.html", (4, 5)),
        (1, site.base + "/second.html", (4, 4)),
        (2, site.base + "/second.html", (0, 0)),  # a find page cites the page it searched
    ]
    assert "window of 128 tokens" in cites[0].quote
    assert answer[cites[0].span[0] : cites[0].span[1]] == "【0†L4-L5】"
    text, notes, partial = browser.normalize_citations(answer + " more 【1†L")
    assert partial and "【9†L1】" in text
    assert text.startswith(f"Windows are 128 tokens  ([127.0.0.1:{site.port}]({site.base}/static.html)) ;")
    assert [n["url"] for n in notes] == [site.base + "/static.html", site.base + "/second.html",
                                         site.base + "/second.html"]
    for n in notes:
        assert text[n["start_index"] : n["end_index"]].startswith(" ([127.0.0.1")
    hidden, _, _ = browser.normalize_citations("x 【1†L", hide_partial=True)
    assert hidden == "x "


def test_offline_search_open_and_find(offline_browser: Browser, golden: Any) -> None:
    b = offline_browser
    v = b.search("sliding window attention")
    golden("search_offline", v.text)
    assert v.cursor == 0 and v.page.url == ""
    assert v.page.urls["0"] == "https://offline.invalid/attention.html"
    page = b.open(0)
    golden("open_offline_attention", page.text)
    linked = b.open(0)  # the experts page, linked from the attention page
    assert "32 experts" in linked.text
    assert b.find("mxfp4").text.count("match at") == 1
    assert b.resolve_citations("【1†L3】")[0].url == "https://offline.invalid/attention.html"
    assert b.search("zzzz nothing").text.endswith("No results.")
    with pytest.raises(ToolFailure, match="no such document"):
        b.open("https://offline.invalid/../../etc/passwd")


def test_search_without_a_backend(browser: Browser) -> None:
    with pytest.raises(ModelError, match="Search is not available"):
        browser.search("x")


def test_state_round_trips_through_json(site: Any, browser: Browser, enc: Any) -> None:
    import json

    from ossagent.tools.browser import create_browser

    browser.open(site.base + "/static.html")
    browser.find("item")
    fetched = site.hits["/static.html"]
    saved = json.loads(json.dumps(browser.state()))
    with create_browser(allow_networks=("127.0.0.1/32",), render="never", encoding=enc) as again:
        again.restore(saved)
        assert [p.url for p in again.stack] == [p.url for p in browser.stack]
        assert again.open(0).loc == browser.open(0).loc == 8  # the find snippet survived
        assert again.open(0, cursor=0).text.split("\n", 1)[1] == browser.open(0, cursor=0).text.split("\n", 1)[1]
        assert site.hits["/static.html"] == fetched  # restored pages are not fetched again
        cites = again.resolve_citations("【0†L4】")
        assert cites[0].url == site.base + "/static.html"
    from ossagent.tools.base import UserError

    with pytest.raises(UserError):
        browser.restore({"stack": "nope"})
    with pytest.raises(UserError, match="one search backend"):
        create_browser(searxng_url="http://127.0.0.1:1/", offline_folder="/tmp")
