"""The page a live tab shows, as text with its controls marked by ids the model acts on.

A snapshot (:data:`SNAPSHOT_JS`, run in the page) finds every visible, enabled interactive element (links,
buttons, inputs, selects, checkboxes, textareas, contenteditable, elements with a clickable ARIA role or an
``onclick``), gives it an id kept in a per-tab attribute (the same element keeps its id while it lives; ids
are never reused within a tab), and serializes a copy of the document in which hidden subtrees are removed
and each control is replaced by a placeholder word. The copy becomes page text as every page does
(:func:`~ossagent.tools.browser.text.html_to_page`), then each placeholder becomes the control's marker:

* a link to a URL: ``【12†text】`` (``【12†text†domain】`` to another domain), the trained link format;
  ``browser.open`` follows it by the same id;
* any other control: ``【#12 role "label" …】``, e.g. ``【#3 textbox "User name" = "alice"】``,
  ``【#5 checkbox "Remember me" checked】``, ``【#6 select "Country" = "France"; options: "France", "Spain"】``.

Page text cannot forge a marker: ``【`` in page text becomes ``〖`` (:func:`~ossagent.tools.browser.text.sanitize`)
and the placeholder word carries a random per-snapshot nonce. Password values are never shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ossagent.tools.browser.text import PageContents, domain_of, html_to_page, sanitize

MAX_LABEL = 80
MAX_VALUE = 200
MAX_OPTIONS = 20

# Run as page.evaluate(SNAPSHOT_JS, [attribute, next_id, token_prefix, max_chars]).
SNAPSHOT_JS = r"""
([attr, nextId, token, maxChars]) => {
  const SEL = 'a[href], button, input, select, textarea, [contenteditable=""], [contenteditable="true"], '
    + '[role=button], [role=link], [role=checkbox], [role=radio], [role=tab], [role=menuitem], [role=switch], '
    + '[role=option], [onclick]';
  const clip = (s, n) => { s = (s || '').replace(/\s+/g, ' ').trim(); return s.length > n ? s.slice(0, n - 1) + '…' : s; };
  const shown = el => el.checkVisibility({checkVisibilityCSS: true});
  const rendered = el => el.checkVisibility();
  const chosen = new Set();
  const elements = [];
  const labelOf = el => {
    const aria = el.getAttribute('aria-label');
    if (aria) return aria;
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const t = by.split(/\s+/).map(i => document.getElementById(i)).filter(Boolean).map(n => n.innerText).join(' ');
      if (t.trim()) return t;
    }
    if (el.labels && el.labels.length) {
      const t = Array.from(el.labels).map(l => l.innerText).join(' ');
      if (t.trim()) return t;
    }
    const tag = el.tagName.toLowerCase();
    if (tag === 'input' && ['submit', 'button', 'reset'].includes(el.type)) return el.value || el.type;
    if (tag === 'input' || tag === 'textarea' || tag === 'select') {
      return el.getAttribute('placeholder') || el.getAttribute('title') || el.getAttribute('name') || '';
    }
    const text = el.innerText;
    if (text && text.trim()) return text;
    const img = el.querySelector('img[alt]');
    return (img && img.getAttribute('alt')) || el.getAttribute('title') || el.getAttribute('value') || '';
  };
  const describe = (el, id) => {
    const tag = el.tagName.toLowerCase();
    const type = tag === 'input' ? (el.getAttribute('type') || 'text').toLowerCase() : '';
    const d = {id, tag, type, role: el.getAttribute('role') || '', label: clip(labelOf(el), 200), value: '',
               checked: null, options: [], href: '', multiple: false, submits: false, download: false,
               filled: false};
    if (tag === 'a') { d.href = el.href || ''; d.download = el.hasAttribute('download'); }
    if (tag === 'input' || tag === 'textarea') {
      if (type === 'checkbox' || type === 'radio') d.checked = el.checked;
      else if (type === 'password') d.filled = el.value.length > 0;
      else if (type === 'file') d.value = Array.from(el.files || []).map(f => f.name).join(', ');
      else if (!['submit', 'button', 'reset', 'image'].includes(type)) d.value = el.value;
    }
    if (tag === 'select') {
      d.multiple = el.multiple;
      d.value = Array.from(el.selectedOptions).map(o => clip(o.label || o.text, 200)).join(', ');
      d.options = Array.from(el.options).filter(o => !o.disabled).map(o => clip(o.label || o.text, 200));
    }
    if (el.isContentEditable && tag !== 'input' && tag !== 'textarea') d.value = el.innerText;
    if (d.role === 'checkbox' || d.role === 'switch' || d.role === 'radio') {
      d.checked = el.getAttribute('aria-checked') === 'true';
    }
    const form = el.form || null;
    if (form && ((tag === 'button' && (el.getAttribute('type') || 'submit').toLowerCase() === 'submit')
                 || (tag === 'input' && (type === 'submit' || type === 'image')))) d.submits = true;
    return d;
  };
  for (const el of document.querySelectorAll(SEL)) {
    const tag = el.tagName.toLowerCase();
    if (tag === 'input' && (el.getAttribute('type') || '').toLowerCase() === 'hidden') continue;
    if (el.matches(':disabled') || el.getAttribute('aria-disabled') === 'true' || !shown(el)) continue;
    let up = el.parentElement, inside = false;
    while (up) { if (chosen.has(up)) { inside = true; break; } up = up.parentElement; }
    if (inside) continue;  // a control inside another: the outer one is offered
    let id = el.getAttribute(attr);
    if (id === null || !/^\d+$/.test(id)) { id = String(nextId++); el.setAttribute(attr, id); }
    chosen.add(el);
    elements.push(describe(el, Number(id)));
  }
  const copy = document.documentElement.cloneNode(true);
  const walk = (live, dup) => {
    const a = live.children, b = Array.from(dup.children);
    for (let i = 0; i < a.length && i < b.length; i++) {
      if (chosen.has(a[i])) {
        const pad = a[i].tagName === 'A' ? '' : ' ';  // a link keeps the spacing of the text around it
        b[i].replaceWith(document.createTextNode(pad + token + a[i].getAttribute(attr) + 'z' + pad));
      } else if (a[i].tagName !== 'HEAD' && a[i].tagName !== 'BODY' && !rendered(a[i])
                 && getComputedStyle(a[i]).display !== 'contents') {
        b[i].remove();
      } else {
        if (a[i].tagName === 'A') b[i].removeAttribute('href');  // not offered (disabled): plain text
        walk(a[i], b[i]);
      }
    }
  };
  walk(document.documentElement, copy);
  return {html: copy.outerHTML.slice(0, maxChars), title: document.title, url: location.href, elements, nextId};
}
"""


@dataclass
class Element:
    """One control of a snapshot, as the page described it."""

    id: int
    tag: str
    type: str = ""
    role: str = ""
    label: str = ""
    value: str = ""
    checked: bool | None = None
    options: list[str] = field(default_factory=list)
    href: str = ""
    multiple: bool = False
    submits: bool = False  # clicking it submits its form
    download: bool = False  # a link with the download attribute
    filled: bool = False  # a password field that holds something

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Element:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def kind(self) -> str:
        """The role shown to the model: link, button, textbox, password, checkbox, radio, select, ..."""
        if self.tag == "input":
            if self.type in ("submit", "button", "reset", "image"):
                return "button"
            if self.type in ("checkbox", "radio", "password", "file"):
                return self.type
            return "slider" if self.type == "range" else "textbox"
        if self.role in ("button", "link", "checkbox", "radio", "tab", "menuitem", "switch", "option"):
            return self.role
        if self.tag in ("a", "button", "select", "textarea"):
            return {"a": "link"}.get(self.tag, self.tag)
        return "editable" if self.value or self.tag not in ("div", "span", "li", "td", "p") else "button"

    @property
    def typable(self) -> bool:
        return self.kind in ("textbox", "password", "textarea", "editable")


def _quote(text: str, limit: int) -> str:
    text = sanitize(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def marker(el: Element, page_url: str) -> str:
    """The text that stands for ``el`` in the page."""
    kind = el.kind
    label = sanitize(el.label).replace("†", "‡")
    if kind == "link" and el.href.startswith(("http://", "https://")) and not el.download:
        text = (label[:MAX_LABEL] or el.href[:MAX_LABEL]).replace("】", "〗")
        domain = domain_of(el.href)
        return f"【{el.id}†{text}】" if domain == domain_of(page_url) else f"【{el.id}†{text}†{domain}】"
    parts = [f"【#{el.id} {kind}", _quote(el.label, MAX_LABEL)]
    if kind in ("checkbox", "radio", "switch"):
        parts.append("checked" if el.checked else "not checked")
    elif kind == "password":
        parts.append("(filled)" if el.filled else "(empty)")
    elif el.value:
        parts.append("= " + _quote(el.value, MAX_VALUE))
    if el.options:
        shown = ", ".join(_quote(o, MAX_LABEL) for o in el.options[:MAX_OPTIONS])
        more = f", … {len(el.options) - MAX_OPTIONS} more" if len(el.options) > MAX_OPTIONS else ""
        parts[-1] += f"; options: {shown}{more}"
    if el.download:
        parts.append("(download)")
    return " ".join(parts) + "】"


def snapshot_page(snap: dict[str, Any], token: str) -> tuple[PageContents, dict[int, Element]]:
    """Page text and controls from a :data:`SNAPSHOT_JS` result whose placeholders start with ``token``."""
    url = str(snap.get("url") or "")
    elements = {e.id: e for e in (Element.from_dict(d) for d in snap.get("elements") or [])}
    page = html_to_page(str(snap.get("html") or ""), url, title=str(snap.get("title") or "") or None, scripted=True)
    urls: dict[str, str] = {}

    def replace(m: re.Match[str]) -> str:
        el = elements.get(int(m.group(1)))
        if el is None:
            return ""
        if el.kind == "link" and el.href.startswith(("http://", "https://")) and not el.download:
            urls[str(el.id)] = el.href
        return marker(el, url)

    page.text = re.sub(re.escape(token) + r"(\d+)z", replace, page.text)
    page.urls = urls
    return page, elements
