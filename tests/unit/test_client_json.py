"""client/_json: json.loads and json.dumps without the json package, the same results."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from typing import Any

import pytest

from cove.client import _json

VALUES: list[Any] = [
    None, True, False, 0, -1, 10**30, 1.5, -0.0, 1e300, "", "héllo \u2028 \x00 \"q\" \\ /",
    "😀", [], {}, [1, [2, [3]]], {"a": {"b": [None, 1.25, "x"]}, "": 0},
    {"metadata": {"fds": {"0": "s", "control": "c"}}, "status_code": 103, "type": "async"},
]


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.randint(-(10**20), 10**20)
    if kind == 2:
        return rnd.uniform(-1e6, 1e6)
    if kind in (3, 4):
        return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0, 0x3000)]))
                       for _ in range(rnd.randrange(6)))
    if kind in (5, 6):
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {str(_random_value(rnd, 4)): _random_value(rnd, depth + 1)
            for _ in range(rnd.randrange(4))}


def _corpus() -> list[Any]:
    rnd = random.Random(14)
    return VALUES + [_random_value(rnd) for _ in range(400)]


def test_dumps_and_loads_are_jsons() -> None:
    for value in _corpus():
        text = json.dumps(value)
        assert _json.dumps(value) == text
        assert _json.loads(text) == json.loads(text)
        assert _json.loads(text.encode()) == json.loads(text.encode())
        assert _json.loads(f" \n{text}\r\n\t") == json.loads(f" \n{text}\r\n\t")


def test_constants_and_utf16() -> None:
    assert math.isnan(_json.loads("NaN"))
    assert _json.loads("[Infinity, -Infinity]") == [math.inf, -math.inf]
    assert _json.dumps([math.inf, math.nan]) == json.dumps([math.inf, math.nan])
    data = json.dumps({"a": "é"}).encode("utf-16")
    assert _json.loads(data) == {"a": "é"}
    assert _json.loads(b"\xef\xbb\xbf[1]") == json.loads(b"\xef\xbb\xbf[1]") == [1]


@pytest.mark.parametrize("bad", ["", " ", "{", "[1,]", "1 2", "{'a': 1}", "\ufeff1", "nul",
                                 b"\xff", "[1] x", '"\x01"'])
def test_errors_are_jsons(bad: str | bytes) -> None:
    with pytest.raises(Exception) as want:
        json.loads(bad)
    with pytest.raises(type(want.value)) as got:
        _json.loads(bad)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("bad", [{1, 2}, {"a": object()}, {(1, 2): 3}, b"x"])
def test_unencodable_raises_as_json(bad: Any) -> None:
    with pytest.raises(TypeError) as want:
        json.dumps(bad)
    with pytest.raises(TypeError) as got:
        _json.dumps(bad)
    assert str(got.value) == str(want.value)
    assert _json.dumps({"ok": 1}) == '{"ok": 1}'  # no marker left behind


def test_circular_raises_as_json() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        _json.dumps(loop)


def test_imports_neither_json_nor_re() -> None:
    code = ("import sys; from cove.client import _json; _json.loads(_json.dumps({'a': [1]})); "
            "print(sorted(m for m in ('json', 're') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
