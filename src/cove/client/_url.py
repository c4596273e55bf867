"""Percent-encoding for request paths and queries, as ``urllib.parse`` does it.

Design note: ``urllib.parse`` imports ``ipaddress`` and more (~2 ms, a
tenth of a ``cove exec``) for the two functions the client needs; these
give the same strings for ``str`` input (``tests/unit/test_client_url.py``
holds them to urllib's).
"""

from __future__ import annotations

__all__ = ["quote", "urlencode"]

_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """``urllib.parse.quote(text, safe)``: UTF-8, every byte but the
    unreserved ones and ``safe``'s as ``%XX``. UnicodeEncodeError for a lone
    surrogate, as urllib raises."""
    allowed = _ALWAYS_SAFE.union(safe.encode("ascii", "ignore"))
    data = text.encode("utf-8")
    if all(b in allowed for b in data):
        return text
    return "".join(chr(b) if b in allowed else f"%{b:02X}" for b in data)


def _quote_plus(text: str) -> str:
    return quote(text, " ").replace(" ", "+") if " " in text else quote(text, "")


def urlencode(query: dict[str, str]) -> str:
    """``urllib.parse.urlencode(query)`` for a dict of strings: ``k=v&...``,
    each quoted with spaces as ``+``."""
    return "&".join(f"{_quote_plus(str(k))}={_quote_plus(str(v))}" for k, v in query.items())
