"""Page actions on the real Debian Chromium against the loopback site: one browser (one tab) for the module."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.base import ModelError, ToolFailure
from ossagent.tools.browser import ActionConfig, Browser, BrowserConfig, PageTool, SideEffect, UrlPolicy
from ossagent.tools.browser.chromium import default_executable

pytestmark = pytest.mark.skipif(default_executable() is None, reason="Chromium is not installed")
LOOPBACK = UrlPolicy(allow_networks=("127.0.0.1/32",))

LOGIN = """<html><head><title>Sign in</title></head><body><h1>Sign in</h1>
<form method="post" action="/login"><label>User name <input name="user"></label>
<label>Password <input type="password" name="pw"></label>
<button>Sign in</button></form>
<div style="display:none"><button>Hidden button</button></div><button disabled>Disabled button</button>
</body></html>"""

ORDER = """<html><head><title>Order</title></head><body><form action="/ordered">
<select name="size" aria-label="Size"><option>Small</option><option>Large</option></select>
<label><input type="checkbox" name="gift"> Gift wrap</label>
<input type="submit" value="Order"></form>
<button onclick="document.getElementById('out').textContent = 'Counter: ' + (++window.n || (window.n = 1))">
Count</button><p id="out">Counter: 0</p>
<textarea aria-label="Note"></textarea>
<button onclick="window.open('/third.html')">Pop up</button>
<button onclick="fetch('/api', {method: 'POST', body: 'x=1'}).then(r => r.text()).then(t => out.textContent = t)">
Save</button>
<a href="/third.html" target="_blank">the third page</a>
<a href="/report.csv">report</a> <a href="/notes.txt" download>notes</a>
<button onclick="document.getElementById('out').textContent = confirm('Really delete?') ? 'Deleted' : 'Kept'">
Delete</button>
<form method="post" action="/leak"><input name="q" aria-label="Query"><button>Send</button></form>
<form method="post" action="/upload" enctype="multipart/form-data"><input type="file" name="f" aria-label="File">
<button>Upload</button></form>
</body></html>"""


# The button goes away 0.3 s after it is listed (the snapshot marks it with an attribute): between listing and click.
FLEETING = """<html><head><title>Fleeting</title></head><body><p>Be quick.</p>
<p id="fleeting"><button onclick="1">Soon gone</button></p><button>Stays</button><script>
new MutationObserver(() => setTimeout(() => document.getElementById('fleeting')?.remove(), 300))
  .observe(document.getElementById('fleeting'), {attributes: true, subtree: true});
