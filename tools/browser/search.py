"""Search backends behind one small interface: SearXNG's JSON API, Brave Search, and an offline folder (BM25).

A backend answers ``search(query, topn) -> list[SearchResult]``. A backend may also serve documents itself
(``fetch(url) -> PageContents | None``): the offline backend serves the files it indexed, so an
air-gapped browser never touches the network. The browser turns results into the reference's search page
(a synthetic ``<h1>Search Results</h1><ul><li><a>…`` document run through the same HTML conversion).
"""

from __future__ import annotations

import contextlib
import html
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx

from ossagent.tools.base import ToolFailure, UserError
from ossagent.tools.browser.text import PageContents, html_to_page, plain_to_page, strip_links


@dataclass(frozen=True)
class SearchResult:
    title: str
    url: str
    snippet: str = ""


@runtime_checkable
class SearchBackend(Protocol):
    source: str  # shown to the model as ``sources=…``; "web" for web search

    def search(self, query: str, topn: int) -> list[SearchResult]: ...

    def fetch(self, url: str) -> PageContents | None:
        """The page at ``url`` if this backend serves it itself; None to fetch it from the web."""
        ...

    def close(self) -> None: ...


def results_page(query: str, results: list[SearchResult]) -> PageContents:
    """The search results page the model reads (title = the query, no URL)."""
    items = "".join(
        f"<li><a href='{html.escape(r.url, quote=True)}'>{html.escape(r.title or r.url)}</a> "
        f"{html.escape(r.snippet)}</li>"
        for r in results
    )
    doc = f"<html><body>\n<h1>Search Results</h1>\n<ul>\n{items}\n</ul>\n</body></html>"
    page = html_to_page(doc, url="", title=query, display_url=True)
    if not results:
        page.text += "\nNo results."
    return page


def _search_get(client: httpx.Client, url: str, query: str, params: Mapping[str, str | int],
                headers: Mapping[str, str]) -> httpx.Response:
    """GET a web search API; transport errors and non-200 answers become a ToolFailure for the model."""
    try:
        resp = client.get(url, params=dict(params), headers=dict(headers))
    except httpx.HTTPError as e:
        raise ToolFailure(f"Error during search for `{query}`: {type(e).__name__}: {e}",
                          hint="Try again, or open a known URL directly.") from e
    if resp.status_code != 200:
        raise ToolFailure(f"Error during search for `{query}`: the search service answered "
                          f"HTTP {resp.status_code}.", hint="Try again later.")
    return resp


class SearxngBackend:
    """A SearXNG instance's JSON API (``/search?q=…&format=json``; enable ``json`` in its settings).

    The instance URL comes from configuration and is trusted: it may be on a private network, so it is
    not subject to the browser's URL policy (pages it returns are).
    """

    source = "web"

    def __init__(self, base_url: str, *, timeout_s: float = 15.0, categories: str = "general",
                 language: str | None = None, client: httpx.Client | None = None) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise UserError(f"SearXNG URL must be http(s)://, got {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.categories = categories
        self.language = language
        self._client = client or httpx.Client(trust_env=False, timeout=timeout_s, follow_redirects=False)

    def search(self, query: str, topn: int) -> list[SearchResult]:
        params = {"q": query, "format": "json", "categories": self.categories}
        if self.language:
            params["language"] = self.language
        resp = _search_get(self._client, urljoin(self.base_url, "search"), query, params,
                           {"accept": "application/json"})
        try:
            data = resp.json()
            rows = data["results"]
        except (ValueError, KeyError, TypeError) as e:
            raise ToolFailure(f"Error during search for `{query}`: the search service sent no results "
                              "list (is its JSON format enabled?).") from e
        out: list[SearchResult] = []
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("url"), str):
                out.append(SearchResult(title=str(row.get("title") or ""), url=row["url"],
                                        snippet=str(row.get("content") or "")))
            if len(out) >= topn:
                break
        return out

    def fetch(self, url: str) -> PageContents | None:
        return None

    def close(self) -> None:
        self._client.close()


class BraveBackend:
    """Brave Search's web API (``/res/v1/web/search``; an API key from the caller's configuration)."""

    source = "web"

    def __init__(self, api_key: str, *, base_url: str = "https://api.search.brave.com/", timeout_s: float = 15.0,
                 client: httpx.Client | None = None) -> None:
        if not api_key:
            raise UserError("Brave Search needs an API key")
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise UserError(f"Brave Search URL must be http(s)://, got {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self._headers = {"accept": "application/json", "x-subscription-token": api_key}
        self._client = client or httpx.Client(trust_env=False, timeout=timeout_s, follow_redirects=False)

    def search(self, query: str, topn: int) -> list[SearchResult]:
        resp = _search_get(self._client, urljoin(self.base_url, "res/v1/web/search"), query,
                           {"q": query, "count": min(max(topn, 1), 20)}, self._headers)
        try:
            rows = resp.json().get("web", {}).get("results", [])
        except (ValueError, AttributeError) as e:
            raise ToolFailure(f"Error during search for `{query}`: the search service sent no results.") from e
        out = [SearchResult(title=str(r.get("title") or ""), url=r["url"],
                            snippet=re.sub(r"</?strong>", "", str(r.get("description") or "")))
               for r in rows if isinstance(r, dict) and isinstance(r.get("url"), str)]
        return out[:topn]

    def fetch(self, url: str) -> PageContents | None:
        return None

    def close(self) -> None:
        self._client.close()


_WORD_RE = re.compile(r"\w+", re.UNICODE)
DOC_SUFFIXES = (".html", ".htm", ".txt", ".md", ".rst")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD_RE.findall(text)]


