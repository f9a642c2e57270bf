"""Run llama.cpp's own ``convert_hf_to_gguf.py`` on a checkpoint without a tokenizer (a stub vocabulary).

    python benchmarks/llamacpp_convert.py LLAMA_CPP_DIR MODEL_DIR OUTFILE OUTTYPE

The random-weight checkpoints have no tokenizer files, and only shapes matter for speed, so the vocabulary
is replaced by a stub of the model's size: GPT-2's 256 byte symbols (so llama.cpp finds its newline token),
then placeholders. Everything else (tensor names, MXFP4 repacking, ``OUTTYPE`` for the other weights) is
the converter's own code. Called by ``vs_llamacpp.py`` in a subprocess.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def byte_symbols() -> list[str]:
    """GPT-2's byte -> printable symbol table, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = 0
    out = {}
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def stub_vocab(model: Any) -> None:
    """Replacement for ``GptOssModel.set_vocab``: a gpt2-style vocabulary of the model's size."""
    import gguf

    n = int(model.hparams["vocab_size"])
    tokens = byte_symbols()
    tokens += [f"[PAD{i}]" for i in range(len(tokens), n)]
    w = model.gguf_writer
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * n)
    w.add_token_merges(["Ġ Ġ"])


def main() -> None:
    llama_dir, model_dir, outfile, outtype = sys.argv[1:5]
    sys.path[:0] = [llama_dir, str(Path(llama_dir) / "gguf-py")]
    import convert_hf_to_gguf
    from conversion import gpt_oss

    gpt_oss.GptOssModel.set_vocab = stub_vocab  # type: ignore[method-assign]
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", outfile, "--outtype", outtype]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
