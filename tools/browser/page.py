"""Showing a page through a token-measured viewport, and ``find`` over a page.

The display is the reference browser's::

    [{cursor}] {title} ({url})
    **viewing lines [{loc} - {end}] of {last}**

    L{loc}: ...

Lines are the page text wrapped at 80 columns. Without ``num_lines`` the viewport holds as many lines as
fit in ``view_tokens`` o200k tokens of the numbered text (the line holding the last token is included).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from ossagent.tools.base import ModelError
from ossagent.tools.browser.text import Extract, PageContents, strip_links

FIND_MAX_RESULTS = 50
FIND_LINES_PER_MATCH = 4


def truncate(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number_lines(lines: list[str], offset: int = 0) -> str:
    return "\n".join(f"L{i + offset}: {line}" for i, line in enumerate(lines))


@lru_cache(maxsize=4)
def _max_token_chars(encoding: Any) -> int:
    return max(len(b) for b in encoding.token_byte_values())


class Viewport:
    """Decides how many lines fit in ``view_tokens`` tokens."""

    def __init__(self, encoding: Any, view_tokens: int = 1024) -> None:
        self.encoding = encoding
        self.view_tokens = view_tokens

    def end_loc(self, lines: list[str], loc: int, num_lines: int = -1) -> int:
        total = len(lines)
        if num_lines > 0:
            return min(loc + num_lines, total)
        text = number_lines(lines[loc:], offset=loc)
        if len(text) <= self.view_tokens:  # at least one character per token: everything fits
            return total
        head = text[: (self.view_tokens + 1) * _max_token_chars(self.encoding)]
        tokens = self.encoding.encode(head, disallowed_special=())
        if len(tokens) <= self.view_tokens:
            return total
        _, offsets = self.encoding.decode_with_offsets(tokens[: self.view_tokens + 1])
        shown = text[: offsets[self.view_tokens]].count("\n") + 1  # the line of the last token, whole
        return min(loc + shown, total)


@dataclass
class View:
    """What one browser call shows: a page on the stack, at ``cursor``, lines ``loc`` to ``end - 1``."""

    cursor: int
    page: PageContents
    loc: int
    end: int
    total_lines: int
    text: str  # exactly what the model sees

    @property
    def url(self) -> str:
        return self.page.url

    @property
    def title(self) -> str:
        return self.page.title

    def lines(self) -> list[str]:
        return self.page.lines()[self.loc : self.end]


def render(page: PageContents, cursor: int, loc: int, num_lines: int, viewport: Viewport) -> View:
    """The display of ``page`` from line ``loc``; a ``loc`` past the end is the model's error."""
    lines = page.lines()
    total = len(lines)
    if loc < 0:
        loc = 0
    if loc >= total:
        raise ModelError(
            f"Invalid location parameter: `{loc}`. Cannot exceed page maximum of {total - 1}.",
            hint=f"Use a `loc` from 0 to {total - 1}.",
        )
    end = viewport.end_loc(lines, loc, num_lines)
    header = page.title
    if page.url:
        header += f" ({truncate(unquote(page.url))})"
    scrollbar = f"viewing lines [{loc} - {end - 1}] of {total - 1}"
    body = number_lines(lines[loc:end], offset=loc)
    text = f"[{cursor}] {header}\n**{scrollbar}**\n\n{body}"
    return View(cursor=cursor, page=page, loc=loc, end=end, total_lines=total, text=text)


def find_in_page(page: PageContents, pattern: str) -> PageContents:
    """A results page: each case-insensitive match with the lines after it, as followable ids."""
    pattern = pattern.lower()
    lines = strip_links("\n".join(page.lines())).split("\n")
    chunks: list[str] = []
    snippets: dict[str, Extract] = {}
    i = 0
    while i < len(lines) and len(chunks) < FIND_MAX_RESULTS:
        if pattern not in lines[i].lower():
            i += 1
            continue
        snippet = "\n".join(lines[i : i + FIND_LINES_PER_MATCH])
        k = len(chunks)
        chunks.append(f"# 【{k}†match at L{i}】\n{snippet}")
        snippets[str(k)] = Extract(url=page.url, text=snippet, title=f"#{k}", line_idx=i)
        i += FIND_LINES_PER_MATCH
    text = "\n\n".join(chunks) if chunks else f"No `find` results for pattern: `{pattern}`"
    return PageContents(
        url=f"{page.url}/find?pattern={quote(pattern)}",
        title=f"Find results for text: `{pattern}` in `{page.title}`",
        text=text,
        urls={k: page.url for k in snippets},
        snippets=snippets,
    )
