"""Page actions: what a person does on a page (click, type, select, check, upload, scroll, back, wait,
screenshot), for Python callers and, through :class:`~ossagent.tools.browser.action_tool.PageTool`, the model.

Each action runs in one live Chromium tab (:class:`~ossagent.tools.browser.live.LiveTab`) and pushes the page
as it is afterwards onto the browser's stack, like ``open`` does: it gets a cursor, numbered lines, and can be
cited. Controls are marked ``【#12 button "Sign in"】`` and links ``【3†About】`` (:mod:`.elements`); actions take
those ids.

Safety rules (enforced here and in the live tab, whoever calls):

* every navigation and request an action causes goes through the URL policy after DNS, hop by hop; a refused
  navigation leaves the page as it was and says why;
* typing into a password field is refused unless ``allow_passwords``;
* files are uploaded from the workspace only, and downloads and screenshots are written into it
  (``downloads/``, ``screenshots/``); without a workspace there are none. Sandboxed code shares the workspace, so
  every file is read and written through :class:`~ossagent.tools.confined.Workspace`, which never follows a
  symbolic link out of it nor reads a file with other hard links; a page's bytes are never written elsewhere;
* side effects can be held: :meth:`Actions.side_effect` says before a call whether it submits a form,
  downloads or uploads, and ``approve`` is asked at the moment any request other than a GET (a form
  submission, a script's POST) or a download would happen; refused, it does not happen.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ossagent.tools.base import ModelError, ToolFailure, UserError
from ossagent.tools.browser.action_config import ActionConfig, SideEffect
from ossagent.tools.browser.chromium import ChromiumRenderer
from ossagent.tools.browser.elements import Element, snapshot_page
from ossagent.tools.browser.fetch import Response
from ossagent.tools.browser.live import LiveTab, Outcome
from ossagent.tools.browser.page import View
from ossagent.tools.browser.record import Recorder, Replayer
from ossagent.tools.browser.text import PageContents, sanitize
from ossagent.tools.confined import Workspace, explain


class PageHost(Protocol):
    """What the actions need of their browser (:class:`~ossagent.tools.browser.browser.Browser`): its URL
    policy, its page stack and its Chromium."""

    config: Any  # a BrowserConfig: .policy checks every URL

    def _push(self, page: PageContents, loc: int = 0, num_lines: int = -1) -> View: ...

    def chromium(self) -> ChromiumRenderer: ...

DIRECTIONS = ("down", "up")
RECORD_BYTES = 1_000_000  # downloads up to this size are kept in a recording (a replay writes them again)
UPLOAD_BYTES = 50_000_000  # the largest file an upload attaches
MAX_NAMES = 1000  # names tried for a download before giving up (report.csv, report-1.csv, ...)
_DOWNLOAD_PATH = re.compile(r"downloads/[A-Za-z0-9_-][A-Za-z0-9._-]{0,120}")


@dataclass
class ActionResult:
    """What an action shows: what happened (``events``, one line each), then the page after it."""

    view: View
    events: list[str]
    files: list[str]  # workspace-relative paths written: downloads, a screenshot

    @property
    def text(self) -> str:
        """Exactly what the model sees."""
        return "\n".join(self.events) + "\n\n" + self.view.text if self.events else self.view.text

    @property
    def cursor(self) -> int:
        return self.view.cursor

    @property
    def url(self) -> str:
        return self.view.url


def ref(el: Element) -> str:
    """A short mention of a control: ``【#7 button "Sign in"】`` or ``【3†About】``."""
    label = sanitize(el.label)[:80]
    if el.kind == "link" and el.href.startswith(("http://", "https://")) and not el.download:
        return f"【{el.id}†{label.replace('†', '‡') or el.href[:80]}】"
    return f"【#{el.id} {el.kind} {json.dumps(label, ensure_ascii=False)}】"


