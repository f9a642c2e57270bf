"""Files page actions read and write in the workspace, which sandboxed code shares and can fill with symbolic
links and hard links: nothing is written or read outside it (a folder of the test's own stands for the host),
and the model is told what is in the way and how to clear it. Real Chromium against the loopback site."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.base import ModelError, ToolFailure, UserError
from ossagent.tools.browser import ActionConfig, Browser, BrowserConfig, UrlPolicy
from ossagent.tools.browser.chromium import default_executable

pytestmark = pytest.mark.skipif(default_executable() is None, reason="Chromium is not installed")
LOOPBACK = UrlPolicy(allow_networks=("127.0.0.1/32",))

FILES = """<html><head><title>Files</title></head><body>
<a href="/files/report.csv">report</a> <a href="/files/sneaky">sneaky</a>
<form method="post" action="/files/upload" enctype="multipart/form-data"><input type="file" name="f" aria-label="File">
<button>Upload</button></form></body></html>"""
IN_THE_WAY = ("Remove or rename what is in the way ({folder}/ or {path}: a symbolic link, or a file where a folder "
              "belongs), for example with the python tool, then try again.")


def _uploaded(h: Any) -> None:
    got = b"inside bytes" if b"inside bytes" in h.body else b"host bytes" if b"host bytes" in h.body else b"nothing"
    h.send(200, b"<html><head><title>Uploaded</title></head><body><p>Got " + got + b"</p></body></html>")


@pytest.fixture(scope="module")
def app(site: Any) -> Any:
    site.page("/files.html", FILES)
    site.page("/files/report.csv", "a,b\n1,2\n", "text/csv",
              headers={"content-disposition": 'attachment; filename="report.csv"'})
    site.page("/files/sneaky", "#!/bin/sh\n", "text/plain",
              headers={"content-disposition": 'attachment; filename="../../../outside/evil.sh"'})
    site.route("/files/upload", _uploaded)
    return site


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(the workspace, a folder outside it that stands for the host's files)"""
    (tmp_path / "ws").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "ws", tmp_path / "outside"


@pytest.fixture()
def b(app: Any, enc: Any, dirs: tuple[Path, Path]) -> Iterator[Browser]:
    config = BrowserConfig(policy=LOOPBACK, render="never", actions=ActionConfig(workspace=dirs[0]))
    with Browser(config=config, encoding=enc) as browser:
        yield browser


def _id(browser: Browser, label: str) -> int:
    return next(e.id for e in browser.actions.elements.values() if e.label == label)


def _everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_downloads_never_follow_a_link_out_of_the_workspace(app: Any, b: Browser, dirs: tuple[Path, Path]) -> None:
    ws, outside = dirs
    os.symlink(outside, ws / "downloads")  # a folder link planted by sandboxed code
    b.goto(app.base + "/files.html")
    got = b.click(_id(b, "report"))
    assert got.files == [] and _everything(outside) == []
    assert got.events[-1] == (
        f"The download of {app.base}/files/report.csv could not be saved: Could not write downloads/report.csv into "
        "the workspace: 'downloads/report.csv' resolves outside the workspace (through '..', an absolute path or a "
        "symbolic link). " + IN_THE_WAY.format(folder="downloads", path="downloads/report.csv"))
    (ws / "downloads").unlink()  # what the hint says; then a dangling file link in the way
    (ws / "downloads").mkdir()
    os.symlink(outside / "report.csv", ws / "downloads/report.csv")
    again = b.click(_id(b, "report"))
    assert again.files == ["downloads/report-1.csv"] and (ws / "downloads/report-1.csv").read_text() == "a,b\n1,2\n"
    assert (ws / "downloads/report.csv").is_symlink() and _everything(outside) == []
    sneaky = b.click(_id(b, "sneaky"))  # the page names the file: only its last part, cleaned, is used
    assert sneaky.files == ["downloads/evil.sh"] and _everything(outside) == []


def test_screenshots_never_follow_a_link_out_of_the_workspace(app: Any, b: Browser, dirs: tuple[Path, Path]) -> None:
    ws, outside = dirs
    os.symlink(outside, ws / "screenshots")
    b.goto(app.base + "/files.html")
    with pytest.raises(ModelError) as err:
        b.screenshot()
    assert err.value.for_model().startswith(
        "Could not write screenshots/shot-1.png into the workspace: 'screenshots/shot-1.png' resolves outside the "
        "workspace (through '..', an absolute path or a symbolic link).\n"
        + IN_THE_WAY.format(folder="screenshots", path="screenshots/shot-1.png") + "\n\n")
    assert "【#" in err.value.for_model() and _everything(outside) == []  # the page, as after any failed action
    (ws / "screenshots").unlink()
    (ws / "screenshots").mkdir()
    os.symlink(outside / "host.png", ws / "screenshots/shot-2.png")  # dangling: writing through it would create it
    shot = b.screenshot()
    assert shot.files == ["screenshots/shot-2.png"] and _everything(outside) == []
    png = ws / "screenshots/shot-2.png"
    assert not png.is_symlink() and png.read_bytes().startswith(b"\x89PNG")  # the link was replaced, not followed