</script></body></html>"""


def _welcome(h: Any) -> None:
    f = h.form()
    h.send(303, b"", headers={"location": f"/welcome?user={f.get('user', '')}"})


def _upload(h: Any) -> None:
    body = h.body
    h.send(200, b"<html><head><title>Uploaded</title></head><body><p>Got "
           + (b"the secret file" if b"workspace secret" in body else b"something else") + b"</p></body></html>")


@pytest.fixture(scope="module")
def app(site: Any) -> Any:
    site.page("/login.html", LOGIN)
    site.route("/login", _welcome)
    site.route("/welcome", lambda h: h.send(200, (
        "<html><head><title>Welcome</title></head><body><p>Welcome back, " + h.form()["user"]
        + ".</p><p>You have 3 new messages.</p></body></html>").encode()))
    site.page("/order.html", ORDER)
    site.page("/fleeting.html", FLEETING)
    site.page("/api", "saved by the script", "text/plain")
    site.route("/ordered", lambda h: h.send(200, (
        "<html><head><title>Ordered</title></head><body><p>Size: " + h.form()["size"] + ", gift: "
        + h.form().get("gift", "no") + "</p></body></html>").encode()))
    site.page("/report.csv", "a,b\n1,2\n", "text/csv", headers={"content-disposition": 'attachment; filename="report.csv"'})
    site.page("/notes.txt", "some notes\n", "text/plain")
    site.page("/leak", b"", headers={"location": "http://10.9.8.7/steal"}, status=302)
    site.route("/upload", _upload)
    return site


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("actions-workspace")


@pytest.fixture(scope="module")
def b(app: Any, enc: Any, workspace: Path) -> Iterator[Browser]:
    config = BrowserConfig(policy=LOOPBACK, render="never", actions=ActionConfig(workspace=workspace))
    with Browser(config=config, encoding=enc) as browser:
        yield browser


def _id(browser: Browser, label: str) -> int:
    found = [e.id for e in browser.actions.elements.values() if e.label == label]
    assert found, (label, [e.label for e in browser.actions.elements.values()])
    return found[0]


def test_login_form(app: Any, b: Browser) -> None:
    shown = b.goto(app.base + "/login.html")
    assert "Hidden button" not in shown.text and shown.text.endswith(" Disabled button")  # neither is offered
    user, pw, sign_in = _id(b, "User name"), _id(b, "Password"), _id(b, "Sign in")
    with pytest.raises(ModelError, match="password field"):
        b.type(pw, "hunter2")
    b.type(user, "alice")
    b.config.actions.allow_passwords = True
    try:
        typed = b.type(pw, "hunter2")
    finally:
        b.config.actions.allow_passwords = False
    assert typed.events == [f'Typed 7 characters into 【#{pw} password "Password"】.'] and "hunter2" not in typed.text
    assert b.actions.elements[pw].filled and "(filled)" in typed.view.page.text
    done = b.click(sign_in)
    assert done.url == app.base + "/welcome?user=alice" and "Welcome back, alice." in done.text
    # the page is on the browser's stack: citable like any other
    cites = b.resolve_citations(f"【{done.cursor}†L2】")
    assert cites and cites[0].url == done.url and "Welcome back" in cites[0].quote


def test_model_visible_texts(app: Any, enc: Any, golden: Any) -> None:
    """A fresh browser, so that cursors and ids do not depend on other tests."""
    config = BrowserConfig(policy=LOOPBACK, render="never", actions=ActionConfig())
    with Browser(config=config, encoding=enc) as fresh:
        golden("actions_login", fresh.goto(app.base + "/login.html").text, app)
        with pytest.raises(ModelError) as refused:
            fresh.type(_id(fresh, "Password"), "hunter2")
        golden("actions_password_refused", refused.value.for_model())
        fresh.type(_id(fresh, "User name"), "alice")
        golden("actions_login_submitted", fresh.click(_id(fresh, "Sign in")).text, app)
        fresh.goto(app.base + "/order.html")
        fresh.type(_id(fresh, "Query"), "secret")
        golden("actions_redirect_refused", fresh.click(_id(fresh, "Send")).text, app)
        fresh.goto(app.base + "/fleeting.html")
        gone = _id(fresh, "Soon gone")
        time.sleep(1.0)  # the page removes it 0.3 s after it was listed
        with pytest.raises(ModelError) as err:
            fresh.click(gone)
        golden("actions_element_gone", err.value.for_model(), app)


def test_select_checkbox_and_a_script_button(app: Any, b: Browser) -> None:
    b.goto(app.base + "/order.html")
    size, gift = _id(b, "Size"), _id(b, "Gift wrap")
    with pytest.raises(ModelError) as bad:
        b.select(size, "Huge")
    assert bad.value.for_model() == f'"Huge" is not an option of element {size}.\nIts options are: "Small", "Large".'
    with pytest.raises(ModelError, match="not a checkbox"):
        b.check(size)
    assert 'select "Size" = "Large"' in b.select(size, "Large").view.page.text
    assert 'checkbox "Gift wrap" checked' in b.check(gift).view.page.text and b.actions.elements[gift].checked
    counted = b.click(_id(b, "Count"))
    assert counted.url == app.base + "/order.html" and not any("navigated" in e for e in counted.events)
    assert "Counter: 1" in counted.text
    noted = b.type(_id(b, "Note"), "line one\nline two")
    assert 'textarea "Note" = "line one\\nline two"' in noted.view.page.text
    assert "saved by the script" in b.click(_id(b, "Save")).text  # a script's POST, allowed: no approve
    ordered = b.click(_id(b, "Order"))
    assert "Size: Large, gift: on" in ordered.text and ordered.events[-1].startswith("The page navigated to")


def test_link_click_and_back(app: Any, b: Browser) -> None:
    b.goto(app.base + "/order.html")
    link = _id(b, "the third page")
    assert b.page().urls[str(link)] == app.base + "/third.html"  # browser.open follows the same id
    opened = b.click(link)  # target=_blank: opened in the one tab
    assert opened.url == app.base + "/third.html" and "The third page says hello." in opened.text
    back = b.back()
    assert back.url == app.base + "/order.html" and "Went back." in back.events
    popped = b.click(_id(b, "Pop up"))
    assert popped.url == back.url and popped.events[-1] == "The page opened a new window; it was closed (one tab only)."


def test_submit_redirected_to_a_refused_address(app: Any, b: Browser) -> None:
    b.goto(app.base + "/order.html")
    b.type(_id(b, "Query"), "secret")
    hits = dict(app.hits)
    sent = b.click(_id(b, "Send"))
    assert app.hits.get("/leak", 0) == hits.get("/leak", 0) + 1
    assert sent.url == app.base + "/order.html"  # the page was left as it was, typed text included
    assert 'textbox "Query" = "secret"' in sent.view.page.text
    assert sent.events[-1].startswith("A navigation was refused and the page was left as it was: ")
    assert "10.9.8.7" in sent.events[-1]
    with pytest.raises(ModelError, match=r"10\.9\.8\.7"):
        b.goto("http://10.9.8.7/")


def test_dialog(app: Any, b: Browser) -> None:
    b.goto(app.base + "/order.html")
    done = b.click(_id(b, "Delete"))
    assert 'The page showed a confirm dialog: "Really delete?"; it was accepted.' in done.events
    assert "Deleted" in done.text
    b.config.actions.dialogs = "dismiss"
    try:
        assert "Kept" in b.click(_id(b, "Delete")).text
    finally:
        b.config.actions.dialogs = "accept"


def test_downloads_go_into_the_workspace(app: Any, b: Browser, workspace: Path) -> None:
    b.goto(app.base + "/order.html")
    got = b.click(_id(b, "report"))
    assert got.url == app.base + "/order.html" and got.files == ["downloads/report.csv"]
    assert (workspace / "downloads/report.csv").read_text() == "a,b\n1,2\n"
    assert f"Downloaded {app.base}/report.csv to downloads/report.csv in the workspace (8 bytes)." in got.events
    assert b.actions.side_effect("click", {"id": _id(b, "notes")}) == SideEffect(
        "download", f'click 【#{_id(b, "notes")} link "notes"】, which downloads a file', app.base + "/notes.txt")
    notes = b.click(_id(b, "notes"))  # <a download>: Chromium's own download, fetched by us
    assert notes.files == ["downloads/notes.txt"] and (workspace / "downloads/notes.txt").read_text() == "some notes\n"
    b.config.actions.approve = lambda effect: effect.kind != "download"
    try:
        held = b.click(_id(b, "report"))
    finally:
        b.config.actions.approve = None
    assert held.files == [] and "was refused: the approval policy held it." in held.events[-1]


def test_element_gone_between_listing_and_click(app: Any, b: Browser) -> None:
    b.goto(app.base + "/fleeting.html")
    gone = _id(b, "Soon gone")
    time.sleep(1.0)  # the page removes it 0.3 s after it was listed
    with pytest.raises(ModelError) as err:
        b.click(gone)
    text = err.value.for_model()
    assert text.startswith(f"Element {gone} is no longer on the page") and "Soon gone" not in text
    assert b.actions.last is not None and text.endswith(b.actions.last.text)  # the page as it is now
    with pytest.raises(ModelError, match=f"There is no element {gone} on the current page"):
        b.click(gone)  # the page shown with the error is the current one: the id is not there


def test_approval_holds_a_form_submission(app: Any, b: Browser) -> None:
    b.goto(app.base + "/order.html")
    tool = PageTool(b)
    send = _id(b, "Send")
    assert tool.side_effect("page.click", f'{{"id": {send}}}') == SideEffect(
        "submit", f'click 【#{send} button "Send"】, which submits its form')
    assert tool.side_effect("page.click", f'{{"id": {_id(b, "Count")}}}') is None
    asked: list[SideEffect] = []
    b.config.actions.approve = lambda effect: asked.append(effect) or False
    try:
        hits = app.hits.get("/leak", 0)
        held = tool.call("page.click", f'{{"id": {send}}}')
    finally:
        b.config.actions.approve = None
    assert app.hits.get("/leak", 0) == hits and asked == [SideEffect("submit", f"POST {app.base}/leak", app.base + "/leak")]
    assert held.metadata["url"] == app.base + "/order.html"
    assert f"The POST request to {app.base}/leak was held by the approval policy and not sent." in held.text
    b.config.actions.approve = lambda effect: asked.append(effect) or False
    try:
        api = app.hits.get("/api", 0)
        scripted = b.click(_id(b, "Save"))  # a script's POST: put to approve when it happens, and held
    finally:
        b.config.actions.approve = None
    assert asked[-1] == SideEffect("request", f"POST {app.base}/api", app.base + "/api")
    assert app.hits.get("/api", 0) == api and "saved by the script" not in scripted.text


def test_upload_only_from_the_workspace(app: Any, b: Browser, workspace: Path, tmp_path: Path) -> None:
    (workspace / "secret.txt").write_text("workspace secret")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    os.symlink(outside, workspace / "link.txt")
    b.goto(app.base + "/order.html")
    field = _id(b, "File")
    for path in ("../outside.txt", str(outside), "link.txt"):
        with pytest.raises(ModelError, match="outside the workspace"):
            b.upload(field, path)
    with pytest.raises(ModelError, match="is a file field"):
        b.click(field)
    assert b.upload(field, "secret.txt").events == [f'Attached the workspace file secret.txt to 【#{field} file "File"】.']
    assert "Got the secret file" in b.click(_id(b, "Upload")).text


def test_scroll_wait_and_screenshot(app: Any, b: Browser, workspace: Path) -> None:
    app.page("/long.html", "<html><body>" + "".join(f"<p>Paragraph {i}.</p>" for i in range(200))
             + "<script>setTimeout(() => document.body.append('Finally here'), 600)</script></body></html>")
    first = b.goto(app.base + "/long.html")
    down = b.actions.scroll("down")
    assert down.view.loc == first.view.end and down.events == ["Scrolled down."]
    assert b.actions.scroll("up").events == ["Scrolled up. This is the top of the page."]
    while not b.actions.last or b.actions.last.end < b.actions.last.total_lines:
        last = b.actions.scroll("down")
    assert last.events == ["Scrolled down. This is the end of the page."]
    assert b.actions.scroll("down").view.loc == last.view.loc  # no further
    found = b.wait_for("Finally here", 5)
    assert re.fullmatch(r'"Finally here" is on the page \(waited [\d.]+ s\)\.', found.events[0])
    assert "Finally here" in found.text
    waited = b.wait_for("Never", 0.3)
    assert waited.events == ['"Never" did not appear within 0.3 s.']
    shot = b.screenshot()
    assert shot.files == ["screenshots/shot-1.png"]
    assert (workspace / "screenshots/shot-1.png").read_bytes().startswith(b"\x89PNG")


def test_record_and_replay_give_the_same_pages(app: Any, enc: Any, tmp_path: Path) -> None:
    def session(config: ActionConfig) -> tuple[list[str], Browser]:
        browser = Browser(config=BrowserConfig(policy=LOOPBACK, render="never", actions=config), encoding=enc)
        with browser:
            texts = [browser.goto(app.base + "/login.html").text]
            texts.append(browser.type(_id(browser, "User name"), "bob").text)
            texts.append(browser.click(_id(browser, "Sign in")).text)
            texts.append(browser.goto(app.base + "/order.html").text)
            texts.append(browser.click(_id(browser, "report")).text)
            texts.append(browser.open(app.base + "/second.html").text)  # read without acting: recorded too
            texts.append(browser.find("sink").text)
        return texts, browser

    recorded, _ = session(ActionConfig(workspace=tmp_path, record="session.jsonl"))
    (tmp_path / "downloads/report.csv").unlink()
    hits = dict(app.hits)
    replayed, browser = session(ActionConfig(workspace=tmp_path, replay="session.jsonl"))
    assert replayed == recorded and "Welcome back, bob." in recorded[2] and "Attention sinks" in recorded[-2]
    assert browser._chromium is None and app.hits == hits  # offline: no Chromium, no request
    assert (tmp_path / "downloads/report.csv").read_text() == "a,b\n1,2\n"
    with Browser(config=BrowserConfig(policy=LOOPBACK, actions=ActionConfig(
            workspace=tmp_path, replay="session.jsonl")), encoding=enc) as again:
        again.goto(app.base + "/login.html")
        with pytest.raises(ToolFailure, match=r"diverged at step 2: recorded type\(.*asked click"):
            again.click(_id(again, "Sign in"))
