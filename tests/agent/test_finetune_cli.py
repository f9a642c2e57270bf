"""``ossagent finetune`` end to end on the demo model: data summary, training, adapter, merge, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ossagent.agent.cli.finetune import build_parser, finetune_main
from ossagent.agent.cli.main import main as ossagent_main
from ossagent.agent.settings import Settings
from ossagent.agent.transcript import Msg, Transcript, user
from ossagent.model.demo import demo_model_dir
from ossagent.model.loader import load_model
from ossagent.model.lora import LoraAdapters
from ossagent.tools.base import UserError

pytestmark = pytest.mark.skipif(demo_model_dir() is None, reason="the demo model is not in this checkout")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _runs(folder: Path, n: int = 6) -> Path:
    folder.mkdir()
    for i in range(n):
        Transcript([user(f"What is {i} plus {i}?"), Msg("assistant", f"Add {i} and {i}.", channel="analysis"),
                    Msg("assistant", str(2 * i), channel="final")],
                   {"reasoning": "low", "builtin_tools": ["python"]}).save(folder / f"t{i}.jsonl")
    return folder


def _main(*argv: str) -> int:
    return finetune_main(build_parser().parse_args(list(argv)), Settings())


def _ossagent(*argv: str) -> int:
    """``ossagent finetune ARGV`` through the real entry point."""
    return ossagent_main(["finetune", *argv])


def test_train_then_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _runs(tmp_path / "runs")
    out = tmp_path / "adapter"
    common = ["--model", "demo", "--data", str(runs), "--tools", "python", "--current-date", "2025-01-01"]
    assert _ossagent(*common, "--out", str(out), "--dry-run") == 0
    shown = capsys.readouterr().out
    assert "training examples               5" in shown and '+ "<|return|>"' in shown
    assert not out.exists()

    assert _main(*common, "--out", str(out), "--batch", "2", "--lr", "1e-2", "--held-out", "0.2") == 0
    printed = capsys.readouterr().out
    assert "steps 2 loss" in printed and "held-out (1 examples): loss" in printed
    adapters = LoraAdapters(load_model(demo_model_dir(), dtype=torch.float32))  # type: ignore[arg-type]
    assert adapters.load(out) == "adapter"

    merged = tmp_path / "merged"
    assert _main("--model", "demo", "--merge", str(out), "--out", str(merged)) == 0
    assert (merged / "config.json").is_file() and load_model(merged).config == adapters.config

    # --adapter (run/chat/serve/eval): merged as the weights load, the same weights as the merged checkpoint
    from ossagent.agent.backends.local import LocalBackend

    live = LocalBackend.from_pretrained(demo_model_dir(), adapter=out).engine.model.state_dict()
    saved = load_model(merged).state_dict()
    assert live.keys() == saved.keys()
    assert all(torch.equal(live[k], saved[k]) for k in live)
    with pytest.raises(UserError, match="bf16"):
        LocalBackend.from_pretrained(demo_model_dir(), adapter=out, weights="int8")
    capsys.readouterr()
    assert ossagent_main(["run", "x", "--model", str(demo_model_dir()), "--adapter", str(tmp_path), "-q"]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs")
    with pytest.raises(UserError, match="python"):  # the runs had python; its description was not given
        _main("--model", "demo", "--data", str(runs), "--out", str(tmp_path / "a"))
    with pytest.raises(UserError, match="give --data"):
        _main("--model", "demo", "--out", str(tmp_path / "a"))
    assert _ossagent("--model", "demo", "--out", str(tmp_path / "a")) == 2  # the CLI: one line, exit 2
    with pytest.raises(UserError, match="does not exist"):
        _main("--model", str(tmp_path / "nope"), "--data", str(runs), "--out", str(tmp_path / "a"))
    with pytest.raises(UserError, match="rank"):
        _main("--model", "demo", "--data", str(runs), "--tools", "python", "--rank", "0", "--out", str(tmp_path / "a"))
