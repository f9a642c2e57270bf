"""Every example runs end to end with the scripted model (real tools: sandboxed python, the browser)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_are_numbered_and_all_tested() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert names == ["01_scripted_agent.py", "02_code_assistant.py", "03_browser_local_site.py",
                     "04_structured_output.py", "05_function_calling.py", "06_openai_client.py",
                     "07_browser_actions.py"]


def test_01_scripted_agent() -> None:
    result = load("01_scripted_agent.py").main(use_model=False)
    assert result.ok and "878 km" in result.text
    assert [m.text for m in result.transcript if m.role == "tool"] == ["878"]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_02_code_assistant(tmp_path: Path) -> None:
    result = load("02_code_assistant.py").main(use_model=False, workspace=tmp_path)
    assert result.ok
    assert [m.text.strip() for m in result.transcript if m.role == "tool"] == ["3 61.5 20.5", "mean=20.5"]
    assert (tmp_path / "summary.txt").read_text() == "mean=20.5"


def test_03_browser_local_site() -> None:
    result = load("03_browser_local_site.py").main(use_model=False)
    assert result.ok and "1931" in result.text
    (cite,) = result.citations
    assert cite["lines"] == [6, 6] and "electrified in 1931" in cite["quote"]


def test_04_structured_output() -> None:
    result = load("04_structured_output.py").main(use_model=False)
    assert result.output.servings == 4 and "milk" in result.output.ingredients


def test_05_function_calling() -> None:
    result = load("05_function_calling.py").main(use_model=False)
    assert result.ok and "A-17" in result.text
    tools = [m for m in result.transcript if m.role == "tool"]
    assert [t.name for t in tools] == ["functions.get_stock", "functions.place_order"]
    assert tools[0].text == '{"item": "widget", "units": 12}'


def test_06_openai_client() -> None:
    assert load("06_openai_client.py").main(use_model=False) == ["Hello there!", "It is 4 °C and snowing in Oslo."]


def test_07_browser_actions(tmp_path: Path) -> None:
    from ossagent.tools.browser.chromium import default_executable

    if default_executable() is None:
        pytest.skip("needs Chromium")
    example = load("07_browser_actions.py")
    result = example.main(use_model=False, workspace=tmp_path)
    assert result.ok and "2 copies" in result.text
    (cite,) = result.citations
    assert cite["url"].endswith("/search?title=The+Hobbit&branch=Harbour+branch")
    assert cite["quote"].strip() == "The Hobbit at the Harbour branch: 2 copies on the shelf."
    tools = [m for m in result.transcript if m.role == "tool"]
    assert [t.name for t in tools] == ["page.goto", "page.type", "page.select", "page.click"]
    assert '【#0 textbox "Title"】' in tools[0].text and "The page navigated to" in tools[-1].text
    first = cite["url"].split("/search")[0] + "/"
    httpd, url = example.serve()  # the same task from Python, without a model: the same page
    try:
        assert example.scripted_steps(url, tmp_path) == tools[-1].text.replace(first, url)
    finally:
        httpd.shutdown()
