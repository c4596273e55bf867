"""client/_url: the same strings as urllib.parse's quote and urlencode."""

from __future__ import annotations

import random
import urllib.parse

import pytest

from cove.client import _url

_ALPHABET = "aZ09_.-~ /?&=+%#:;@!$'()*,[]\"<>\\^`{|}\t\né€😀\x00\x7f"


def _corpus() -> list[str]:
    rnd = random.Random(14)
    words = ["", "c1", "dev-1.x", "a b", "a+b", "/etc/app.conf", "x=1&y=2", "ünï", "%41"]
    words += ["".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(1, 12)))
              for _ in range(500)]
    return words


@pytest.mark.parametrize("safe", ["", "/", " ", "/:", "é"])
def test_quote_is_urllibs(safe: str) -> None:
    for text in _corpus():
        assert _url.quote(text, safe) == urllib.parse.quote(text, safe=safe), (text, safe)
    assert _url.quote("a b/c") == urllib.parse.quote("a b/c")


def test_urlencode_is_urllibs() -> None:
    words = _corpus()
    for i in range(0, len(words) - 4, 3):
        query = {words[i] or "k": words[i + 1], words[i + 2] + "x": words[i + 3]}
        assert _url.urlencode(query) == urllib.parse.urlencode(query), query


def test_lone_surrogate_raises_as_urllib_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        urllib.parse.quote("\udc80")
    with pytest.raises(UnicodeEncodeError):
        _url.quote("\udc80")
