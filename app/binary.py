"""Raw tensor bytes: the binary tensor data extension (REST) and gRPC raw_input/output_contents.

Layout (the Open Inference Protocol's): flat, row-major, little-endian; BOOL one byte per element;
BYTES each element as a 4-byte little-endian length followed by its bytes (UTF-8 text here).
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .model import BadRequest

NUMPY_TYPES = {"BOOL": "?", "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
               "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
               "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
_LEN = struct.Struct("<I")


def decode(datatype: Any, raw: bytes, where: str) -> list[Any]:
    """Raw bytes of one tensor -> a flat list of Python values (validated later like JSON data)."""
    if datatype == "BYTES":
        out: list[Any] = []
        i, n = 0, len(raw)
        while i < n:
            if i + 4 > n:
                raise BadRequest(f"{where}: binary BYTES data is truncated (element length at byte {i})")
            (size,) = _LEN.unpack_from(raw, i)
            i += 4
            if i + size > n:
                raise BadRequest(f"{where}: binary BYTES element of {size} bytes overruns the data")
            try:
                out.append(raw[i:i + size].decode("utf-8"))
            except UnicodeDecodeError:
                raise BadRequest(f"{where}: BYTES element is not valid UTF-8 text") from None
            i += size
        return out
    dtype = NUMPY_TYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise BadRequest(f"{where}: datatype {datatype!r} cannot be sent as binary data; use one of "
                         f"{', '.join(sorted(NUMPY_TYPES))} or BYTES")
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise BadRequest(f"{where}: {len(raw)} bytes of binary data is not a whole number of "
                         f"{datatype} elements")
    arr = np.frombuffer(raw, dtype=dtype)
    if datatype == "FP16":
        arr = arr.astype(np.float64)
    return arr.tolist()


def encode(datatype: str, values: Any) -> bytes:
    """A tensor's values -> raw bytes."""
    if datatype == "BYTES":
        parts = []
        for v in np.asarray(values, dtype=object).ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=NUMPY_TYPES[datatype]).tobytes()
