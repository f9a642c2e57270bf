"""03 - Browser automation against a local web site: open a page, find a passage, answer with a citation.

Run: python examples/03_browser_local_site.py   (serves a tiny site on 127.0.0.1; uses OSSAGENT_MODEL when set)
"""

from __future__ import annotations

import http.server
import tempfile
import threading
from pathlib import Path

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.loop import Agent, RunResult
from ossagent.tools.browser import Browser, BrowserConfig, BrowserTool, UrlPolicy

PAGE = """<html><head><title>Lighthouse facts</title></head><body><h1>Lighthouse facts</h1>
<p>The Old Harbour lighthouse was built in 1872 from granite blocks.</p>
<p>Its lamp was electrified in 1931 and can be seen 24 nautical miles out to sea.</p>
<p>Visitors may climb the 117 steps on weekends.</p></body></html>"""


def script(url: str) -> list[str]:
    return [
        "<|channel|>analysis<|message|>Open the page.<|end|><|start|>assistant to=browser.open<|channel|>analysis"
        f' <|constrain|>json<|message|>{{"id":"{url}"}}<|call|>',
        "<|channel|>analysis<|message|>Find the year.<|end|><|start|>assistant to=browser.find<|channel|>analysis"
        ' <|constrain|>json<|message|>{"pattern":"electrified"}<|call|>',
        "<|channel|>final<|message|>The lamp was electrified in 1931 【0†L6】.<|return|>",
    ]


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    def handler(*args: object) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(folder))  # type: ignore[arg-type]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=str(folder), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/lighthouse.html"


def main(use_model: bool = True) -> RunResult:
    site = Path(tempfile.mkdtemp(prefix="ossagent-site-"))
    (site / "lighthouse.html").write_text(PAGE)
    httpd, url = serve(site)
    try:
        backend, _ = example_backend(script(url), use_model=use_model)
        policy = UrlPolicy(allow_networks=("127.0.0.1/32",))  # the local site only; the rest stays public-only
        browser = BrowserTool(Browser(None, BrowserConfig(policy=policy, render="never")))
        agent = Agent(backend, tools=[browser], reasoning="low")
        try:
            result = agent.run(f"When was the lamp of the lighthouse described at {url} electrified? Cite it.")
        finally:
            agent.close()
    finally:
        httpd.shutdown()
    print(result.text)
    for c in result.citations:
        print(f"  [{c['cursor']}] {c['url']} lines {c['lines']}: {c['quote'].strip()}")
    return result


if __name__ == "__main__":
    main()
