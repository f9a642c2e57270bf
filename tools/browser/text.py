"""HTML to the numbered, link-marked text the model was trained to read.

The conversion follows the gpt-oss reference browser (``page_contents.process_html``) so the text has
the shape the model saw in training:

* page text cannot forge markup: ``【``/``】`` become ``〖``/``〗``, ``◼`` becomes ``◾``, zero-width
  spaces and characters outside the Basic Multilingual Plane are dropped, in the raw HTML and again after
  parsing (so character references like ``&#x3010;`` are caught too), in text, titles, alt text and domains;
  ``†`` inside anchor text becomes ``‡``, so a link's text cannot close or extend its marker;
* links become ``【{id}†{text}】`` (same domain) or ``【{id}†{text}†{domain}】`` (another domain); ids are
  sequential per page and shared by links to the same URL; ``mailto:`` and ``javascript:`` links are
  left as text, ``#fragment`` links become plain text;
* images become ``[Image N: alt]``; ``<math>`` is removed; ``<sup>x</sup>`` and ``<sub>x</sub>``
  become ``^{x}`` and ``_{x}``;
* the rest is converted by html2text (links, images, tables and emphasis ignored, no wrapping, no
  markdown escaping), then blank runs are collapsed.

Library choice: lxml parses (fast, tolerant of broken HTML, the reference's parser) and html2text
renders, because the model was trained on html2text's layout (``#`` headings, ``*`` bullets). trafilatura
is better at picking the main article, but it drops navigation links, which are exactly what the
model follows by id; it is not used for page text.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import html2text
import lxml.etree
import lxml.html

_FORGERY = {"【": "〖", "】": "〗", "◼": "◾", "\u200b": ""}
_FORGERY_RE = re.compile("|".join(map(re.escape, _FORGERY)))
_SMP_RE = re.compile("[\U00010000-\U0010ffff]")
_SUP_RE = re.compile(r"<sup( [^>]*)?>([\w\-]+)</sup>")
_SUB_RE = re.compile(r"<sub( [^>]*)?>([\w\-]+)</sub>")
_TAG_RUN_RE = re.compile(r"(?<=\w)((<[^>]*>)+)(?=\w)")  # tags glued between words: add a space
_ANCHOR_SPACE_RE = re.compile(r"(【\@[^】]+】)(\s+)")
_BLANK_LINE_RE = re.compile(r"^\s+$", flags=re.MULTILINE)
_NEWLINES_RE = re.compile(r"\n(\s*\n)+")
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)

# Link markers as the model writes them and as pages show them (reference patterns).
LINK_RE = re.compile(r"【\d+†(?P<content>[^†】]+)(?:†[^†】]+)?】")
PARTIAL_START_RE = re.compile(r"^[^【】]*】")
PARTIAL_END_RE = re.compile(r"【\d*(?:†(?P<content>[^†】]*)(?:†[^†】]*)?)?$")


@dataclass
class Extract:
    """A snippet of a page: a search result or a ``find`` match, with the line it starts at."""

    url: str
    text: str
    title: str
    line_idx: int | None = None


@dataclass
class PageContents:
    """A page as text: what the model reads, and the link ids it can follow."""

    url: str
    title: str
    text: str
    urls: dict[str, str] = field(default_factory=dict)  # link id -> absolute URL
    snippets: dict[str, Extract] | None = None  # set on search and find result pages
    truncated: bool = False  # the fetch stopped at the byte cap
    _wrapped: tuple[str, list[str]] | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        snippets = None if self.snippets is None else {k: vars(v).copy() for k, v in self.snippets.items()}
        return {"url": self.url, "title": self.title, "text": self.text, "urls": dict(self.urls),
                "snippets": snippets, "truncated": self.truncated}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageContents:
        snippets = data.get("snippets")
        return cls(url=data["url"], title=data["title"], text=data["text"], urls=dict(data.get("urls") or {}),
                   snippets=None if snippets is None else {k: Extract(**v) for k, v in snippets.items()},
                   truncated=bool(data.get("truncated", False)))

    def lines(self) -> list[str]:
        """The text wrapped at 80 columns (computed once per text)."""
        if self._wrapped is None or self._wrapped[0] is not self.text:
            self._wrapped = (self.text, wrap_lines(self.text))
        return self._wrapped[1]


def sanitize(text: str) -> str:
    """Remove what would let page text pass for the tool's own markup."""
    return _FORGERY_RE.sub(lambda m: _FORGERY[m.group(0)], _SMP_RE.sub("", text))