def _quote(text: str, limit: int = 200) -> str:
    text = sanitize(text)
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def _filename(resp: Response) -> str:
    m = re.search(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)", resp.header("content-disposition"), re.IGNORECASE)
    name = unquote(m.group(1)) if m else unquote(urlsplit(resp.url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).lstrip(".")
    return name[:100] or "download"


class Actions:
    """The actions of one browser (one conversation). Thread-safe: one action at a time."""

    def __init__(self, browser: PageHost, config: ActionConfig) -> None:
        self.browser = browser
        self.config = config
        self._root = Path(config.workspace) if config.workspace is not None else None
        self._workspace: Workspace | None = None  # opened at its first use
        self._ws_lock = threading.Lock()  # the Chromium thread saves downloads while an action holds _lock
        self.elements: dict[int, Element] = {}  # the controls of the latest page the tab showed
        self.last: View | None = None  # the latest page an action showed
        self._tab: LiveTab | None = None
        self._lock = threading.RLock()
        self._shots = 0
        self._recorder = Recorder(self._files(), config.record) if config.record else None
        self._replayer = Replayer(self._files(), config.replay) if config.replay else None

    # ----- the actions -----

    def goto(self, url: str) -> ActionResult:
        """Load ``url`` in the tab (the URL policy applies as for ``open``)."""
        if not isinstance(url, str) or not url.strip():
            raise ModelError("`url` must be a non-empty string.")
        self.browser.config.policy.check_url(url.strip())
        return self._act("goto", None, {"url": url.strip()})

    def click(self, id: int) -> ActionResult:
        el = self._element(id)
        if el.kind == "file":
            raise ModelError(f"Element {id} is a file field.", hint="Use upload with a file in the workspace.")
        return self._act("click", id, {})

    def type(self, id: int, text: str, submit: bool = False) -> ActionResult:
        """Replace the text of field ``id`` with ``text``; ``submit``: then press Enter."""
        el = self._element(id)
        if not isinstance(text, str):
            raise ModelError("`text` must be a string.")
        if not el.typable:
            raise ModelError(f"Element {id} is a {el.kind}, not a text field.",
                             hint=self._use_instead(el))
        if el.kind == "password" and not self.config.allow_passwords:
            raise ModelError(f"Element {id} is a password field: typing passwords is not allowed here.",
                             hint="Ask the user to sign in, or to allow passwords in the browser's settings.")
        return self._act("type", id, {"text": text, "submit": bool(submit)})

    def select(self, id: int, option: str) -> ActionResult:
        el = self._element(id)
        if el.kind != "select":
            raise ModelError(f"Element {id} is a {el.kind}, not a select.", hint=self._use_instead(el))
        if not isinstance(option, str) or option not in el.options:
            shown = ", ".join(_quote(o) for o in el.options[:20])
            raise ModelError(f"{_quote(str(option))} is not an option of element {id}.",
                             hint=f"Its options are: {shown}.")
        return self._act("select", id, {"option": option})

    def check(self, id: int, on: bool = True) -> ActionResult:
        el = self._element(id)
        if el.kind not in ("checkbox", "radio", "switch"):
            raise ModelError(f"Element {id} is a {el.kind}, not a checkbox.", hint=self._use_instead(el))
        if el.kind == "radio" and not on:
            raise ModelError("A radio button is unchecked by checking another one of its group.")
        return self._act("check", id, {"on": bool(on)})

    def upload(self, id: int, path: str) -> ActionResult:
        """Attach the workspace file ``path`` to file field ``id``."""
        el = self._element(id)
        if el.kind != "file":
            raise ModelError(f"Element {id} is a {el.kind}, not a file field.", hint=self._use_instead(el))
        if self._root is None:
            raise ModelError("Uploads are not available: this browser has no workspace.")
        if not isinstance(path, str) or not path:
            raise ModelError("`path` must be a file path relative to the workspace.")
        try:  # read now, through the workspace: the tab gets the bytes, never a path to open later
            data, size = self._files().read_bytes(path, UPLOAD_BYTES + 1)
        except OSError as e:
            raise explain(e, path) from e
        if size > UPLOAD_BYTES:
            raise ModelError(f"`{path}` has {size:,} bytes: files of at most {UPLOAD_BYTES:,} bytes can be uploaded.")
        name = PurePosixPath(path).name
        file = {"name": name, "mimeType": mimetypes.guess_type(name)[0] or "application/octet-stream", "buffer": data}
        return self._act("upload", id, {"path": path}, {"file": file})

    def scroll(self, direction: str = "down") -> ActionResult:
        """Scroll the page (the tab, which may load more) and move the view by a screenful of lines."""
        if direction not in DIRECTIONS:
            raise ModelError(f"`direction` must be \"down\" or \"up\", not {json.dumps(direction)}.")
        self._need_page()
        return self._act("scroll", None, {"direction": direction})

    def back(self) -> ActionResult:
        self._need_page()
        return self._act("back", None, {})

    def wait_for(self, text: str, timeout: float = 10.0) -> ActionResult:
        """Wait until ``text`` shows on the page, at most ``timeout`` seconds."""
        if not isinstance(text, str) or not text:
            raise ModelError("`text` must be a non-empty string.")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= self.config.max_wait_s:
            raise ModelError(f"`timeout` must be a number of seconds from 0 to {self.config.max_wait_s:g}.")
        self._need_page()
        return self._act("wait_for", None, {"text": text, "timeout": float(timeout)}, extra_s=float(timeout))

    def screenshot(self) -> ActionResult:
        """Save a PNG of the tab into the workspace (``screenshots/``); the result names the file."""
        if self._root is None:
            raise ModelError("Screenshots are not available: this browser has no workspace.")
        self._need_page()
        self._shots += 1
        rel = f"screenshots/shot-{self._shots}.png"
        return self._act("screenshot", None, {"path": rel}, {"save": lambda png: self._save(rel, png)})

    # ----- pages read with search and open, in a recording -----

    @property
    def replaying(self) -> bool:
        return self._replayer is not None

    def replayed_page(self, key: str) -> PageContents:
        assert self._replayer is not None
        return PageContents.from_dict(self._replayer.page(key))

    def record_page(self, key: str, page: PageContents) -> None:
        if self._recorder is not None:
            self._recorder.add_page(key, page.to_dict())

    # ----- what approvals use -----

    def side_effect(self, action: str, args: dict[str, Any]) -> SideEffect | None:
        """The effect outside the page that ``action(**args)`` is known to have before it runs, or None.

        Known beforehand: a click on a form's submit control or on a download link, typing with ``submit``,
        an upload. Anything else a page does (a script's POST, a download found only in the response) is put
        to ``approve`` when it happens.
        """
        el = self.elements.get(args.get("id", -1)) if isinstance(args.get("id"), int) else None
        if action == "type" and args.get("submit") and el is not None:
            return SideEffect("submit", f"type into {ref(el)} and press Enter, which submits its form")
        if action == "click" and el is not None and el.submits:
            return SideEffect("submit", f"click {ref(el)}, which submits its form")
        if action == "click" and el is not None and el.download:
            return SideEffect("download", f"click {ref(el)}, which downloads a file", el.href)
        if action == "upload" and el is not None:
            return SideEffect("upload", f"attach the workspace file {args.get('path')} to {ref(el)}")
        return None

    # ----- running an action -----

    def _act(self, action: str, target: int | None, args: dict[str, Any], tab_args: dict[str, Any] | None = None,
             extra_s: float = 0.0) -> ActionResult:
        recorded = {"id": target, **args} if target is not None else dict(args)
        with self._lock:
            before = self.elements.get(target) if target is not None else None
            if self._replayer is not None:
                outcome = self._replayer.next(action, recorded)
                self._replay_files(outcome)
            else:
                outcome = self._live().run(action, target, extra_s=extra_s, **(tab_args or args))
                if self._recorder is not None:
                    self._recorder.add(action, recorded, outcome)
            return self._show(action, before, args, outcome)

    def _show(self, action: str, el: Element | None, args: dict[str, Any], outcome: Outcome) -> ActionResult:
        view: View | None = None
        if "snapshot" in outcome:
            page, self.elements = snapshot_page(outcome["snapshot"], outcome["token"])
            view = self.last = self.browser._push(page, self._loc(action, args, page))
        err = outcome.get("error")
        if err:
            text = err["message"] + (f"\n{err['hint']}" if err.get("hint") else "")
            text += f"\n\n{view.text}" if view is not None else ""
            raise (ModelError if err["fault"] == "model" else ToolFailure)(text)
        if view is None:
            raise ToolFailure("The tab shows no page.", hint="Load one with page.goto.")
        events = [e for e in outcome["events"] if not (action == "goto" and e == {"kind": "navigated", "url": args["url"]})]
        lines = [line for line in (_did(action, el, args, view), *map(_event, events)) if line]
        files = [e["path"] for e in outcome["events"] if e.get("path")] + (
            [args["path"]] if action == "screenshot" else [])
        return ActionResult(view, lines, files)

    def _loc(self, action: str, args: dict[str, Any], page: PageContents) -> int:
        """Where the view of ``page`` starts: where it was on the same page (scroll: a view further), else 0."""
        last = self.last
        if last is None or last.url != page.url:
            return 0
        total = len(page.lines())
        if action != "scroll":
            return min(last.loc, total - 1)
        if args["direction"] == "down":
            return last.end if last.end < total else last.loc  # at the end already: the same view
        return max(0, last.loc - (last.end - last.loc))

    def _live(self) -> LiveTab:
        if self._tab is None:
            try:
                renderer = self.browser.chromium()
            except UserError as e:
                raise ToolFailure(f"Page actions need Chromium, which is not usable here: {e}",
                                  hint="Use browser.open to read pages instead.") from e
            self._tab = LiveTab(renderer, self.config, approve=self._approve_request,
                                on_download=self._save_download)
        return self._tab

    def _approve_request(self, method: str, url: str, kind: str) -> bool:
        if self.config.approve is None:
            return True
        what = "submit" if kind == "document" else "request"
        return self.config.approve(SideEffect(what, f"{method} {url}", url))

    def _save_download(self, resp: Response) -> dict[str, Any]:
        """Runs on the Chromium thread when the page downloads something: into ``downloads/``, or refused."""
        event: dict[str, Any] = {"kind": "download", "url": resp.url}
        if self._root is None:
            return {**event, "refused": "this browser has no workspace to save files in"}
        if self.config.approve is not None and not self.config.approve(
                SideEffect("download", f"download {resp.url}", resp.url)):
            return {**event, "refused": "the approval policy held it"}
        try:
            path = self._save(self._free_name(_filename(resp)), resp.body)
        except (ModelError, UserError) as e:  # UserError: the workspace folder itself cannot be opened
            return {**event, "failed": " ".join(filter(None, (str(e.args[0]), getattr(e, "hint", None))))}
        event.update(path=path, bytes=len(resp.body), truncated=resp.truncated)
        if self._recorder is not None and len(resp.body) <= RECORD_BYTES:
            event["data"] = base64.b64encode(resp.body).decode("ascii")
        return event

    def _free_name(self, name: str) -> str:
        """``downloads/name``, or ``downloads/stem-N.ext`` for the first N not taken (through the workspace)."""
        stem, dot, ext = name.partition(".")
        for n in range(MAX_NAMES):
            rel = f"downloads/{stem}-{n}{dot}{ext}" if n else f"downloads/{name}"
            try:
                if not self._files().exists(rel):
                    return rel
            except OSError as e:
                raise _cannot_save(e, rel) from e
        raise ModelError(f"`downloads/` already has {MAX_NAMES:,} files named like {name}.",
                         hint="Remove or rename some of them (for example with the python tool), then try again.")

    def _save(self, rel: str, data: bytes) -> str:
        """Write ``data`` to the workspace file ``rel`` (replacing it, never through a symbolic link)."""
        try:
            self._files().write_atomic(rel, data)
        except OSError as e:
            raise _cannot_save(e, rel) from e
        return rel

    def _replay_files(self, outcome: Outcome) -> None:
        for e in outcome.get("events", []):
            if e.get("kind") == "download" and "data" in e and self._root is not None:
                path = e.get("path")
                if not isinstance(path, str) or not _DOWNLOAD_PATH.fullmatch(path):
                    raise ToolFailure(f"The recording names the download file {json.dumps(path)}, which is not a "
                                      "file in downloads/.", hint="Record the session again.")
                try:
                    data = base64.b64decode(e["data"], validate=True)
                except (TypeError, ValueError) as err:
                    raise ToolFailure(f"The recording has a broken download for {path}.",
                                      hint="Record the session again.") from err
                self._save(path, data)

    def _files(self) -> Workspace:
        """The workspace, opened at its first use (reads and writes go through it, confined by the kernel)."""
        assert self._root is not None
        with self._ws_lock:
            if self._workspace is None:
                self._root.mkdir(parents=True, exist_ok=True)  # the configured folder itself (as before)
                self._workspace = Workspace(self._root)
            return self._workspace

    def _element(self, id: Any) -> Element:
        if isinstance(id, bool) or not isinstance(id, int):
            raise ModelError(f"`id` must be an integer, not `{json.dumps(id)}`.")
        self._need_page()
        el = self.elements.get(id)
        if el is None:
            raise ModelError(f"There is no element {id} on the current page.",
                             hint="Use an id shown in the latest page, as 【#12 …】 for controls or 【12†…】 for links.")
        return el

    def _need_page(self) -> None:
        if self.last is None:
            raise ModelError("No page is loaded in the tab.", hint="Load one with page.goto.")

    @staticmethod
    def _use_instead(el: Element) -> str:
        use = {"select": "select", "checkbox": "check", "radio": "check", "switch": "check", "file": "upload"}
        return f"Use {use.get(el.kind, 'click')} for {ref(el)}."

    def close(self) -> None:
        if self._tab is not None:
            self._tab.close()
            self._tab = None
        if self._recorder is not None:
            self._recorder.close()
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None


def _cannot_save(exc: OSError, rel: str) -> ModelError:
    """Why ``rel`` could not be written into the workspace, and how the model can clear the way."""
    why = str(explain(exc, rel).args[0])
    return ModelError(f"Could not write {rel} into the workspace: {why}",
                      hint=f"Remove or rename what is in the way ({rel.split('/')[0]}/ or {rel}: a symbolic link, "
                           "or a file where a folder belongs), for example with the python tool, then try again.")


def _did(action: str, el: Element | None, args: dict[str, Any], view: View) -> str:
    """The first line of a result: what the action did."""
    target = ref(el) if el is not None else ""
    if action == "click":
        return f"Clicked {target}."
    if action == "type":
        shown = f"{len(args['text'])} characters" if el is not None and el.kind == "password" else _quote(args["text"])
        return f"Typed {shown} into {target}" + (" and pressed Enter." if args.get("submit") else ".")
    if action == "select":
        return f"Selected {_quote(args['option'])} in {target}."
    if action == "check":
        return f"{'Checked' if args['on'] else 'Unchecked'} {target}."
    if action == "upload":
        return f"Attached the workspace file {args['path']} to {target}."
    if action == "scroll":
        edge = (view.loc > 0 and view.end >= view.total_lines) if args["direction"] == "down" else view.loc == 0
        return f"Scrolled {args['direction']}." + (f" This is the {'end' if args['direction'] == 'down' else 'top'} "
                                                   "of the page." if edge else "")
    if action == "back":
        return "Went back."
    if action == "screenshot":
        return f"Saved a screenshot of the tab to {args['path']} in the workspace."
    return ""


def _event(e: dict[str, Any]) -> str:
    """One line for something that happened during an action."""
    kind = e["kind"]
    if kind == "navigated":
        return f"The page navigated to {e['url']}."
    if kind == "refused":
        return f"A navigation was refused and the page was left as it was: {e['message']}"
    if kind == "held":
        return f"The {e['method']} request to {e['url']} was held by the approval policy and not sent."
    if kind == "dialog":
        return (f"The page showed a {e['type']} dialog: {_quote(e['message'])}; it was "
                f"{'accepted' if e['accepted'] else 'dismissed'}.")
    if kind == "download":
        if "refused" in e:
            return f"The download of {e['url']} was refused: {e['refused']}."
        if "failed" in e:
            return f"The download of {e['url']} could not be saved: {e['failed']}"
        cut = " (cut at the download limit)" if e.get("truncated") else ""
        return f"Downloaded {e['url']} to {e['path']} in the workspace ({e['bytes']:,} bytes{cut})."
    if kind == "popup":
        return "The page opened a new window; it was closed (one tab only)."
    if kind == "waited":
        if e["found"]:
            return f"{_quote(e['text'])} is on the page (waited {e['seconds']:g} s)."
        return f"{_quote(e['text'])} did not appear within {e['seconds']:g} s."
    return ""
