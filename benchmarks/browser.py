"""Bytes fetched and time per page for the browser's httpx and Chromium paths, on a loopback site.

    .venv/bin/python benchmarks/browser.py [--repeat 5]

Each page is opened ``--repeat`` times with the cache cleared in between; the table gives the median
wall time per open (fetch + HTML to text + first viewport) and the bytes read from the network per open.
The Chromium column counts every byte Chromium's requests pulled through the policy-checked fetcher
(images, media, fonts and stylesheets are blocked, so they cost nothing). Launch time is reported apart.

A second table times page actions in the live tab (median per action, each including the wait for the page to
settle: no request for ``quiet_ms``): load a form, type, select, check, a script button, a submit that
navigates, scroll, back.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ossagent.model.tokenizer import o200k_harmony
from ossagent.tools.browser import Browser, BrowserConfig, UrlPolicy

ROOT = Path(__file__).resolve().parent.parent
FORM = """<html><head><title>Form</title></head><body><form action="/done">
<label>Name <input name="name"></label><select name="size" aria-label="Size"><option>S</option><option>L</option>
</select><label><input type="checkbox" name="gift"> Gift</label><button>Send</button></form>
<button onclick="document.getElementById('n').textContent = Date.now()">Tick</button><p id="n">0</p>
""" + "<p>Filler text for scrolling.</p>" * 100 + "</body></html>"
PAGES = ["/static.html", "/second.html", "/js.html", "/gzip.html", "/huge.html"]


def _website():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_website", ROOT / "tests/tools/browser/website.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    site = _website().Site()
    enc = o200k_harmony()
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",))
    rows = []
    launch = 0.0
    for mode in ("never", "always"):
        with Browser(config=BrowserConfig(policy=policy, render=mode), encoding=enc) as b:
            if mode == "always":
                t = time.perf_counter()
                b.open(site.base + "/third.html")  # first render starts Chromium
                launch = time.perf_counter() - t
                b.clear_cache()
            for path in PAGES:
                times, sizes, blocked = [], [], []
                for _ in range(args.repeat):
                    b.clear_cache()
                    before = b.bytes_fetched
                    blocked0 = b._chromium.blocked if b._chromium else 0
                    t = time.perf_counter()
                    view = b.open(site.base + path)
                    times.append(time.perf_counter() - t)
                    sizes.append(b.bytes_fetched - before)
                    blocked.append((b._chromium.blocked if b._chromium else 0) - blocked0)
                rows.append((path, "httpx" if mode == "never" else "chromium", statistics.median(times) * 1000,
                             statistics.median(sizes), statistics.median(blocked), view.total_lines))
    action_rows = actions_table(site, enc, policy, args.repeat)
    site.close()
    print(f"| page | path | ms/page (median of {args.repeat}) | bytes fetched/page | requests blocked | lines |")
    print("|---|---|---:|---:|---:|---:|")
    for path, kind, ms, size, blocked, lines in rows:
        print(f"| {path} | {kind} | {ms:.1f} | {size:,.0f} | {blocked:.0f} | {lines} |")
    print(f"\nChromium launch + first page: {launch * 1000:.0f} ms "
          f"(sandbox: {'bwrap' if b._chromium is None else b._chromium.sandbox})")

    print(f"\n| action | ms/action (median of {args.repeat}) |")
    print("|---|---:|")
    for name, ms in action_rows:
        print(f"| {name} | {ms:.0f} |")


def actions_table(site: Any, enc: Any, policy: UrlPolicy, repeat: int) -> list[tuple[str, float]]:
    site.page("/form.html", FORM)
    site.page("/done", "<html><head><title>Done</title></head><body><p>Sent.</p></body></html>")
    times: dict[str, list[float]] = {}
    with Browser(config=BrowserConfig(policy=policy, render="never"), encoding=enc) as b:
        b.goto(site.base + "/third.html")  # Chromium is up
        for _ in range(repeat):
            t = time.perf_counter()
            b.goto(site.base + "/form.html")
            times.setdefault("goto (form page)", []).append(time.perf_counter() - t)
            ids = {e.label: e.id for e in b.actions.elements.values()}
            steps: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
                ("type", b.type, (ids["Name"], "Ada")), ("select", b.select, (ids["Size"], "L")),
                ("check", b.check, (ids["Gift"],)), ("click (script, no navigation)", b.click, (ids["Tick"],)),
                ("scroll", b.actions.scroll, ("down",)), ("click (submit, navigates)", b.click, (ids["Send"],)),
                ("back", b.back, ())]
            for name, fn, fn_args in steps:
                t = time.perf_counter()
                fn(*fn_args)
                times.setdefault(name, []).append(time.perf_counter() - t)
    return [(name, statistics.median(ts) * 1000) for name, ts in times.items()]


if __name__ == "__main__":
    main()
