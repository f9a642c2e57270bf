"""A memory-mapped safetensors reader that checks the file before trusting it.

The header is parsed here (8-byte little-endian length, JSON, then the data), so a truncated file or an entry
that points past the end is reported with the file and tensor name instead of a crash deep inside a read.
Tensors are zero-copy views of a private (copy-on-write) mapping: nothing is read until it is used, and pages
stay shared with the page cache.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import stat
import struct
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


class CheckpointError(ValueError):
    """A model folder is incomplete or inconsistent; the message names the file and the tensor."""


def _ints(value: object) -> list[int] | None:
    """``value`` when it is a JSON list of integers (not booleans, not floats), else None."""
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


MAX_HEADER = 100 << 20  # bytes of JSON header (the safetensors library's own limit)


class SafetensorsFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        raw, size = self._open()
        try:
            header = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise CheckpointError(f"{self.path}: corrupt safetensors header ({exc})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: corrupt safetensors header (a JSON {type(header).__name__}, "
                                  "not an object)")
        if not isinstance(header.pop("__metadata__", {}), dict):
            raise CheckpointError(f"{self.path}: corrupt safetensors header (__metadata__ is not an object)")
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            self.entries[name] = self._entry(name, info, size - self.data_start, size)
        spans = sorted((b, e, n) for n, (_, _, b, e) in self.entries.items() if e > b)
        for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
            if begin < end:
                raise CheckpointError(f"{self.path}: tensors {first!r} and {second!r} overlap in the file")

    def _open(self) -> tuple[bytes, int]:
        """The header bytes and the file size; the data mapped. Only a regular file is opened (a FIFO would
        block the open and the reads for ever)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise CheckpointError(f"{self.path}: file not found") from None
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot be opened ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CheckpointError(f"{self.path}: not a regular file")
            size = st.st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{self.path}: truncated file ({size} bytes, no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(
                    f"{self.path}: truncated file (header claims {n} bytes, file has {size - 8} after length)"
                )
            if n > MAX_HEADER:
                raise CheckpointError(f"{self.path}: safetensors header of {n:,} bytes (more than {MAX_HEADER:,})")
            raw = f.read(n)
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None
        self.data_start = 8 + n
        return raw, size

    def _entry(self, name: str, info: object, avail: int, size: int) -> tuple[torch.dtype, tuple[int, ...], int, int]:
        def bad(why: str) -> CheckpointError:
            return CheckpointError(f"{self.path}: tensor {name!r}: {why}")

        if not isinstance(info, dict):
            raise bad(f"malformed header entry {info!r}")
        dtype_name = info.get("dtype")
        dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
        shape, offsets = _ints(info.get("shape")), _ints(info.get("data_offsets"))
        if dtype is None or shape is None or offsets is None or len(offsets) != 2:
            raise bad(f"malformed or unsupported header entry {info}")
        begin, end = offsets
        if any(s < 0 for s in shape) or not 0 <= begin <= end:
            raise bad(f"negative sizes or offsets {info}")
        numel = 1
        for s in shape:
            numel *= s
        if end - begin != numel * dtype.itemsize:
            raise bad(f"{end - begin} bytes for shape {list(shape)} {info['dtype']}")
        if end > avail:
            raise CheckpointError(
                f"{self.path}: truncated file: tensor {name!r} needs data up to byte {self.data_start + end}, "
                f"file has {size} bytes"
            )
        return dtype, tuple(shape), begin, end

    def keys(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> torch.Tensor:
        dtype, shape, begin, end = self.entries[name]
        if end == begin or self._mm is None:
            return torch.empty(shape, dtype=dtype)
        t = torch.frombuffer(self._mm, dtype=dtype, count=(end - begin) // dtype.itemsize,
                             offset=self.data_start + begin)
        return t.view(shape)
