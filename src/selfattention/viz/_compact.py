"""How the report stores arrays: exact float32, or quantised and deflated for long inputs.

Encodings (one JSON object per array; ``data`` is base64, numbers little-endian):

- ``{"dtype": "f4", "data"}``: float32, exact to float32.
- ``{"dtype": "u2", "lo", "hi", "data"}``: uint16 steps between the array's min and max;
  |error| ≤ (hi - lo) / 131070 (7.6e-6 for weights in [0, 1]).
- ``{"dtype": "u1", "levels", "rows", "z": 1, "data"}``: per row r (the last axis), q = round(x /
  max_r · levels) in uint8, ``rows`` = the row maxima (float32); |error| ≤ max_r / (2 levels).
  For weights >= 0 only (softmax, ReLU); an array with negative values is stored as "u2".
  An attention row of 512 keys is mostly near 0, so after deflate (``"z": 1``, zlib format, what
  the browser's ``DecompressionStream("deflate")`` reads) a 512-token, 72-head model fits in
  about 7 MB with 255 levels.

``decode`` is the Python inverse (for tests and tools); report.js decodes the same way.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

__all__ = ["PRECISIONS", "decode", "describe", "encode", "tolerance"]

PRECISIONS = ("auto", "float32", "uint16", "uint8", "uint7")
_LEVELS = {"uint8": 255, "uint7": 127}


def _b64(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(
        np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    ).decode()


def encode(a: np.ndarray, precision: str) -> dict[str, Any]:
    """``a`` (any shape, rows on the last axis, values >= 0 for the uint8 kinds) as a JSON-ready
    dict in the given precision ("float32", "uint16", "uint8" or "uint7")."""
    a = np.asarray(a, dtype=np.float64)
    if precision == "float32":
        return {"dtype": "f4", "data": _b64(a, "float32")}
    if precision == "uint16":
        lo, hi = float(a.min()), float(a.max())
        q = np.round((a - lo) / (hi - lo) * 65535) if hi > lo else np.zeros_like(a)
        return {"dtype": "u2", "lo": lo, "hi": hi, "data": _b64(q, "uint16")}
    if precision not in _LEVELS:
        raise ValueError(f"precision must be one of {PRECISIONS[1:]}, got {precision!r}")
    if a.size and a.min() < 0:  # rows scaled by their maximum need weights >= 0
        return encode(a, "uint16")
    levels = _LEVELS[precision]
    top = a.max(axis=-1, keepdims=True) if a.size else np.zeros((*a.shape[:-1], 1))
    q = np.round(np.divide(a, top, out=np.zeros_like(a), where=top > 0) * levels)
    raw = np.ascontiguousarray(q, dtype=np.uint8).tobytes()
    return {
        "dtype": "u1",
        "levels": levels,
        "rows": _b64(top[..., 0], "float32"),
        "z": 1,
        "data": base64.b64encode(zlib.compress(raw, 6)).decode(),
    }


def decode(v: dict[str, Any]) -> np.ndarray:
    """The flat float64 array an ``encode`` dict holds (what the page shows)."""
    raw = base64.b64decode(v["data"])
    if v.get("z"):
        raw = zlib.decompress(raw)
    if v["dtype"] == "f4":
        return np.frombuffer(raw, "<f4").astype(np.float64)
    if v["dtype"] == "u2":
        return v["lo"] + np.frombuffer(raw, "<u2") * ((v["hi"] - v["lo"]) / 65535)
    q = np.frombuffer(raw, np.uint8).astype(np.float64)
    rows = np.frombuffer(base64.b64decode(v["rows"]), "<f4").astype(np.float64)
    return (q.reshape(len(rows), -1) * (rows[:, None] / v["levels"])).ravel()


def tolerance(a: np.ndarray, precision: str) -> np.ndarray | float:
    """The largest |decoded - a| the precision allows (per row for uint8/uint7), plus float32
    round-off."""
    a = np.asarray(a, dtype=np.float64)
    f32 = 2e-7 * float(np.abs(a).max(initial=0.0))
    if precision == "float32":
        return f32
    if precision == "uint16":
        return (a.max() - a.min()) / 131070 + f32
    return a.max(axis=-1, keepdims=True) / (2 * _LEVELS[precision]) + f32


def describe(v: dict[str, Any]) -> str:
    """One line for the page: what precision the weights of an ``encode`` dict are shown in."""
    if v["dtype"] == "f4":
        return "weights shown exactly (float32)"
    if v["dtype"] == "u2":
        return "weights stored as 16-bit steps: within 1/131070 of the map's range"
    bits = {255: 8, 127: 7}[v["levels"]]
    return (
        f"weights stored in {bits} bits per row: each within 1/{2 * v['levels']} of its "
        "row's largest weight"
    )