def _sanitize_tree(root: lxml.html.HtmlElement) -> None:
    """Sanitize what parsing decoded: character references in text and in the attributes shown (alt, title)."""
    for el in root.iter():
        if el.text:
            el.text = sanitize(el.text)
        if el.tail:
            el.tail = sanitize(el.tail)
        if isinstance(el.tag, str):
            for attr in ("alt", "title"):
                value = el.get(attr)
                if value:
                    el.set(attr, sanitize(value))


def domain_of(url: str) -> str:
    netloc = urlsplit(url).netloc
    return netloc if netloc or not url else urlsplit("http://" + url).netloc


def _flat_text(node: lxml.html.HtmlElement) -> str:
    return re.sub(r"\s+", " ", " ".join(node.itertext()).replace("\n", " "))


def _replace_all(pairs: list[tuple[lxml.html.HtmlElement, str]]) -> None:
    """Replace each node by a text, its tail kept, merged into the text before it. One pass per parent, each
    text joined once: replacing nodes one at a time re-copied a growing tail each time, so a page of 40,000
    links in one paragraph took a minute."""
    groups: dict[lxml.html.HtmlElement, dict[lxml.html.HtmlElement, str]] = {}
    for node, text in pairs:
        parent = node.getparent()
        if parent is not None:
            groups.setdefault(parent, {})[node] = text
    for parent, texts in groups.items():
        kept: lxml.html.HtmlElement | None = None  # the sibling whose tail collects the text (None: parent.text)
        pieces = [parent.text or ""]
        for child in list(parent):
            new = texts.get(child)
            if new is None:
                _set_run(parent, kept, pieces)
                kept, pieces = child, [child.tail or ""]
            else:
                pieces += (new, child.tail or "")
                parent.remove(child)
        _set_run(parent, kept, pieces)


def _set_run(parent: lxml.html.HtmlElement, kept: lxml.html.HtmlElement | None, pieces: list[str]) -> None:
    if kept is None:
        parent.text = "".join(pieces)
    else:
        kept.tail = "".join(pieces)


def _mark_links(root: lxml.html.HtmlElement, page_url: str) -> dict[str, str]:
    here = domain_of(page_url)
    ids: dict[str, str] = {}
    by_url: dict[str, str] = {}
    replaced: list[tuple[lxml.html.HtmlElement, str]] = []
    for a in list(root.iter("a")):
        href = (a.get("href") or "").strip()
        if not href or href.lower().startswith(("mailto:", "javascript:", "data:")):
            continue
        text = _flat_text(a).replace("†", "‡")
        if not text.strip():  # an image-only link: nothing to show
            continue
        if href.startswith("#"):
            replaced.append((a, text))
            continue
        try:
            target = urljoin(page_url, href)
            domain = domain_of(target)
        except ValueError:
            domain = ""
        if not domain:
            replaced.append((a, text))
            continue
        link_id = by_url.get(target)
        if link_id is None:
            link_id = str(len(ids))
            ids[link_id] = target
            by_url[target] = link_id
        shown = sanitize(domain).replace("†", "‡")
        marker = f"【{link_id}†{text}】" if domain == here else f"【{link_id}†{text}†{shown}】"
        replaced.append((a, marker))
    _replace_all(replaced)
    return ids


