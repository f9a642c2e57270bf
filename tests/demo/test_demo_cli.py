"""The README's main job: ``ossagent run`` with no model configured uses the shipped demo model, says so in one
line, and answers a multi-step python task correctly through the real loop, tools and sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ossagent.agent.backends.discovery import demo_fallback
from ossagent.agent.settings import Settings
from ossagent.model.demo import DEMO_NOTICE, demo_model_dir


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # no configured or downloaded model: OSSAGENT_HOME and HF_HOME point at empty folders
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSSAGENT_")}
    env.update({"OSSAGENT_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}, **extra)
    return env


def test_demo_fallback_only_when_nothing_else_is_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ossagent.agent.cli.doctor import check_model
    from ossagent.model import demo

    # a stand-in demo folder, so the rules are checked whether or not this checkout ships the checkpoint
    fake = tmp_path / "demo_weights"
    fake.mkdir()
    (fake / "config.json").write_text("{}")
    (fake / "model.safetensors.index.json").write_text("{}")
    monkeypatch.setattr(demo, "DEMO_DIR", fake)
    bare = Settings(home=tmp_path / "home", hf_home=str(tmp_path / "hf"))
    assert demo_fallback(bare) == fake
    assert "demo model will be used" in check_model(bare).detail
    assert demo_fallback(bare, model=str(tmp_path)) is None
    assert demo_fallback(bare, remote="http://127.0.0.1:9/v1") is None
    assert demo_fallback(bare, scripted="s.json") is None
    off = Settings(home=tmp_path / "home", hf_home=str(tmp_path / "hf"), demo=False)
    assert demo_fallback(off) is None and not check_model(off).ok
    real = tmp_path / "home" / "models" / "gpt-oss-20b"  # a downloaded checkpoint wins over the demo
    real.mkdir(parents=True)
    (real / "config.json").write_text("{}")
    assert demo_fallback(bare) is None
    assert Settings.from_env({"OSSAGENT_DEMO": "0"}).demo is False
    assert Settings.from_env({}).demo is True
    (fake / "config.json").unlink()
    assert demo.demo_model_dir() is None  # an incomplete folder is no checkpoint


def test_main_job_runs_on_the_demo_model(tmp_path: Path) -> None:
    if demo_model_dir() is None:
        pytest.skip("this checkout carries no demo checkpoint (model/demo_weights)")
    ws = tmp_path / "ws"
    ws.mkdir()
    res = subprocess.run([sys.executable, "-m", "ossagent.agent.cli", "run", "--tools", "python",
                          "What is (973 - 61) * 657?"], capture_output=True, text=True, env=_env(tmp_path),
                         cwd=ws, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert DEMO_NOTICE in " ".join(res.stderr.split()), res.stderr
    assert "599184" in res.stdout  # (973 - 61) * 657, computed by the sandboxed python tool
    assert "python" in res.stderr  # the tool call was shown while it ran
