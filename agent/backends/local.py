"""The local engine as a :class:`~ossagent.agent.backends.base.Backend` (torch is imported only when used).

Generation goes through a :class:`~ossagent.model.batch.BatchEngine`: up to ``slots`` sequences are decoded
together, one forward pass per step, so several agents, server requests or sub-tasks share one model at once.
Their KV caches live in a pool under ``kv_memory_gb``, keyed by token prefix: an agent that resends its
conversation each turn pays only for the new tokens, and a system prompt shared by many conversations is
computed once (``cache_stats`` shows it).

Each ``generate`` returns its own stream; close it when done (the agent loop does, in its ``finally``; a
stream dropped without ``close()`` frees its sequence when it is garbage-collected). Streams may be read from
different threads: whichever reader needs a token steps every active sequence, and hooks are called from that
thread, one at a time. Do not run ``engine.generate`` on the same model while the batch engine is in use: the
native kernels share one dequantisation buffer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ossagent.agent.backends.base import GenerationParams, default_encoding
from ossagent.agent.prompt import Prompt
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.model.batch import BatchEngine, Stream
    from ossagent.model.engine import Engine
    from ossagent.model.hooks import StepHook
    from ossagent.model.lora import LoraAdapters
    from ossagent.model.lora_batch import AdapterEngines

DEFAULT_KV_MEMORY_GB = 2.0
DEFAULT_SLOTS = 4  # concurrent sequences when the KV budget holds that many conversations of PLANNED_CONTEXT
PLANNED_CONTEXT = 8192  # tokens: a long agent conversation
_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:+-]*")


def conversation_bytes(engine: Engine, tokens: int = PLANNED_CONTEXT) -> int:
    """KV cache bytes of one conversation of ``tokens`` tokens: the sliding-window rings (fixed size) and their
    rollback snapshots, plus the full-attention layers' keys and values per token."""
    return engine.kv_bytes(tokens)


