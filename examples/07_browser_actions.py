"""07 - Browser automation: fill and submit a form on a local site, read the result page, cite it.

Run: python examples/07_browser_actions.py   (serves a tiny site on 127.0.0.1; uses OSSAGENT_MODEL when set;
needs Debian's chromium)

The agent gets two namespaces over one browser: ``browser`` (search/open/find, as gpt-oss was trained) and
``page`` (goto, click, type, select, check, ...). Pages from both share cursors, so the answer cites the
result page the form led to. ``scripted_steps`` does the same without a model, from Python.
"""

from __future__ import annotations

import http.server
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.loop import Agent, RunResult
from ossagent.tools.browser import ActionConfig, Browser, BrowserConfig, UrlPolicy, browser_tools

FORM = """<html><head><title>City library</title></head><body><h1>City library: find a book</h1>
<form action="/search"><label>Title <input name="title"></label>
<label>Branch <select name="branch"><option>Main branch</option><option>Harbour branch</option></select></label>
<button>Search</button></form></body></html>"""
SHELF = {"the hobbit": {"Main branch": "on loan until 12 May", "Harbour branch": "2 copies on the shelf"}}


def results(query: dict[str, list[str]]) -> str:
    title, branch = query.get("title", [""])[0], query.get("branch", ["Main branch"])[0]
    status = SHELF.get(title.strip().lower(), {}).get(branch, "not in this branch's catalogue")
    return (f"<html><head><title>Search results</title></head><body><p>{title} at the {branch}: {status}.</p>"
            "<p><a href='/'>New search</a></p></body></html>")


def serve() -> tuple[http.server.ThreadingHTTPServer, str]:
    class Library(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            body = (results(parse_qs(query)) if path == "/search" else FORM).encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Library)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def _call(fn: str, args: str) -> str:
    return (f"<|start|>assistant to=page.{fn}<|channel|>commentary <|constrain|>json<|message|>{args}<|call|>")


def script(url: str) -> list[str]:
    """What a model writes: ids come from the page it was shown (【#0 textbox "Title"】, ...)."""
    return [
        "<|channel|>analysis<|message|>Load the library's search form.<|end|>" + _call("goto", f'{{"url":"{url}"}}'),
        "<|channel|>analysis<|message|>Type the title into field 0.<|end|>"
        + _call("type", '{"id":0,"text":"The Hobbit"}'),
        "<|channel|>analysis<|message|>Choose the Harbour branch.<|end|>"
        + _call("select", '{"id":1,"option":"Harbour branch"}'),
        "<|channel|>analysis<|message|>Search.<|end|>" + _call("click", '{"id":2}'),
        "<|channel|>final<|message|>The Harbour branch has 2 copies of The Hobbit on the shelf 【3†L2】.<|return|>",
    ]


def browser(workspace: Path) -> Browser:
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",))  # the local site only; the rest stays public-only
    return Browser(None, BrowserConfig(policy=policy, render="never", actions=ActionConfig(workspace=workspace)))


def scripted_steps(url: str, workspace: Path) -> str:
    """The same task from Python, without a model."""
    with browser(workspace) as b:
        b.goto(url)
        b.type(0, "The Hobbit")
        b.select(1, "Harbour branch")
        return b.click(2).text


def main(use_model: bool = True, workspace: Path | None = None) -> RunResult:
    workspace = workspace or Path(tempfile.mkdtemp(prefix="ossagent-actions-"))
    httpd, url = serve()
    try:
        backend, _ = example_backend(script(url), use_model=use_model)
        agent = Agent(backend, tools=browser_tools(browser(workspace)), reasoning="low")
        try:
            result = agent.run(f"Use the library site at {url}: is The Hobbit on the shelf at the Harbour branch? "
                               "Fill in its search form and cite the result page.")
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
