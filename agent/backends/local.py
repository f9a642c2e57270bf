"""The local engine as a :class:`~ossagent.agent.backends.base.Backend` (torch is imported only when used).

The engine keeps one KV cache and reuses the longest common prefix of consecutive prompts, so an agent
that resends the conversation each turn pays only for the new tokens (``cache_stats`` shows it).
One generation at a time: a new ``generate`` supersedes an unfinished one (the engine makes the old iterator
fail if it is resumed), so an abandoned stream can never block the next run; the server gives a local
backend a single slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ossagent.agent.backends.base import GenerationParams, default_encoding
from ossagent.agent.prompt import Prompt
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.model.engine import Engine
    from ossagent.model.hooks import StepHook


class LocalBackend:
    takes_hooks = True  # the Agent constrains decoding by default

    def __init__(self, engine: Engine, encoding: Any = None) -> None:
        self.engine = engine
        if encoding is None:
            encoding = default_encoding()
        self.encoding = encoding

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | None = None, tokenizer: str | None = None,
        tiktoken_cache_dir: str | None = None, progress: Callable[[str], None] | None = None,
        context: int | None = None,
    ) -> LocalBackend:
        """Load a model folder (Hugging Face or ``original/`` layout); ``progress`` gets status lines.
        ``context``: the KV cache's length in tokens (default: the model's, 131,072 for gpt-oss)."""
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
        engine = Engine.from_pretrained(folder, device=device, **({"max_len": context} if context else {}))
        say("model ready")
        return cls(engine, enc)

    @property
    def vocab_size(self) -> int:
        return int(self.engine.model.config.vocab_size)

    @property
    def context_window(self) -> int:
        """Tokens the KV cache holds (prompt and completion together)."""
        return int(self.engine.cache.max_len)

    @property
    def cache_stats(self) -> Any:
        return self.engine.cache_stats

    def generate(self, prompt: Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        from ossagent.model.engine import SamplingParams

        sp = SamplingParams(max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                            top_k=params.top_k, seed=params.seed, stop_tokens=tuple(params.stop_tokens))
        return self.engine.generate(prompt.tokens, sp, hook)
