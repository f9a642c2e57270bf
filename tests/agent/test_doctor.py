from __future__ import annotations

from pathlib import Path

import pytest

from ossagent.agent import cli
from ossagent.agent.cli.doctor import check_model, run_checks
from ossagent.agent.settings import Settings


def test_settings_from_env_reads_only_given_mapping(tmp_path: Path) -> None:
    s = Settings.from_env({"OSSAGENT_MODEL": str(tmp_path), "OSSAGENT_HOME": str(tmp_path / "h")})
    assert s.model == str(tmp_path) and s.home == tmp_path / "h"
    assert Settings.from_env({}).model is None


def test_doctor_reports_every_check(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv("OSSAGENT_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rc = cli.main(["doctor"])
    out = capsys.readouterr().out
    for name in ("tokenizer", "torch", "sandbox", "chromium", "model"):
        assert name in out
    assert "o200k_harmony from" in out
    assert str(tmp_path / "models" / "gpt-oss-20b") in out  # where it looked for a model
    assert rc == 0


def test_model_found_in_configured_folder(tmp_path: Path) -> None:
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "config.json").write_text("{}")
    check = check_model(Settings(model=str(tmp_path), home=tmp_path / "home"))
    assert check.ok and str(tmp_path) in check.detail
    assert {c.name for c in run_checks(Settings(home=tmp_path))} == {
        "tokenizer", "torch", "kernels", "sandbox", "chromium", "model"}