def _mark_images(root: lxml.html.HtmlElement) -> None:
    replaced = []
    for n, img in enumerate(list(root.iter("img"))):
        name = img.get("alt") or img.get("title")
        replaced.append((img, f"[Image {n}: {name}]" if name else f"[Image {n}]"))
    _replace_all(replaced)


def _drop(root: lxml.html.HtmlElement, tags: tuple[str, ...]) -> None:
    _replace_all([(node, "") for node in root.iter(*tags)])


def _html2text(html: str) -> str:
    conv = html2text.HTML2Text()
    conv.ignore_links = True
    conv.ignore_images = True
    conv.ignore_tables = True
    conv.ignore_emphasis = True
    conv.body_width = 0
    conv.unicode_snob = True
    # No markdown escaping: the model reads text, not markdown source. html2text escapes through two
    # module-level helpers; swap them for the duration of the call (the reference does the same).
    saved = html2text.utils.escape_md, html2text.utils.escape_md_section
    html2text.utils.escape_md = lambda text: text
    html2text.utils.escape_md_section = lambda text, snob=False, **_: text
    try:
        return conv.handle(html).strip()
    finally:
        html2text.utils.escape_md, html2text.utils.escape_md_section = saved


def html_to_page(html: str, url: str, title: str | None = None, display_url: bool = True,
                 scripted: bool = False) -> PageContents:
    """Convert ``html`` fetched from ``url`` into :class:`PageContents`.

    ``scripted``: the HTML comes from a browser that ran the page's scripts, so ``<noscript>`` content
    was not shown to its reader and is dropped; without scripts it is what a reader sees, and kept.
    """
    html = sanitize(_XML_DECL_RE.sub("", html))
    try:
        root = lxml.html.fromstring(html or "<html></html>")
    except (lxml.etree.ParserError, ValueError):
        root = lxml.html.fromstring("<html></html>")
    _sanitize_tree(root)
    found = root.find(".//title")
    if title:
        final_title = sanitize(title)
    elif found is not None and (found.text or "").strip():
        final_title = re.sub(r"\s+", " ", found.text or "").strip()
    else:
        final_title = domain_of(url) if url else ""
    _drop(root, ("script", "style", "template", "math", "head", *(("noscript",) if scripted else ())))
    urls = _mark_links(root, url)
    _mark_images(root)
    body = lxml.etree.tostring(root, encoding="unicode")
    body = _SUP_RE.sub(r"^{\2}", body)
    body = _SUB_RE.sub(r"_{\2}", body)
    body = _TAG_RUN_RE.sub(r" \1", body)
    text = _html2text(body)
    text = _ANCHOR_SPACE_RE.sub(lambda m: m.group(2) + m.group(1), text)
    text = _BLANK_LINE_RE.sub("", text)
    text = _NEWLINES_RE.sub("\n\n", text)
    prefix = f"\nURL: {url}\n" if display_url else ""
    return PageContents(url=url, title=final_title, text=prefix + text, urls=urls)


def plain_to_page(text: str, url: str, title: str | None = None) -> PageContents:
    """A text/plain (or JSON, markdown) document: sanitized, no links."""
    return PageContents(url=url, title=sanitize(title or domain_of(url)), text=f"\nURL: {url}\n" + sanitize(text))


def wrap_lines(text: str, width: int = 80) -> list[str]:
    """Split into lines of at most ``width`` characters, keeping whitespace and empty lines."""
    out: list[str] = []
    for line in text.split("\n"):
        if not line or (len(line) <= width and "\t" not in line):  # what textwrap would return, faster
            out.append(line)
            continue
        out.extend(textwrap.wrap(line, width=width, replace_whitespace=False, drop_whitespace=False) or [""])
    return out


def strip_links(text: str) -> str:
    """Replace link markers by their text (also markers cut at either end of ``text``)."""
    text = PARTIAL_START_RE.sub("", text)
    text = PARTIAL_END_RE.sub(lambda m: m.group("content") or "", text)
    return LINK_RE.sub(lambda m: m.group("content"), text)
