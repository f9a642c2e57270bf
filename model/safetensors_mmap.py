"""A memory-mapped safetensors reader that checks the file before trusting it.

The header is parsed here (8-byte little-endian length, JSON, then the data), so a truncated file or an entry
that points past the end is reported with the file and tensor name instead of a crash deep inside a read.
Tensors are zero-copy views of a private (copy-on-write) mapping: nothing is read until it is used, and pages
stay shared with the page cache.
"""

from __future__ import annotations

import json
import mmap
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


class SafetensorsFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise CheckpointError(f"{self.path}: truncated file ({size} bytes, no safetensors header)")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise CheckpointError(
                        f"{self.path}: truncated file (header claims {n} bytes, file has {size - 8} after length)"
                    )
                raw = f.read(n)
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None
        except FileNotFoundError:
            raise CheckpointError(f"{self.path}: file not found") from None
        try:
            header = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{self.path}: corrupt safetensors header ({exc})") from None
        header.pop("__metadata__", None)
        self.data_start = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        avail = size - self.data_start
        for name, info in header.items():
            try:
                dtype = DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.path}: tensor {name!r}: malformed or unsupported header entry {info}") from None
            numel = 1
            for s in shape:
                numel *= s
            if end - begin != numel * dtype.itemsize:
                raise CheckpointError(
                    f"{self.path}: tensor {name!r}: {end - begin} bytes for shape {list(shape)} {info['dtype']}"
                )
            if end > avail:
                raise CheckpointError(
                    f"{self.path}: truncated file: tensor {name!r} needs data up to byte {self.data_start + end}, "
                    f"file has {size} bytes"
                )
            self.entries[name] = (dtype, shape, begin, end)

    def keys(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> torch.Tensor:
        dtype, shape, begin, end = self.entries[name]
        if end == begin or self._mm is None:
            return torch.empty(shape, dtype=dtype)
        t = torch.frombuffer(self._mm, dtype=dtype, count=(end - begin) // dtype.itemsize,
                             offset=self.data_start + begin)
        return t.view(shape)
