"""Fixtures: the loopback test site, a browser allowed to reach it, an offline document folder, goldens."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.tools.browser import Browser, BrowserConfig, OfflineBackend, UrlPolicy

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"


def _load_website() -> Any:
    spec = importlib.util.spec_from_file_location("ossagent_test_website", HERE / "website.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


website = _load_website()
LOOPBACK = UrlPolicy(allow_networks=("127.0.0.1/32",))  # the test configuration: loopback v4 only


@pytest.fixture(scope="session")
def site() -> Iterator[Any]:
    s = website.Site()
    yield s
    s.close()


@pytest.fixture()
def browser(enc: Any) -> Iterator[Browser]:
    b = Browser(config=BrowserConfig(policy=LOOPBACK, render="never"), encoding=enc)
    yield b
    b.close()


DOCS = {
    "attention.html": """<html><head><title>Attention in gpt-oss</title></head><body>
<h1>Attention</h1><p>Layers alternate between a sliding window of 128 tokens and full attention.</p>
<p>Every head has a learned attention sink. See <a href="experts.html">the experts page</a>.</p>
</body></html>""",
    "experts.html": """<html><head><title>Mixture of experts</title></head><body>
<p>Each MoE layer has 32 experts and routes every token to the top 4 experts.</p>
<p>Expert weights are stored in MXFP4. Back to <a href="attention.html">attention</a>.</p></body></html>""",
    "notes/tokenizer.md": "# Tokenizer\n\nThe o200k_harmony tokenizer has 201089 ids, with special tokens for harmony.\n",
    "notes/cooking.txt": "A recipe for bread: flour, water, salt and yeast. Bake for forty minutes.\n",
    "image.png": "not indexed",
}


@pytest.fixture(scope="session")
def docs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("offline-docs")
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture()
def offline_browser(docs_folder: Path, enc: Any) -> Iterator[Browser]:
    b = Browser(OfflineBackend(docs_folder), BrowserConfig(policy=UrlPolicy(), render="never"), encoding=enc)
    yield b
    b.close()


def check_golden(name: str, text: str, site: Any = None) -> None:
    """Compare ``text`` with golden/<name>.txt (the site's port replaced by PORT).

    A missing golden file is written and the test fails, so new goldens are always reviewed: delete a
    file to re-record it.
    """
    if site is not None:
        text = text.replace(f"127.0.0.1:{site.port}", "127.0.0.1:PORT")
    path = GOLDEN / f"{name}.txt"
    if not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"recorded new golden {path.name}; review it and run again")
    assert text == path.read_text(encoding="utf-8"), f"model-visible text differs from golden/{path.name}"


@pytest.fixture()
def golden() -> Any:
    return check_golden


@pytest.fixture(scope="session")
def web() -> Any:
    """The test website module (pages and the Site server class)."""
    return website
