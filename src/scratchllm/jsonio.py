"""The one JSON reader for files that come from elsewhere: bounded depth, size and values.

Python's ``json`` parses nested arrays by recursion, so ``[[[[...]]]]`` 100,000 deep ends in a
``RecursionError`` (or, with a raised recursion limit, a crash); it also accepts ``NaN`` and
``Infinity``, and a 5,000-digit number raises a bare ``ValueError``. ``loads_json`` turns every
one of these into one ``ScratchLLMError`` naming the file: nesting beyond ``MAX_DEPTH`` levels
is refused (the parser's own recursion stops it early; with a raised recursion limit a linear,
vectorised scan of the brackets runs first), and so are the non-standard constants::

    >>> loads_json('{"n_layer": 12}', "config.json")
    {'n_layer': 12}
    >>> loads_json("[" * 100 + "]" * 100, "x.json")
    Traceback (most recent call last):
    ...
    scratchllm.errors.ScratchLLMError: x.json: JSON nested deeper than 64 levels; refusing to use it

``read_json(path, what=..., expect=dict)`` reads a file (at most ``max_bytes``) the same way
and checks the top-level type.
"""
from __future__ import annotations

import functools
import json
import os
import sys

from .backend import xp
from .errors import ScratchLLMError, reading

__all__ = ["MAX_DEPTH", "MAX_BYTES", "loads_json", "read_json", "json_depth"]

MAX_DEPTH = 64
MAX_BYTES = 1 << 30
_SAFE_RECURSION = 20_000   # below this recursion limit json.loads stops deep nesting with a RecursionError


@functools.lru_cache(maxsize=1)
def _steps():
    """byte -> +1 for an opening bracket, -1 for a closing one, 0 otherwise."""
    table = xp.zeros(256, dtype=xp.int8)
    table[[ord("["), ord("{")]] = 1
    table[[ord("]"), ord("}")]] = -1
    return table


def json_depth(data) -> int:
    """Deepest bracket nesting of JSON text (str or UTF-8 bytes), brackets inside strings ignored.

    Linear and vectorised: a quote is escaped when an odd run of backslashes precedes it; a
    bracket is inside a string when an odd number of unescaped quotes precede it. (UTF-8
    multi-byte characters never contain these ASCII bytes, so bytes are scanned directly.)
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    arr = xp.frombuffer(data, dtype=xp.uint8)
    steps = _steps()[arr]
    where = xp.flatnonzero(steps)
    if where.size == 0:
        return 0
    quotes = xp.flatnonzero(arr == 34)
    slashes = xp.flatnonzero(arr == 92)
    if slashes.size and quotes.size:
        run_start = slashes[xp.r_[True, xp.diff(slashes) != 1]]         # first backslash of each run
        run_end = slashes[xp.r_[xp.diff(slashes) != 1, True]]           # last backslash of each run
        k = xp.searchsorted(run_end, quotes - 1)                        # the run ending right before?
        k_ok = k < run_end.size
        before = xp.zeros(quotes.size, dtype=xp.int64)
        hit = k_ok.copy()
        hit[k_ok] = run_end[k[k_ok]] == quotes[k_ok] - 1
        before[hit] = quotes[hit] - run_start[k[hit]]
        quotes = quotes[before % 2 == 0]
    inside = xp.searchsorted(quotes, where) % 2 == 1
    return int(xp.cumsum(steps[where][~inside], dtype=xp.int64).max(initial=0))


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (only finite numbers are)")


def loads_json(text, source: str, what: str = "JSON", max_depth: int = MAX_DEPTH,
               expect: type | tuple | None = None):
    """Parse JSON text (str or bytes); ``source`` names the file in errors.

    ``expect``: the type the top level must have (``None``: any).
    """
    if sys.getrecursionlimit() > _SAFE_RECURSION:    # json's C parser recurses: scan first
        depth = json_depth(text)
        if depth > max_depth:
            raise ScratchLLMError(f"{source}: JSON nested deeper than {max_depth} levels ({depth}); refusing "
                                  f"to parse it")
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ScratchLLMError(f"{_subject(source, what)} is not UTF-8 text ({e.reason} at byte "
                                  f"{e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ScratchLLMError(f"{_subject(source, what)} is not valid JSON ({e.msg} at line {e.lineno} "
                              f"column {e.colno})") from None
    except RecursionError:
        raise ScratchLLMError(f"{source}: JSON nested deeper than {max_depth} levels; refusing to parse it") from None
    except (ValueError, OverflowError) as e:   # Infinity, 5000-digit numbers
        raise ScratchLLMError(f"{_subject(source, what)} is not valid JSON ({str(e)[:100]})") from None
    depth = _value_depth(value, max_depth)
    if depth > max_depth:
        raise ScratchLLMError(f"{source}: JSON nested deeper than {max_depth} levels; refusing to use it")
    if expect is not None and not isinstance(value, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        kind = {"dict": "a JSON object", "list": "a JSON array"}.get(names, names)
        raise ScratchLLMError(f"{_subject(source, what)} must be {kind}, got {_json_kind(value)}")
    return value


def _value_depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, walked without recursion; stops once past ``limit``."""
    stack, deepest = [(value, 1)], 0
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v)
                         if isinstance(x, (dict, list)))
    return deepest


def _subject(source: str, what: str) -> str:
    return f"{source}: the {what}" if what not in ("JSON", "JSON file") else f"{source}: the file"


def read_json(path, what: str = "JSON file", expect: type | tuple | None = dict,
              max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH):
    """Read and parse a JSON file; one ``ScratchLLMError`` naming ``path`` for every problem.

    ``expect``: the type the top level must have (``dict`` by default, ``None`` for any).
    """
    path = os.fspath(path)
    with reading(path, what), open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ScratchLLMError(f"{path}: {what} is larger than {max_bytes} bytes; refusing to parse it")
        raw = f.read() if size else f.read(max_bytes + 1)   # (read(n) would allocate n bytes first)
    if len(raw) > max_bytes:
        raise ScratchLLMError(f"{path}: {what} is larger than {max_bytes} bytes; refusing to parse it")
    return loads_json(raw, path, what, max_depth, expect)


def _json_kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
