"""``json.loads`` and ``json.dumps`` for the client, without importing ``json``.

Design note: the ``json`` package imports ``re`` (for its pure-Python
scanner and encoder, which CPython does not use) and with it ``enum`` and
``functools``: ~3 ms of every ``cove`` command on an idle machine, ~8 ms on a
loaded one. The C accelerator ``_json`` that ``json`` itself calls is used
here directly, set up as ``json``'s default decoder and encoder set it up,
so every value decodes and encodes to the same result. Every failure (bad
JSON, extra data, a value that cannot be encoded) and every input this does
not handle (bytes in another encoding than UTF-8, a BOM, another
interpreter without ``_json``) is handed to ``json`` itself, which then
raises or answers exactly as it always did (``tests/unit/test_client_json.py``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json as _c
except ImportError:  # another interpreter: json's own code
    _c = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]


class _Decoding:
    """The attributes ``_json.make_scanner`` reads (json.JSONDecoder()'s)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_scan: Any = _c.make_scanner(_Decoding()) if _c is not None else None  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE


def _json() -> Any:
    import json

    return json


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads(data)``: the same value, or the same exception."""
    if _scan is None:
        return _json().loads(data)
    if isinstance(data, (bytes, bytearray)):
        if data[:3] == b"\xef\xbb\xbf" or b"\x00" in data[:4]:
            return _json().loads(data)  # a BOM or UTF-16/32: json's detect_encoding
        text = data.decode("utf-8", "surrogatepass")
    elif isinstance(data, str):
        text = data
    else:
        return _json().loads(data)  # json raises its TypeError
    if text.startswith("\ufeff"):
        return _json().loads(data)
    n = len(text)
    i = 0
    while i < n and text[i] in _WHITESPACE:
        i += 1
    try:
        value, end = _scan(text, i)
    except StopIteration:
        return _json().loads(data)  # "Expecting value": json raises it
    while end < n and text[end] in _WHITESPACE:
        end += 1
    if end != n:
        return _json().loads(data)  # "Extra data"
    return value


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """``json.dumps(obj)`` (ASCII, ``", "`` and ``": "``): the same text or
    the same exception."""
    if _c is None:
        return str(_json().dumps(obj))
    if isinstance(obj, str):
        return str(_c.encode_basestring_ascii(obj))
    # A new encoder each time, as json makes one: its circular-reference
    # markers must start empty.
    encode = _c.make_encoder({}, _default, _c.encode_basestring_ascii, None, ": ", ", ",
                             False, False, True)
    try:
        return "".join(encode(obj, 0))
    except (TypeError, ValueError, RecursionError):
        return str(_json().dumps(obj))  # json raises the same error, its words
