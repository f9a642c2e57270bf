"""Adapters served by name (`ossagent serve --adapter NAME=DIR`): through the real HTTP server and the official
client, a request by an adapter's name decodes as the model with that adapter merged, the base name as the base
model; /v1/models lists the adapters; an unknown name is a 404."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch

from ossagent.agent.backends.local import LocalBackend
from ossagent.agent.cli.main import main
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread
from ossagent.model.engine import Engine
from ossagent.model.loader import load_model
from ossagent.model.lora import attach_adapters
from tests.agent.test_cli_serve_local import served
from tests.model.test_lora_batch import saved_adapters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two adapters of the tiny model, with random non-zero B."""
    return saved_adapters(load_model(tiny_model, dtype=torch.float32), tmp_path_factory.mktemp("adapters"),
                          {"sql": ("q", "v", "unembedding"), "math": ("k", "out")}, 0.5)


def _engine(tiny_model: Path, adapter: Path | None = None) -> Engine:
    """fp32, so the merged and unmerged sums round alike (greedy ties of a random model are close)."""
    return Engine.from_pretrained(tiny_model, device="cpu", dtype=torch.float32, native_kernels=False,
                                  adapter=adapter)


@pytest.fixture(scope="module")
def servers(tiny_model: Path, adapters: dict[str, Path]) -> Iterator[dict[str, RunningServer]]:
    """``named``: the base model serving both adapters by name; ``merged``: sql merged at load; ``base``."""
    named = _engine(tiny_model)
    backends = {
        "named": LocalBackend(named, adapters=attach_adapters(named.model, dict(adapters), merge=False), slots=2),
        "merged": LocalBackend(_engine(tiny_model, adapters["sql"])),
        "base": LocalBackend(_engine(tiny_model)),
    }
    running = {k: start_in_thread(create_app(ServerConfig(backend=b, model_id="tiny", encoding=b.encoding, slots=2,
                                                          reasoning_budget=6, default_max_tokens=40)))
               for k, b in backends.items()}
    yield running
    for r in running.values():
        r.stop()


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def _chat(server: RunningServer, model: str) -> tuple[str, dict[str, Any], int]:
    r = _client(server).chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi there"}],
                                                temperature=0, max_tokens=40)
    assert r.usage is not None
    return r.model, r.choices[0].message.model_dump(), r.usage.completion_tokens


def test_requests_by_adapter_name_decode_as_the_merged_model(servers: dict[str, RunningServer]) -> None:
    named, merged, base = servers["named"], servers["merged"], servers["base"]
    by_name = _chat(named, "sql")
    assert by_name[0] == "sql"
    assert by_name[1:] == _chat(merged, "tiny")[1:]
    assert _chat(named, "tiny") == _chat(base, "tiny")
    assert by_name[1] != _chat(named, "tiny")[1]  # the adapter changes what the model writes
    assert _chat(named, "math")[1] not in (by_name[1], _chat(named, "tiny")[1])
    # the Responses API resolves the name the same way
    client = _client(named)
    r = client.responses.create(model="sql", input="Hi there", temperature=0, max_output_tokens=40)
    assert r.model == "sql"
    assert r.output_text == _client(merged).responses.create(model="tiny", input="Hi there", temperature=0,
                                                            max_output_tokens=40).output_text
    # and so do raw completions
    raw = client.completions.create(model="sql", prompt="Hi there", max_tokens=12, temperature=0)
    assert raw.model == "sql"
    assert raw.choices[0].text == _client(merged).completions.create(model="tiny", prompt="Hi there", max_tokens=12,
                                                                     temperature=0).choices[0].text
    assert raw.choices[0].text != _client(base).completions.create(model="tiny", prompt="Hi there", max_tokens=12,
                                                                   temperature=0).choices[0].text


def test_models_lists_each_adapter_and_unknown_names_are_404(servers: dict[str, RunningServer]) -> None:
    client = _client(servers["named"])
    assert [m.id for m in client.models.list().data] == ["tiny", "sql", "math"]
    assert client.models.retrieve("math").model_dump()["parent"] == "tiny"
    assert [m.id for m in _client(servers["base"]).models.list().data] == ["tiny"]
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="sq1", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    body: Any = err.value.body
    assert body["code"] == "model_not_found"
    assert body["message"] == "The model 'sq1' does not exist; this server serves 'tiny', 'sql', 'math'."
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sq1")


def test_serve_cli_loads_named_adapters(tiny_model: Path, adapters: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    server = served(monkeypatch, ["--model", str(tiny_model), "--adapter", f"sql={adapters['sql']}",
                                  "--adapter", f"math={adapters['math']}", "--kv-memory", "0.3"])
    backend = server.config.backend
    assert backend.adapter_names == ["sql", "math"]
    assert [b.pool.budget for b in backend.engines.engines.values()] == [100_000_000] * 3  # the budget, split
    assert backend.for_adapter("sql").batch is backend.engines["sql"] and backend.for_adapter(None) is backend

    def refused(*argv: str) -> str:
        assert main([*argv, "--model", str(tiny_model), "-q"]) == 2
        return " ".join(capsys.readouterr().err.split())

    assert "do not mix" in refused("serve", "--port", "0", "--adapter", str(adapters["sql"]),
                                   "--adapter", f"math={adapters['math']}")
    assert "two adapters named 'sql'" in refused("serve", "--port", "0", "--adapter", f"sql={adapters['sql']}",
                                                 "--adapter", f"sql={adapters['math']}")
    assert "is not a LoRA adapter folder" in refused("serve", "--port", "0", "--adapter", f"sql={tiny_model}")
    assert "run and chat take one --adapter" in refused("run", "x", "--adapter", f"a={adapters['sql']}",
                                                        "--adapter", f"b={adapters['math']}")
