"""Browser automation without a model: search a folder of documents, open results, find text, cite.

    .venv/bin/python examples/browser_automation.py DOCS_FOLDER "query" [--find WORD]
    .venv/bin/python examples/browser_automation.py --url https://example.org/ --find domain

With a folder, search runs offline (BM25 over .html/.txt/.md files) and nothing touches the network.
With --url the page is fetched (httpx, or Chromium when it needs JavaScript) under the default URL policy:
public http(s) addresses only.
"""

from __future__ import annotations

import argparse

from ossagent.tools.browser import create_browser


def main() -> None:
    ap = argparse.ArgumentParser(description="search, open and find with the ossagent browser")
    ap.add_argument("folder", nargs="?", help="a folder of documents to search offline")
    ap.add_argument("query", nargs="?", help="what to search for")
    ap.add_argument("--url", help="open this URL instead of searching")
    ap.add_argument("--find", help="then find this text in the opened page")
    ap.add_argument("--render", default="auto", choices=["auto", "always", "never"])
    args = ap.parse_args()
    if not args.url and not (args.folder and args.query):
        ap.error("give a folder and a query, or --url")
    with create_browser(offline_folder=args.folder if not args.url else None, render=args.render) as browser:
        if args.url:
            view = browser.open(args.url)
        else:
            print(browser.search(args.query).text, end="\n\n")
            view = browser.open(0)  # the first result
        print(view.text, end="\n\n")
        if args.find:
            found = browser.find(args.find)
            print(found.text, end="\n\n")
        # a citation of the page's first shown lines, resolved back to its URL
        cite = f"【{view.cursor}†L{view.loc}-L{min(view.loc + 2, view.end - 1)}】"
        for c in browser.resolve_citations(cite):
            print(f"{cite} -> {c.url} lines {c.lines}:\n{c.quote}")


if __name__ == "__main__":
    main()