def test_uploads_read_workspace_files_only_and_at_once(app: Any, b: Browser, dirs: tuple[Path, Path]) -> None:
    ws, outside = dirs
    (outside / "host.txt").write_text("host bytes")
    os.symlink(outside, ws / "linked")  # a folder link
    os.link(outside / "host.txt", ws / "hard.txt")  # a hard link to a host file
    b.goto(app.base + "/files.html")
    field = _id(b, "File")
    with pytest.raises(ModelError, match=re.escape("'linked/host.txt' resolves outside the workspace")):
        b.upload(field, "linked/host.txt")
    with pytest.raises(ModelError) as hard:
        b.upload(field, "hard.txt")
    assert hard.value.for_model() == ("'hard.txt' has other hard links; it is not read, for safety.\n"
                                      "Copy it inside the workspace with the python tool first.")
    (ws / "doc.txt").write_text("inside bytes")
    b.upload(field, "doc.txt")
    (ws / "doc.txt").unlink()  # swapped for a link after the check: the bytes were read already
    os.symlink(outside / "host.txt", ws / "doc.txt")
    assert "Got inside bytes" in b.click(_id(b, "Upload")).text


def test_recording_is_written_and_read_in_the_workspace_only(app: Any, enc: Any, dirs: tuple[Path, Path]) -> None:
    ws, outside = dirs
    os.symlink(outside, ws / "recs")
    with pytest.raises(UserError, match=re.escape(
            "cannot write the recording recs/session.jsonl in the workspace: 'recs/session.jsonl' resolves outside")):
        Browser(config=BrowserConfig(policy=LOOPBACK, actions=ActionConfig(workspace=ws, record="recs/session.jsonl")),
                encoding=enc)
    os.symlink(outside / "session.jsonl", ws / "session.jsonl")  # dangling: the recorder replaces it
    with Browser(config=BrowserConfig(policy=LOOPBACK, render="never", actions=ActionConfig(
            workspace=ws, record="session.jsonl")), encoding=enc) as recording:
        recording.goto(app.base + "/files.html")
        recording.click(_id(recording, "report"))
    assert _everything(outside) == [] and not (ws / "session.jsonl").is_symlink()
    lines = (ws / "session.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["outcome"]["events"][0]["path"] == "downloads/report.csv"
    (ws / "downloads/report.csv").unlink()
    (ws / "downloads").rmdir()
    os.symlink(outside, ws / "downloads")  # the replay writes the download again: not through this link
    with Browser(config=BrowserConfig(policy=LOOPBACK, actions=ActionConfig(
            workspace=ws, replay="session.jsonl")), encoding=enc) as replay:
        replay.goto(app.base + "/files.html")
        with pytest.raises(ModelError, match=re.escape("Could not write downloads/report.csv into")):
            replay.click(_id(replay, "report"))
    assert _everything(outside) == []
    (outside / "elsewhere.jsonl").write_text(lines[0] + "\n")
    (ws / "session.jsonl").unlink()
    os.symlink(outside / "elsewhere.jsonl", ws / "session.jsonl")
    with pytest.raises(UserError, match=re.escape(
            "cannot read the recording session.jsonl in the workspace: 'session.jsonl' resolves outside")):
        Browser(config=BrowserConfig(policy=LOOPBACK, actions=ActionConfig(workspace=ws, replay="session.jsonl")),
                encoding=enc)


def _replay_forged(app: Any, enc: Any, ws: Path, event: dict[str, Any]) -> str:
    """What a replay of a recording whose one goto downloaded ``event`` tells the model."""
    entry = {"action": "goto", "args": {"url": app.base + "/files.html"}, "outcome": {"events": [event]}}
    (ws / "forged.jsonl").write_text(json.dumps({"format": "ossagent-browser-actions", "version": 1}) + "\n"
                                     + json.dumps(entry) + "\n")
    config = BrowserConfig(policy=LOOPBACK, actions=ActionConfig(workspace=ws, replay="forged.jsonl"))
    with Browser(config=config, encoding=enc) as replay, pytest.raises(ToolFailure) as err:
        replay.goto(app.base + "/files.html")
    return err.value.for_model()


@pytest.mark.parametrize("path", ["../outside/evil.sh", "downloads/../../outside/evil.sh", "notes.txt",
                                  "/outside/evil.sh", 7])
def test_a_replayed_download_goes_only_into_downloads(app: Any, enc: Any, dirs: tuple[Path, Path], path: Any) -> None:
    """The recording is a workspace file that sandboxed code may edit: what it says is not trusted."""
    ws, outside = dirs
    event = {"kind": "download", "url": app.base + "/x", "path": path, "bytes": 2, "data": base64.b64encode(b"hi").decode()}
    assert _replay_forged(app, enc, ws, event) == (
        f"The recording names the download file {json.dumps(path)}, which is not a file in downloads/.\n"
        "Record the session again.")
    broken = {**event, "path": "downloads/x.txt", "data": "not base64!"}
    assert _replay_forged(app, enc, ws, broken) == (
        "The recording has a broken download for downloads/x.txt.\nRecord the session again.")
    assert _everything(outside) == [] and _everything(ws) == ["forged.jsonl"]