@dataclass
class _Doc:
    path: Path
    url: str
    title: str
    text: str
    length: int
    counts: Counter[str]


class OfflineBackend:
    """BM25 over a local folder of .html/.htm/.txt/.md/.rst files, served under ``base_url``.

    Documents get URLs ``{base_url}{relative path}`` (default host ``offline.invalid``, a name that can
    never resolve), so links between them work and opening them never reaches the network.
    """

    source = "web"

    def __init__(self, folder: str | Path, *, base_url: str = "https://offline.invalid/",
                 k1: float = 1.5, b: float = 0.75) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise UserError(f"offline search folder {str(folder)!r} does not exist")
        self.base_url = base_url.rstrip("/") + "/"
        self.k1, self.b = k1, b
        self.docs: list[_Doc] = []
        self._df: Counter[str] = Counter()
        for path in sorted(self.folder.rglob("*")):  # does not descend into linked folders
            # a link is indexed only when what it points to is inside the folder (fetch checks the same)
            if path.suffix.lower() in DOC_SUFFIXES and path.is_file() and self._inside(path):
                with contextlib.suppress(ToolFailure):  # unreadable: left out of the index
                    self._add(path)
        self._avg = sum(d.length for d in self.docs) / max(1, len(self.docs))

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.folder)

    def _url(self, path: Path) -> str:
        return self.base_url + quote(path.relative_to(self.folder).as_posix())

    def _page(self, path: Path, url: str) -> PageContents:
        try:
            raw = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ToolFailure(f"Error fetching `{url}`: {e.strerror or e}") from e
        if path.suffix.lower() in (".html", ".htm"):
            return html_to_page(raw, url)
        return plain_to_page(raw, url, title=path.stem.replace("_", " ").replace("-", " "))

    def _add(self, path: Path) -> None:
        url = self._url(path)
        page = self._page(path, url)
        text = strip_links(page.text.split("\n", 2)[-1])  # without the "URL:" header
        counts = Counter(_words(page.title + " " + text))
        self.docs.append(_Doc(path, url, page.title, text, sum(counts.values()), counts))
        self._df.update(counts.keys())

    def _score(self, doc: _Doc, terms: list[str]) -> float:
        n = len(self.docs)
        score = 0.0
        for t in terms:
            tf = doc.counts.get(t, 0)
            if not tf:
                continue
            idf = math.log((n - self._df[t] + 0.5) / (self._df[t] + 0.5) + 1.0)
            score += idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * doc.length / self._avg))
        return score

    @staticmethod
    def _snippet(text: str, terms: list[str], width: int = 200) -> str:
        flat = re.sub(r"\s+", " ", text).strip()
        low = flat.lower()
        hits = [low.find(t) for t in terms if low.find(t) >= 0]
        start = max(0, min(hits) - 40) if hits else 0
        if start:  # begin at a word
            space = flat.find(" ", start)
            start = space + 1 if 0 <= space < min(hits) else start
        cut = flat[start : start + width]
        return ("…" if start else "") + cut + ("…" if start + width < len(flat) else "")

    def search(self, query: str, topn: int) -> list[SearchResult]:
        terms = list(dict.fromkeys(_words(query)))
        scored = [(self._score(d, terms), i) for i, d in enumerate(self.docs)]
        ranked = sorted((s, i) for s, i in scored if s > 0)
        ranked.sort(key=lambda si: (-si[0], si[1]))
        return [SearchResult(self.docs[i].title, self.docs[i].url, self._snippet(self.docs[i].text, terms))
                for _, i in ranked[:topn]]

    def fetch(self, url: str) -> PageContents | None:
        if not url.startswith(self.base_url):
            return None
        rel = unquote(urlsplit(url).path)[len(urlsplit(self.base_url).path):]
        path = (self.folder / rel).resolve()
        if not path.is_relative_to(self.folder) or not path.is_file():
            raise ToolFailure(f"Error fetching `{url}`: no such document in the offline collection.",
                              hint="Search again and open one of the results.")
        return self._page(path, url)

    def close(self) -> None:
        pass
