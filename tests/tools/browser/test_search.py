"""Search backends: SearXNG's JSON API against a fake server on loopback, and the offline BM25 index."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ossagent.tools.base import ToolFailure, UserError
from ossagent.tools.browser import (
    Browser,
    BrowserConfig,
    OfflineBackend,
    SearchBackend,
    SearxngBackend,
    UrlPolicy,
)


@pytest.fixture()
def searx(site: Any) -> Any:
    seen: list[dict[str, list[str]]] = []

    def answer(h: Any) -> None:
        q = parse_qs(urlsplit(h.path).query)
        seen.append(q)
        rows = [{"title": f"Result {i} for {q['q'][0]}", "url": f"https://r{i}.example.org/page",
                 "content": f"snippet {i} 【0†L1】"} for i in range(30)]
        rows.insert(1, {"title": "no url"})
        h.send(200, json.dumps({"query": q["q"][0], "results": rows}).encode(), "application/json")

    site.route("/search", answer)
    site.page("/broken/search", "<html>not json</html>")
    site.page("/down/search", "busy", status=503)
    return seen


def test_searxng_json_api(site: Any, searx: Any, enc: Any, golden: Any) -> None:
    backend = SearxngBackend(site.base + "/")
    assert isinstance(backend, SearchBackend)
    results = backend.search("gpt-oss sinks", 3)
    assert [r.url for r in results] == [f"https://r{i}.example.org/page" for i in range(3)]
    assert searx[-1] == {"q": ["gpt-oss sinks"], "format": ["json"], "categories": ["general"]}
    with Browser(backend, BrowserConfig(policy=UrlPolicy(), max_search_results=4), encoding=enc) as b:
        view = b.search("gpt-oss sinks")
        golden("search_searxng", view.text)
        assert view.page.urls["3"] == "https://r3.example.org/page"
        assert "〖0†L1〗" in view.text  # result snippets cannot forge markers either


def test_searxng_failures_are_tool_failures(site: Any, searx: Any) -> None:
    with pytest.raises(ToolFailure, match="no results list"):
        SearxngBackend(site.base + "/broken").search("x", 3)
    with pytest.raises(ToolFailure, match="HTTP 503"):
        SearxngBackend(site.base + "/down").search("x", 3)
    with pytest.raises(ToolFailure, match="Error during search"):
        SearxngBackend("http://127.0.0.1:9/").search("x", 3)  # nothing listens on the discard port
    with pytest.raises(UserError):
        SearxngBackend("file:///searx")


def test_offline_bm25_matches_a_hand_computation(docs_folder: Path) -> None:
    backend = OfflineBackend(docs_folder)
    assert sorted(d.url.rsplit("/", 1)[1] for d in backend.docs) == [
        "attention.html", "cooking.txt", "experts.html", "tokenizer.md"]
    results = backend.search("experts", 10)
    assert [r.title for r in results] == ["Mixture of experts", "Attention in gpt-oss"]
    # BM25 by hand for the top document
    doc = next(d for d in backend.docs if d.title == "Mixture of experts")
    n, df = 4, 2
    avg = sum(d.length for d in backend.docs) / n
    tf = doc.counts["experts"]
    idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
    want = idf * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * doc.length / avg))
    assert backend._score(doc, ["experts"]) == pytest.approx(want)
    assert backend.search("bread yeast", 10)[0].url == "https://offline.invalid/notes/cooking.txt"
    assert backend.search("", 10) == [] and backend.search("xyzzy", 10) == []
    assert backend.fetch("https://example.org/") is None  # not ours: fetched from the web
    with pytest.raises(UserError):
        OfflineBackend(docs_folder / "missing")


def test_brave_api_against_a_fake_server(site: Any) -> None:
    from ossagent.tools.browser import BraveBackend

    seen: list[tuple[str, str | None]] = []

    def answer(h: Any) -> None:
        seen.append((h.path, h.headers.get("x-subscription-token")))
        rows = [{"title": f"T{i}", "url": f"https://b{i}.example.org/", "description": f"<strong>d{i}</strong>"}
                for i in range(5)]
        h.send(200, json.dumps({"web": {"results": rows}}).encode(), "application/json")

    site.route("/res/v1/web/search", answer)
    backend = BraveBackend("key-123", base_url=site.base)
    assert isinstance(backend, SearchBackend)
    results = backend.search("moe routing", 3)
    assert [(r.title, r.snippet) for r in results] == [("T0", "d0"), ("T1", "d1"), ("T2", "d2")]
    path, token = seen[-1]
    assert token == "key-123" and parse_qs(urlsplit(path).query) == {"q": ["moe routing"], "count": ["3"]}
    with pytest.raises(UserError):
        BraveBackend("")
    backend.close()


def test_offline_index_stays_inside_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text("inside words")
    (folder / "sub" / "same.txt").write_text("linked within")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("hostsecret words")
    os.symlink(outside / "secret.txt", folder / "leak.txt")
    os.symlink(outside, folder / "leakdir")
    os.symlink(folder / "sub" / "same.txt", folder / "alias.txt")  # a link that stays inside is fine
    backend = OfflineBackend(folder)
    assert backend.search("hostsecret", 10) == []
    assert sorted(d.url.rsplit("/", 1)[1] for d in backend.docs) == ["alias.txt", "ok.txt", "same.txt"]
    for name in ("leak.txt", "leakdir/secret.txt"):
        with pytest.raises(ToolFailure, match="no such document"):
            backend.fetch(f"https://offline.invalid/{name}")
