"""Citations the model writes (``【3†L10-L15】``) resolved back to the pages they point at."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ossagent.tools.browser.text import PageContents, domain_of

CITATION_RE = re.compile(r"【(?P<cursor>\d+)†(?P<content>[^†】]+)(?:†[^†】]+)?】")
LINES_RE = re.compile(r"^L(?P<start>\d+)(?:-L?(?P<end>\d+))?$")
PARTIAL_CITATION_RE = re.compile(r"【\d*(?:†[^†】]*(?:†[^†】]*)?)?$")


@dataclass(frozen=True)
class Citation:
    """One citation marker in the model's text."""

    cursor: int
    url: str  # the cited page (for a find-results page: the page searched)
    title: str
    lines: tuple[int, int] | None  # (first, last) line, inclusive, when the marker names lines
    span: tuple[int, int]  # where the marker is in the text: text[span[0]:span[1]]
    quote: str = ""  # the cited lines of the page, for display or checking


def _source_page(page: PageContents) -> str:
    """A find-results page cites the page it searched."""
    if page.snippets and "/find?pattern=" in page.url:
        return page.url.rsplit("/find?pattern=", 1)[0]
    return page.url


def resolve(text: str, stack: Sequence[PageContents]) -> list[Citation]:
    """Every well-formed citation in ``text`` whose cursor is a page with a URL."""
    out: list[Citation] = []
    for m in CITATION_RE.finditer(text):
        cursor = int(m.group("cursor"))
        if cursor >= len(stack):
            continue
        page = stack[cursor]
        url = _source_page(page)
        if not url:
            continue  # a search-results page has no URL of its own
        lm = LINES_RE.match(m.group("content").strip())
        lines = None
        quote = ""
        if lm:
            first = int(lm.group("start"))
            last = int(lm.group("end") or first)
            lines = (first, max(first, last))
            quote = "\n".join(page.lines()[lines[0] : lines[1] + 1])
        out.append(Citation(cursor=cursor, url=url, title=page.title, lines=lines, span=m.span(), quote=quote))
    return out


def normalize(text: str, stack: Sequence[PageContents], hide_partial: bool = False) -> tuple[str, list[dict[str, Any]], bool]:
    """Replace resolvable markers with `` ([domain](url)) `` and return OpenAI-style ``url_citation``
    annotations, plus whether ``text`` ends in an unfinished marker (streaming code holds it back)."""
    partial = PARTIAL_CITATION_RE.search(text) is not None
    if hide_partial and partial:
        text = PARTIAL_CITATION_RE.sub("", text)
    pieces: list[str] = []
    annotations: list[dict[str, Any]] = []
    last = 0
    length = 0
    for c in resolve(text, stack):
        before = text[last : c.span[0]]
        pieces.append(before)
        length += len(before)
        domain = domain_of(unquote(c.url)) or c.url
        replacement = f" ([{domain}]({c.url})) "
        annotations.append({"type": "url_citation", "start_index": length, "end_index": length + len(replacement),
                            "title": domain, "url": c.url})
        pieces.append(replacement)
        length += len(replacement)
        last = c.span[1]
    pieces.append(text[last:])
    return "".join(pieces), annotations, partial
