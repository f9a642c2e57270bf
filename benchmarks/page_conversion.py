"""HTML-to-text conversion time against page size: link-heavy pages must convert in linear time.

    .venv/bin/python benchmarks/page_conversion.py [--sizes 10000 40000 100000]

Three layouts per size: every link in one paragraph (siblings), one link per list item, and links in nested
``<div>``s. Prints seconds per conversion and microseconds per link; linear conversion keeps the last column flat.
"""

from __future__ import annotations

import argparse
import time

from ossagent.tools.browser.text import html_to_page

LAYOUTS = {
    "one paragraph": lambda n: "<p>" + " ".join(f"<a href='/p{i}'>link {i}</a>" for i in range(n)) + "</p>",
    "list items": lambda n: "<ul>" + "".join(f"<li><a href='/p{i}'>link {i}</a></li>" for i in range(n)) + "</ul>",
    "nested divs": lambda n: "".join(f"<div><a href='/p{i}'>link {i}</a> <img alt='i{i}'>" for i in range(n))
    + "</div>" * n,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 100_000])
    args = ap.parse_args()
    print(f"| {'layout':<14} | {'links':>7} | {'HTML MB':>7} | {'seconds':>7} | {'µs/link':>7} |")
    print(f"|{'-' * 16}|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|")
    for name, make in LAYOUTS.items():
        for n in args.sizes:
            html = f"<html><body>{make(n)}</body></html>"
            start = time.perf_counter()
            html_to_page(html, "https://site.example/")
            took = time.perf_counter() - start
            print(f"| {name:<14} | {n:>7,} | {len(html) / 1e6:>7.1f} | {took:>7.2f} | {took / n * 1e6:>7.1f} |")


if __name__ == "__main__":
    main()
