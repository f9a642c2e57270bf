"""The Chromium path with the real Debian Chromium: JavaScript pages, what is blocked, how it is isolated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.base import ToolFailure, UserError
from ossagent.tools.browser import Browser, BrowserConfig, ChromiumConfig, UrlPolicy
from ossagent.tools.browser.chromium import default_executable, resolve_sandbox
from ossagent.tools.browser.policy import PolicyError

pytestmark = pytest.mark.skipif(default_executable() is None, reason="Chromium is not installed")
LOOPBACK = UrlPolicy(allow_networks=("127.0.0.1/32",))


@pytest.fixture(scope="module")
def auto(site: Any, enc: Any) -> Iterator[Browser]:
    b = Browser(config=BrowserConfig(policy=LOOPBACK, render="auto"), encoding=enc)
    yield b
    b.close()


@pytest.fixture()
def fresh(site: Any, enc: Any) -> Iterator[Browser]:
    """A browser of its own, for a test that counts what it renders (whatever ran before it)."""
    b = Browser(config=BrowserConfig(policy=LOOPBACK, render="auto"), encoding=enc)
    yield b
    b.close()


def test_javascript_page_is_rendered_automatically(site: Any, fresh: Browser, golden: Any) -> None:
    auto = fresh
    before = dict(site.hits)
    plain = auto.open(site.base + "/static.html")
    assert auto.stats.rendered == 0 and "Sliding windows" in plain.text  # no scripts: httpx only
    v = auto.open(site.base + "/js.html")
    assert auto.stats.rendered == 1
    golden("open_js_rendered", v.text, site)
    assert "the magic number is 42" in v.text and "Fetched: hello from fetch" in v.text
    assert v.title == "Rendered title"
    def fetched(path: str) -> int:
        return site.hits.get(path, 0) - before.get(path, 0)

    assert fetched("/js.html") == 1  # the document fetched by httpx was handed to Chromium
    assert fetched("/data.json") == 1  # the page's fetch() went through our fetcher
    assert "/cat.png" not in site.hits and "/style.css" not in site.hits  # never requested


def test_render_always_follows_redirects_hop_by_hop(site: Any, auto: Browser) -> None:
    def render(path: str) -> Any:
        return auto.open(site.base + path, render="always")

    v = render("/redirect-chain")
    assert v.url == site.base + "/second.html" and "Attention sinks" in v.text
    # a script navigating into a refused address: refused by the policy, reported to the model
    with pytest.raises(PolicyError, match=r"10\.9\.8\.7"):
        render("/js-redirect-private.html")
    site.page("/js-download.html", "<html><script>location.href='/file.zip'</script></html>")
    with pytest.raises(ToolFailure, match="application/zip"):
        render("/js-download.html")
    site.page("/popup.html", "<html><body><p>" + "Opener text. " * 80 + "</p>"
              "<script>window.open('/third.html'); fetch('http://10.1.1.1/x').catch(e => 0);"
              f"try {{ new WebSocket('ws://127.0.0.1:{site.port}/ws') }} catch (e) {{}}</script></body></html>")
    assert "Opener text." in render("/popup.html").text
    assert "/ws" not in site.hits  # the WebSocket never reached the server
    # an iframe into a refused address is blocked; the page itself still renders
    site.page("/iframe.html", "<html><body><p>Outer page text.</p>"
              "<iframe src='http://169.254.169.254/latest/'></iframe></body></html>")
    assert "Outer page text." in render("/iframe.html").text
    # the same static page through Chromium reads exactly as through httpx
    plain = auto.open(site.base + "/static.html", render="never").text
    fetches = site.hits["/static.html"]
    rendered = render("/static.html").text
    assert rendered.split("\n", 1)[1] == plain.split("\n", 1)[1]
    assert site.hits["/static.html"] == fetches  # rendering reused the fetched document


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(next(line for line in (d / "status").read_text().splitlines()
                                if line.startswith("PPid:")).split()[1])
            except (OSError, StopIteration, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def test_chromium_is_isolated(site: Any, auto: Browser) -> None:
    auto.open(site.base + "/js.html")  # make sure Chromium runs
    mode = auto.chromium().sandbox
    assert mode == ("bwrap" if os.geteuid() == 0 else "chromium")
    ours = os.readlink("/proc/self/ns/net")
    procs = []
    for pid in _descendants(os.getpid()):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            if "chrom" in exe:
                procs.append((pid, os.readlink(f"/proc/{pid}/ns/net")))
        except OSError:
            continue
    assert procs, "no Chromium process found under this test"
    if mode == "bwrap":  # every Chromium process lives in a network namespace with nothing in it
        assert all(ns != ours for _, ns in procs)
    else:  # Chromium's own sandbox: at least its renderers have their own network namespace
        assert any(ns != ours for _, ns in procs)


def test_sandbox_modes_are_checked() -> None:
    with pytest.raises(UserError):
        resolve_sandbox("off")
    assert resolve_sandbox("none") == "none"
    with pytest.raises(UserError, match="no Chromium found"):
        from ossagent.tools.browser import ChromiumRenderer, HttpFetcher

        ChromiumRenderer(HttpFetcher(LOOPBACK), ChromiumConfig(executable="/nonexistent/chromium"))


@pytest.mark.slow
def test_a_page_that_hangs_chromium_is_killed_and_chromium_restarts(site: Any, enc: Any) -> None:
    site.page("/hang.html", "<html><body><p>" + "Hanging text. " * 80 + "</p><script>"
              "onload = () => setTimeout(() => { for (;;) {} }, 20)</script></body></html>")
    fast = ChromiumConfig(navigation_timeout_s=3, settle_ms=300, watchdog_slack_s=1.5)
    with Browser(config=BrowserConfig(policy=LOOPBACK, render="always", chromium=fast), encoding=enc) as b:
        b.open(site.base + "/third.html")  # Chromium is up
        with pytest.raises(ToolFailure, match="browser was restarted"):
            b.open(site.base + "/hang.html")
        assert "The third page says hello." in b.open(site.base + "/third.html?again").text
