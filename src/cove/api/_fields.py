"""What every wire class shares: its base (equality, repr) and the field readers.

Design note: two kinds of readers, one per direction. The *strict* readers
(``opt_*``) serve ``parse``, which reads what a client sent to coved: a field
of the wrong type is a ``BadRequest`` naming the field and what it should
have been, and a number must be finite (Python's ``json`` module accepts
``NaN`` and ``Infinity``, which no LXD client sends on purpose). The
*tolerant* readers (``t_*``) serve ``from_wire``, which reads what a server
answered (cove, LXD 5.0 or Incus): a missing or odd field gets its default,
since a client must keep working against a server a version apart.

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

import math

from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "MAX_SECONDS",
    "Wire",
    "finite_seconds",
    "kind",
    "opt_bool",
    "opt_devices",
    "opt_id",
    "opt_int",
    "opt_name",
    "opt_number",
    "opt_object",
    "opt_str",
    "opt_str_list",
    "opt_str_map",
    "require_object",
    "t_bool",
    "t_devices",
    "t_dict",
    "t_int",
    "t_list",
    "t_str",
    "t_str_list",
    "t_str_map",
]


class Wire:
    """Base of the wire classes: equal when of one class with equal fields.

    Each subclass lists its fields in ``__slots__``, so equality and
    ``repr`` need no per-class code.
    """

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        args = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"{type(self).__name__}({args})"


# -- strict: parse (a client's request to the server) -----------------------------------

def kind(value: object) -> str:
    """How an error message names a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _wrong(key: str, expected: str, value: object) -> BadRequest:
    return BadRequest(f"Field {key!r} must be {expected}, not {kind(value)}")


def require_object(body: object) -> dict[str, Any]:
    """``body`` as a JSON object.

    Raises:
        BadRequest: it is something else.
    """
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object, not {kind(body)}")
    return body


def opt_object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """A nested object field; None if absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"Field {key!r} must be an object")
    return value


def opt_str(body: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string field; missing or null gives ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def opt_bool(body: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """A boolean field; missing or null gives ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong(key, "a boolean", value)
    return value


def opt_int(body: Mapping[str, Any], key: str, default: int) -> int:
    """An integer field (a boolean is not one); missing or null gives ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, "an integer", value)
    return value


# The longest wait cove accepts anywhere (68 years: what a signed 32-bit
# count of seconds holds, and far inside what timers and time arithmetic take).
MAX_SECONDS = 2**31 - 1


def finite_seconds(raw: str, what: str, *, low: float = 0,
                   high: float = MAX_SECONDS) -> float:
    """A query parameter of seconds: a finite number in [low, high].

    Raises:
        BadRequest: not a number, NaN, an infinity or out of range.
    """
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"Invalid {what} {raw!r}: a number of seconds") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"Invalid {what} {raw!r}: between {low:g} and {high:g} seconds")
    return value


def opt_number(body: Mapping[str, Any], key: str, default: float) -> float:
    """A finite number field; missing or null gives ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(key, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise BadRequest(f"Field {key!r} must be a finite number, not {value!r}")
    return number


MAX_ID = 2**32 - 2  # a uid/gid is a uint32 and 4294967295 is (uid_t)-1, "no change"


def opt_id(body: Mapping[str, Any], key: str) -> int | None:
    """A uid/gid number (LXD's uint32); missing or null gives None.

    Raises:
        BadRequest: anything but an integer in 0..4294967294 (a string, even
            a name, is refused: LXD refuses it, and silently running as root
            instead is what a client must never get).
    """
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"Field {key!r} must be a uid/gid number, not {kind(value)}")
    if not 0 <= value <= MAX_ID:
        raise BadRequest(f"Field {key!r} must be a uid/gid number in 0..{MAX_ID}, not {value}")
    return value


def opt_name(body: Mapping[str, Any], key: str) -> str | None:
    """A user or group name (cove's ``user-name``/``group-name``); "" is None."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value or None


def opt_str_map(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """An object of string values (``config``, ``environment``); None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(key, "an object of strings", value)
    for k, v in value.items():
        if not isinstance(v, str):
            raise BadRequest(f"Field {key!r}: the value of {k!r} must be a string, not {kind(v)}")
    return dict(value)


def opt_devices(body: Mapping[str, Any], key: str = "devices"
                ) -> dict[str, dict[str, str]] | None:
    """``{device name: {key: string}}``; None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong(key, "an object of devices", value)
    out: dict[str, dict[str, str]] = {}
    for name, dev in value.items():
        if not isinstance(dev, dict):
            raise BadRequest(f"Field {key!r}: device {name!r} must be an object, not {kind(dev)}")
        for k, v in dev.items():
            if not isinstance(v, str):
                raise BadRequest(f"Field {key!r}: device {name!r} key {k!r} must be a string, "
                                 f"not {kind(v)}")
        out[name] = dict(dev)
    return out


def opt_str_list(body: Mapping[str, Any], key: str) -> list[str] | None:
    """A list of strings; None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, "a list of strings", value)
    return list(value)


# -- tolerant: from_wire (a server's answer to a client) ----------------------------------

def t_str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    if value is None:
        return default
    return value if isinstance(value, str) else str(value)


def t_bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(value, (int, float)):
        return bool(value)
    return default


def t_int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def t_dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return dict(value) if isinstance(value, dict) else {}


def t_list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return list(value) if isinstance(value, list) else []


def t_str_list(data: Mapping[str, Any], key: str) -> list[str]:
    return [v if isinstance(v, str) else str(v) for v in t_list(data, key) if v is not None]


def t_str_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else str(v)
            for k, v in t_dict(data, key).items() if v is not None}


def t_devices(data: Mapping[str, Any], key: str) -> dict[str, dict[str, str]]:
    return {str(name): {str(k): v if isinstance(v, str) else str(v)
                        for k, v in dev.items() if v is not None}
            for name, dev in t_dict(data, key).items() if isinstance(dev, dict)}
