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

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ossagent.agent.backends.base import GenerationParams, default_encoding
from ossagent.agent.prompt import Prompt
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.model.batch import BatchEngine, Stream
    from ossagent.model.engine import Engine
    from ossagent.model.hooks import StepHook

DEFAULT_KV_MEMORY_GB = 2.0
DEFAULT_SLOTS = 4  # concurrent sequences when the KV budget holds that many conversations of PLANNED_CONTEXT
PLANNED_CONTEXT = 8192  # tokens: a long agent conversation


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
        kv_memory_gb: float = DEFAULT_KV_MEMORY_GB,
    ) -> None:
        """``slots``: sequences decoded at once (None: :func:`default_slots`); ``kv_memory_gb``: the pool's budget
        for cached conversations (sequences in use may exceed it; idle ones are evicted, least recent first)."""
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
        self.batch: BatchEngine = BatchEngine(engine, kv_memory=int(kv_memory_gb * 1e9), max_batch=slots)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | None = None, tokenizer: str | None = None,
        tiktoken_cache_dir: str | None = None, progress: Callable[[str], None] | None = None,
        weights: str = "bf16",
        slots: int | None = 1, kv_memory_gb: float = DEFAULT_KV_MEMORY_GB, context: int | None = None,
        adapter: str | Path | None = None,
    ) -> LocalBackend:
        """Load a model folder (Hugging Face or ``original/`` layout); ``progress`` gets status lines.
        ``weights``: "bf16" keeps the checkpoint's attention/unembedding weights, "int8" quantises them while
        loading (less memory, faster CPU decode; experts stay MXFP4 either way). ``context``: the KV cache's length in tokens (default: the model's, 131,072 for gpt-oss)."""
        if weights not in ("bf16", "int8"):
            raise UserError(f"weights must be bf16 or int8, not {weights!r}")
        if adapter is not None and weights != "bf16":
            raise UserError("--adapter merges a LoRA adapter into bf16 weights; use it with --weights bf16")
        if adapter is not None and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise UserError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json; see ossagent finetune)")
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
        engine = Engine.from_pretrained(folder, device=device, weights=weights,
                                        adapter=Path(adapter).expanduser() if adapter is not None else None,
                                        **({"max_len": context} if context else {}))
        say("model ready")
        return cls(engine, enc, slots=slots, kv_memory_gb=kv_memory_gb)

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
        """Sequences in the batch engine now (decoding, or waiting for a place)."""
        return self.batch.active

    def takes_raw_prompts(self) -> bool:
        return True  # the engine continues any tokens

    def generate(self, prompt: Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        from ossagent.model.engine import SamplingParams

        sp = SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            top_k=params.top_k, seed=params.seed, stop_tokens=tuple(params.stop_tokens))
        return _closing(self.batch.generate(prompt.tokens, sp, hook))


def _closing(stream: Stream) -> Iterator[int]:
    """The stream as a generator: closing it (the agent loop does when a turn ends or its run is cancelled) or
    dropping it frees the sequence in the batch engine at once."""
    try:
        yield from stream
    finally:
        stream.close()
