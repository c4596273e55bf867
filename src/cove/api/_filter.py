"""LXD's ``?filter=`` language (the ``api_filtering`` extension) over wire objects."""

from __future__ import annotations

import re

from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["filter_objects"]


class _Clause:
    """One ``[not] FIELD OP VALUE``. (A plain class: the CLI imports this
    module, and ``dataclasses`` costs it ~6 ms of imports.)"""

    __slots__ = ("field", "logical", "negate", "op", "value")

    def __init__(self, logical: str, negate: bool, field: str, op: str, value: str) -> None:
        self.logical = logical  # how it joins what came before: "and" or "or"
        self.negate = negate
        self.field = field
        self.op = op
        self.value = value


def _parse_filter(text: str) -> list[_Clause]:
    """LXD's filter grammar: ``[not] FIELD eq|ne VALUE [and|or ...]``, left to
    right, values may be double-quoted."""
    parts = text.split()
    clauses: list[_Clause] = []
    i, logical = 0, "and"
    while i < len(parts):
        negate = parts[i].lower() == "not"
        i += negate
        if i + 2 >= len(parts):
            raise BadRequest(f"Invalid filter {text!r}: a clause is FIELD eq|ne VALUE")
        field, op, value = parts[i], parts[i + 1].lower(), parts[i + 2]
        if op not in ("eq", "ne"):
            raise BadRequest(f"Invalid filter {text!r}: unknown operator {op!r} "
                             "(expected eq or ne)")
        i += 3
        if value.startswith('"'):
            words = [value[1:]]
            while not words[-1].endswith('"'):
                if i >= len(parts):
                    raise BadRequest(f"Invalid filter {text!r}: unterminated quote")
                words.append(parts[i])
                i += 1
            value = " ".join(words)[:-1]
        clauses.append(_Clause(logical, negate, field, op, value))
        if i < len(parts):
            logical = parts[i].lower()
            if logical not in ("and", "or") or i + 1 >= len(parts):
                raise BadRequest(f"Invalid filter {text!r}: clauses join with 'and' or 'or'")
            i += 1
    return clauses


def _value_of(obj: Any, field: str) -> Any:
    if not isinstance(obj, dict):
        return None
    if obj and all(isinstance(v, str) for v in obj.values()):
        return obj.get(field)  # a string map (config): the rest is one key
    key, _, rest = field.partition(".")
    value = obj.get(key)
    return _value_of(value, rest) if rest else value


def _clause_matches(obj: dict[str, Any], c: _Clause) -> bool:
    value = _value_of(obj, c.field)
    if isinstance(value, str):
        pattern = c.value if ("^" in c.value or "$" in c.value) else f"^{c.value}$"
        try:
            hit = re.search(pattern, value, re.IGNORECASE) is not None
        except re.error:
            hit = value.lower() == c.value.lower()
    elif isinstance(value, bool):
        hit = c.value.lower() == str(value).lower()
    elif isinstance(value, (int, float)):
        hit = c.value == str(value)
    else:
        hit = False
    if c.op == "ne":
        hit = not hit
    return hit != c.negate


def filter_objects(objs: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The wire objects that match LXD filter ``text`` (all when it is empty).

    Raises:
        BadRequest: the filter does not parse.
    """
    clauses = _parse_filter(text)
    if not clauses:
        return objs
    out = []
    for obj in objs:
        match = True
        for c in clauses:
            hit = _clause_matches(obj, c)
            match = (match and hit) if c.logical == "and" else (match or hit)
        if match:
            out.append(obj)
    return out
