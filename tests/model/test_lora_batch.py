"""Adapters served by name (model/lora_batch.py): each name's tokens are those of the model with that adapter
merged; the base name's are the base model's; prefix caches never cross names."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ossagent.model.batch import BatchEngine
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.gpt_oss import GptOss
from ossagent.model.lora import AdapterError, LoraAdapters, LoraConfig, attach_adapters
from ossagent.model.lora_batch import AdapterEngines

GREEDY = SamplingParams(max_tokens=12, temperature=0.0)


def _model(config: GptOssConfig) -> GptOss:
    model = GptOss(config, dtype=torch.float32)
    model.init_random(seed=3)
    return model.eval()


def saved_adapters(model: GptOss, folder: Path, targets: dict[str, tuple[str, ...]], std: float) -> dict[str, Path]:
    """Adapters of ``model`` saved in ``folder``, with random non-zero B (a fresh adapter changes nothing)."""
    src = LoraAdapters(model)
    out = {}
    for i, (name, covers) in enumerate(targets.items()):
        src.add(name, LoraConfig(rank=4, targets=covers), seed=i)
        g = torch.Generator().manual_seed(20 + i)
        with torch.no_grad():
            for p in src.parameters_of(name):
                p.copy_(torch.randn(p.shape, generator=g) * std)
        out[name] = src.save(name, folder / name)
    return out


def _adapters(config: GptOssConfig, folder: Path) -> dict[str, Path]:
    return saved_adapters(_model(config), folder, {"x": ("q", "v", "unembedding"), "y": ("k", "out")}, 0.3)


def _alone(model: GptOss, prompt: list[int]) -> list[int]:
    return list(Engine(model).generate(prompt, GREEDY))


def test_each_name_decodes_as_its_merged_model(config: GptOssConfig, tmp_path: Path) -> None:
    folders = _adapters(config, tmp_path)
    prompts = [[1, 5, 9, 14, 3, 7], [1, 5, 9, 22, 8]]  # a shared prefix: the pool would reuse it across names
    want: dict[str | None, list[list[int]]] = {None: [_alone(_model(config), p) for p in prompts]}
    for name, folder in folders.items():
        merged = _model(config)
        attach_adapters(merged, {name: folder})  # one adapter: merged into the weights
        want[name] = [_alone(merged, p) for p in prompts]
    assert want["x"] != want[None] and want["y"] != want[None] and want["x"] != want["y"]

    engine = Engine(_model(config))
    served = AdapterEngines(engine, attach_adapters(engine.model, dict(folders), merge=False), 1 << 24, max_batch=4)
    assert served.names == ["x", "y"]
    got: dict[tuple[str | None, int], list[int]] = {}

    def read(name: str | None, i: int) -> None:
        got[(name, i)] = list(served[name].generate(prompts[i], GREEDY))

    for round_ in range(2):  # the second round finds every prompt's prefix cached, under its own name only
        got.clear()
        threads = [threading.Thread(target=read, args=(n, i)) for n in (None, "x", "y") for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for name in (None, "x", "y"):
            assert [got[(name, i)] for i in range(2)] == want[name], (round_, name)
    assert served[None].cache_stats.total_reused > 0 and served["x"].cache_stats.total_reused > 0
    assert served.adapters.active is None and served.active == 0
    with pytest.raises(AdapterError, match=r"no adapter named 'z' \(served: x, y\)"):
        served["z"]


def test_kv_budget_split_and_foreign_adapters_refused(config: GptOssConfig, tmp_path: Path) -> None:
    folders = _adapters(config, tmp_path)
    engine = Engine(_model(config))
    served = AdapterEngines(engine, attach_adapters(engine.model, dict(folders), merge=False), 3000, max_batch=2)
    batches: list[BatchEngine] = list(served.engines.values())
    assert [b.pool.budget for b in batches] == [1000, 1000, 1000] and {b.max_batch for b in batches} == {2}
    other = attach_adapters(_model(config), dict(folders), merge=False)
    with pytest.raises(ValueError, match="engine's own model"):
        AdapterEngines(engine, other, 3000, max_batch=2)
