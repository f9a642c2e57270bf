"""The engine: owns a model, its KV cache and sampling; streams token ids.

A caller that sends the whole conversation each turn pays only for the new tokens: the cache is cut back to the
longest common prefix with what it holds (``cache_stats`` shows how many tokens were reused). Prompts are fed
in chunks of ``chunk_size``; decoding feeds one token (or one chunk of hook-forced tokens) per step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ossagent.model.cache import CacheStats, KVCache, planned_nbytes
from ossagent.model.gpt_oss import GptOss
from ossagent.model.hooks import StepHook
from ossagent.model.loader import load_model


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop_tokens: Sequence[int] = ()

    def validate(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


def sample(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None,
    mask: torch.Tensor | None = None,
) -> int:
    """One token from fp32 logits [V]: mask, then greedy or temperature / top-k / top-p sampling."""
    logits = logits.float().cpu()
    if mask is not None:
        allowed = _fit_mask(mask.cpu(), logits.shape[0])
        if params.temperature == 0:
            best = int(torch.argmax(logits))
            if bool(allowed[best]):  # the first maximum is allowed, so it is the masked argmax too
                return best  # (most steps of a free body: no pass over the vocabulary for the mask)
        if not bool(allowed.any()):
            raise ValueError("the step hook's mask allows no token of this model's vocabulary")
        logits = logits.masked_fill(~allowed, float("-inf"))
    if params.temperature == 0:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[0]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better tokens
        drop = before >= params.top_p  # keeps the smallest prefix reaching top_p (at least one token)
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def check_prompt(tokens: Sequence[int], vocab: int) -> list[int]:
    """The prompt as a list of ints; ValueError when it is empty or has ids outside the vocabulary."""
    tokens = [int(t) for t in tokens]
    if not tokens:
        raise ValueError("the prompt is empty")
    bad = [t for t in tokens if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"token ids outside the model's vocabulary (0..{vocab - 1}): {bad[:5]}")
    return tokens


#: the attention paths a model can take for prefill chunks (see :func:`set_attention`)
ATTENTION_PATHS = ("plain", "fused")


def set_attention(model: GptOss, path: str) -> None:
    """Choose how ``model`` attends for prompt chunks of 16 or more tokens on the CPU (one-token decode steps take
    the native decode kernel where ``accelerate`` switched it on, else the plain path). "plain": fp32 logits and softmax with the sink column, chunk by chunk (the default). "fused":
    torch's fused CPU flash kernel with the sinks applied from its logsumexp, 3-7x faster attention for long
    prompts and at depth (``benchmarks/attention.py``). In bf16 the fused path rounds differently (it is closer to
    fp32), so a prompt row's result, and rarely a greedy token, depends on whether its chunk had 16 tokens or
    more: the batch engine and ``Engine.generate`` then agree only up to that rounding."""
    if path not in ATTENTION_PATHS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, not {path!r}")
    for block in model.blocks:
        block.attn.fused = path == "fused"  # type: ignore[union-attr]


def _fit_mask(mask: torch.Tensor, vocab: int) -> torch.Tensor:
    mask = mask.to(torch.bool).reshape(-1)
    if mask.shape[0] >= vocab:
        return mask[:vocab]  # ids past the model's vocabulary can never be produced
    return torch.cat([mask, torch.zeros(vocab - mask.shape[0], dtype=torch.bool)])


class Engine:
    def __init__(
        self, model: GptOss, max_len: int | None = None, chunk_size: int = 512, rollback: int = 2048,
        snapshot_every: int = 1024,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.chunk_size = chunk_size
        self.cache_args = dict(max_len=max_len, rollback=rollback, snapshot_every=snapshot_every)
        self.cache = self.new_cache()
        self.tokens: list[int] = []  # exactly what the cache holds
        self.cache_stats = CacheStats()
        self._generation = itertools.count()
        self._active = -1

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
        layout: str | None = None,
        native_kernels: bool = True,
        int8: bool = False,
        weights: str = "bf16",
        adapter: str | Path | None = None,
        attention: str = "plain",
        **kwargs: int,
    ) -> Engine:
        """Load a model folder (HF or original layout). device None: CUDA when present, else CPU.

        On CPU, ``native_kernels`` builds (first use) and uses the MXFP4 expert kernels. ``weights="int8"`` (or
        ``int8=True``) stores the attention and unembedding weights in 8 bits, quantised while loading
        (see ossagent.model.loader.load_model); "bf16" keeps the checkpoint's. ``adapter``: a LoRA adapter folder
        (``ossagent finetune``) merged into the weights as they load. ``attention``: "plain" (default) or "fused"
        (see :func:`set_attention`)."""
        if attention not in ATTENTION_PATHS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_PATHS)}, not {attention!r}")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if adapter is not None and (int8 or weights != "bf16"):
            raise ValueError("a LoRA adapter is merged into bf16 weights: load with weights='bf16'")
        model = load_model(path, device=device, dtype=dtype, layout=layout, weights="int8" if int8 else weights)
        if adapter is not None:  # folded into the attention/router/unembedding weights: no cost per token
            from ossagent.model.lora import attach_adapters

            attach_adapters(model, {Path(adapter).name or "adapter": adapter}, merge=True)
        if native_kernels and torch.device(device).type == "cpu":
            from ossagent.model.kernels.accelerate import accelerate

            accelerate(model, int8=int8)
        set_attention(model, attention)
        return cls(model, **kwargs)  # type: ignore[arg-type]

    def new_cache(self) -> KVCache:
        """An empty cache shaped like this engine's own (the batch engine's pool makes its entries so)."""
        return KVCache(self.model.config, max_chunk=self.chunk_size, device=self.device, dtype=self.model.dtype,
                       **self.cache_args)  # type: ignore[arg-type]

    def kv_bytes(self, tokens: int) -> int:
        """Bytes of one of :meth:`new_cache`'s caches once it holds ``tokens`` positions (see
        :func:`~ossagent.model.cache.planned_nbytes`)."""
        args = self.cache_args
        return planned_nbytes(self.model.config, min(tokens, self.cache.max_len), max_chunk=self.chunk_size,
                              rollback=int(args["rollback"] or 0), snapshot_every=int(args["snapshot_every"] or 1),
                              itemsize=self.model.dtype.itemsize)

    # ------------------------------------------------------------------------------------------- model calls
    @torch.no_grad()
    def _feed(self, tokens: Sequence[int]) -> torch.Tensor:
        """Append tokens to the cache; returns the logits after the last one (fp32 [V])."""
        logits = None
        for a in range(0, len(tokens), self.chunk_size):
            chunk = list(tokens[a : a + self.chunk_size])
            x = torch.tensor(chunk, dtype=torch.long, device=self.device)
            try:
                logits = self.model(x, self.cache, last_only=True)[-1]
            except BaseException:
                self.reset()  # a half-written chunk leaves layers out of step
                raise
            self.tokens.extend(chunk)
        assert logits is not None
        return logits.float()

    def prefill(self, tokens: Sequence[int]) -> torch.Tensor:
        """Make the cache hold ``tokens``, reusing the longest common prefix; logits after the last token."""
        tokens = check_prompt(tokens, self.model.config.vocab_size)
        lcp = 0
        for a, b in zip(self.tokens, tokens, strict=False):
            if a != b:
                break
            lcp += 1
        keep = self.cache.truncate(min(lcp, len(tokens) - 1))  # the last token is fed again for its logits
        del self.tokens[keep:]
        logits = self._feed(tokens[keep:])
        self.cache_stats.count(keep, len(tokens) - keep)
        return logits

    @torch.no_grad()
    def logits(self, tokens: Sequence[int]) -> torch.Tensor:
        """Logits [T, V] (fp32) for every position of ``tokens``, computed from scratch; the cache is untouched."""
        x = torch.tensor(list(tokens), dtype=torch.long, device=self.device)
        return self.model(x).float()

    def reset(self) -> None:
        self.cache.reset()
        self.tokens.clear()

    # ------------------------------------------------------------------------------------------- generation
    def generate(
        self, prompt: Sequence[int], params: SamplingParams, hook: StepHook | None = None
    ) -> Iterator[int]:
        """Yield generated token ids; a stop token is yielded last. One generation at a time per engine."""
        params.validate()
        gen_id = next(self._generation)
        self._active = gen_id
        return self._generate(gen_id, list(prompt), params, hook)

    def _generate(
        self, gen_id: int, prompt: list[int], params: SamplingParams, hook: StepHook | None
    ) -> Iterator[int]:
        stops = set(params.stop_tokens)
        generator = None
        if params.seed is not None:
            generator = torch.Generator().manual_seed(params.seed)

        def check() -> None:
            if self._active != gen_id:
                raise RuntimeError("another generate() call started on this engine; this one is no longer valid")

        check()
        logits = self.prefill(prompt)
        generated: list[int] = []
        while len(generated) < params.max_tokens:
            mask = None
            if hook is not None:
                action = hook.step(generated)
                if action.stop:
                    return
                if action.forced:
                    forced = [int(t) for t in action.forced][: params.max_tokens - len(generated)]
                    for j, t in enumerate(forced):
                        if t in stops:
                            forced = forced[: j + 1]
                            break
                    for t in forced:
                        generated.append(t)
                        yield t
                    if forced[-1] in stops or len(generated) >= params.max_tokens:
                        return
                    check()
                    logits = self._feed(forced)  # one chunk, no sampling; then ask the hook again
                    continue
                mask = action.mask
            token = sample(logits, params, generator, mask)
            generated.append(token)
            yield token
            if token in stops or len(generated) >= params.max_tokens:
                return
            check()
            logits = self._feed([token])