def default_slots(engine: Engine, kv_memory_gb: float) -> int:
    """:data:`DEFAULT_SLOTS`, or fewer when the KV budget holds fewer conversations of :data:`PLANNED_CONTEXT`
    tokens (at least one)."""
    fits = int(kv_memory_gb * 1e9 // max(1, conversation_bytes(engine)))
    return max(1, min(DEFAULT_SLOTS, fits))


class LocalBackend:
    takes_hooks = True  # the Agent constrains decoding by default

    def __init__(
        self, engine: Engine, encoding: Any = None, *, slots: int | None = 1,
        kv_memory_gb: float = DEFAULT_KV_MEMORY_GB, adapters: LoraAdapters | None = None,
    ) -> None:
        """``slots``: sequences decoded at once (None: :func:`default_slots`); ``kv_memory_gb``: the pool's budget
        for cached conversations (sequences in use may exceed it; idle ones are evicted, least recent first).
        ``adapters``: LoRA adapters attached unmerged to the engine's model, served by name (:meth:`for_adapter`;
        see :mod:`ossagent.model.lora_batch`)."""
        from ossagent.model.batch import BatchEngine

        if slots is None:
            slots = default_slots(engine, kv_memory_gb) if kv_memory_gb > 0 else 1
        if slots < 1:
            raise UserError(f"slots must be at least 1, not {slots}")
        if kv_memory_gb <= 0:
            raise UserError(f"--kv-memory must be a positive number of GB, not {kv_memory_gb}")
        self.engine = engine
        if encoding is None:
            encoding = default_encoding()
        self.encoding = encoding
        self.slots = slots
        self.adapter: str | None = None  # the adapter this backend decodes with (see for_adapter)
        self.engines: AdapterEngines | None = None
        if adapters is not None and adapters.names():
            from ossagent.model.lora_batch import AdapterEngines

            self.engines = AdapterEngines(engine, adapters, int(kv_memory_gb * 1e9), slots)
            self.batch: BatchEngine = self.engines[None]
        else:
            self.batch = BatchEngine(engine, kv_memory=int(kv_memory_gb * 1e9), max_batch=slots)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | None = None, tokenizer: str | None = None,
        tiktoken_cache_dir: str | None = None, progress: Callable[[str], None] | None = None,
        weights: str = "bf16",
        slots: int | None = 1, kv_memory_gb: float = DEFAULT_KV_MEMORY_GB, context: int | None = None,
        adapter: str | Path | Sequence[str] | None = None, attention: str = "plain",
    ) -> LocalBackend:
        """Load a model folder (Hugging Face or ``original/`` layout); ``progress`` gets status lines.
        ``weights``: "bf16" keeps the checkpoint's attention/unembedding weights, "int8" quantises them while
        loading (less memory, faster CPU decode; experts stay MXFP4 either way). ``attention``: "fused" takes
        torch's fused CPU kernel for prompt chunks (:func:`ossagent.model.engine.set_attention`). ``context``: the KV cache's length in tokens (default: the model's, 131,072 for gpt-oss)."""
        if weights not in ("bf16", "int8"):
            raise UserError(f"weights must be bf16 or int8, not {weights!r}")
        if attention not in ("plain", "fused"):
            raise UserError(f"attention must be plain or fused, not {attention!r}")
        merged, named = parse_adapters([str(adapter)] if isinstance(adapter, (str, Path)) else adapter or ())
        if merged is not None and weights != "bf16":
            raise UserError("--adapter merges a LoRA adapter into bf16 weights; use it with --weights bf16")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"model folder {folder} does not exist. Get gpt-oss-20b with `ossagent download openai/gpt-oss-20b`"
                " or pass the folder of a downloaded checkpoint."
            )
        from ossagent.model.engine import Engine
        from ossagent.model.tokenizer import load_tokenizer

        say = progress or (lambda _msg: None)
        say(f"loading tokenizer for {folder}")
        enc = load_tokenizer(tokenizer, folder, tiktoken_cache_dir).encoding
        say(f"loading weights from {folder} (device: {device or 'auto'})")
        engine = Engine.from_pretrained(folder, device=device, weights=weights, adapter=merged, attention=attention,
                                        **({"max_len": context} if context else {}))
        adapters = None
        if named:
            from ossagent.model.lora import AdapterError, attach_adapters

            say(f"loading adapters {', '.join(named)}")
            try:  # after the weight swaps (int8): the adapters ride on the final modules, unmerged
                adapters = attach_adapters(engine.model, dict(named), merge=False)
            except AdapterError as exc:
                raise UserError(str(exc)) from None
        say("model ready")
        return cls(engine, enc, slots=slots, kv_memory_gb=kv_memory_gb, adapters=adapters)

    @property
    def adapter_names(self) -> list[str]:
        """The LoRA adapters this backend serves by name (``serve --adapter NAME=DIR``)."""
        return self.engines.names if self.engines is not None else []

    def for_adapter(self, name: str | None) -> LocalBackend:
        """This backend decoding with adapter ``name`` (None: the base model): same model and encoding, that
        adapter's batch engine. Raises KeyError for a name it does not serve."""
        if name is None or name == self.adapter:
            return self
        if name not in self.adapter_names:
            raise KeyError(name)
        assert self.engines is not None
        view = copy.copy(self)
        view.batch, view.adapter = self.engines[name], name
        return view

    @property
    def vocab_size(self) -> int:
        return int(self.engine.model.config.vocab_size)

    @property
    def context_window(self) -> int:
        """Tokens the KV cache holds (prompt and completion together)."""
        return int(self.engine.cache.max_len)

    @property
    def cache_stats(self) -> Any:
        return self.batch.cache_stats

    @property
    def active(self) -> int:
        """Sequences in the batch engine(s) now (decoding, or waiting for a place)."""
        return self.engines.active if self.engines is not None else self.batch.active

    def takes_raw_prompts(self) -> bool:
        return True  # the engine continues any tokens

    def generate(self, prompt: Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        from ossagent.model.engine import SamplingParams

        sp = SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            top_k=params.top_k, seed=params.seed, stop_tokens=tuple(params.stop_tokens))
        return _closing(self.batch.generate(prompt.tokens, sp, hook))


def parse_adapters(values: Sequence[str]) -> tuple[Path | None, dict[str, Path]]:
    """``--adapter`` values: (the one plain ``DIR``, merged into the weights as they load; ``NAME=DIR`` ones,
    served unmerged by name). Each must be an adapter folder; a plain one and named ones do not mix (the named
    ones were trained on the base weights)."""
    merged: Path | None = None
    named: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        plain = not sep or not _ADAPTER_NAME.fullmatch(name) or Path(value).expanduser().is_dir()
        path = Path(value if plain else folder).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise UserError(f"{path} is not a LoRA adapter folder (no adapter_config.json; see ossagent finetune)")
        if plain:
            if merged is not None:
                raise UserError("give one --adapter DIR to merge, or several as --adapter NAME=DIR (serve)")
            merged = path
        elif name in named:
            raise UserError(f"two adapters named {name!r}")
        else:
            named[name] = path
    if merged is not None and named:
        raise UserError("--adapter DIR (merged) and --adapter NAME=DIR (served by name) do not mix: the named "
                        "adapters apply to the base weights")
    return merged, named


def one_adapter(values: str | Sequence[str] | None) -> str | None:
    """The adapter folder of run/chat's ``--adapter`` (merged): one value, ``DIR`` or ``NAME=DIR``."""
    if not values:
        return None
    merged, named = parse_adapters([values] if isinstance(values, str) else values)
    if merged is None and len(named) == 1:
        merged = next(iter(named.values()))
    if merged is None:
        raise UserError("several adapters are served by name by `ossagent serve`; run and chat take one --adapter")
    return str(merged)


def _closing(stream: Stream) -> Iterator[int]:
    """The stream as a generator: closing it (the agent loop does when a turn ends or its run is cancelled) or
    dropping it frees the sequence in the batch engine at once."""
    try:
        yield from stream
    finally:
        stream.close()
