"""``cove console``'s detach keys (Ctrl+a q), split from the input wherever
the reads cut them."""

from __future__ import annotations

import pytest

from cove.client._console import split_detach


@pytest.mark.parametrize(("chunks", "sent", "detached"), [
    ([b"ls\r"], b"ls\r", False),
    ([b"ls\r\x01q"], b"ls\r", True),           # both keys in one read (lxc misses it)
    ([b"ls\x01", b"q"], b"ls", True),          # a read between the keys
    ([b"\x01\x01"], b"\x01", False),           # Ctrl+a twice: one Ctrl+a goes through
    ([b"\x01x"], b"\x01x", False),             # Ctrl+a then another key: both go through
    ([b"a\x01", b"b"], b"a\x01b", False),
    ([b"q"], b"q", False),
])
def test_split_detach(chunks: list[bytes], sent: bytes, detached: bool) -> None:
    out, pending, detach = b"", False, False
    for chunk in chunks:
        part, pending, detach = split_detach(chunk, pending)
        out += part
        if detach:
            break
    assert (out, detach) == (sent, detached)
