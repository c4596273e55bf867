"""A bridge's subnet may grow live; error messages name a few instances."""

from __future__ import annotations

import pytest

from cove.engine._net_base import short_list
from cove.engine._net_bridge import _grows


def test_short_list_names_a_few_and_counts_the_rest() -> None:
    assert short_list([]) == "" and short_list(["a"]) == "a"
    assert short_list(["a", "b", "c"]) == "a, b, c"
    assert short_list([f"c{i}" for i in range(253)]) == "c0, c1, c2 and 250 more"


@pytest.mark.parametrize("old, new, ok", [
    ("10.0.0.1/24", "10.0.0.1/23", True),
    ("10.0.0.1/24", "10.0.0.1/16", True),
    ("10.0.1.1/24", "10.0.1.1/23", True),   # 10.0.0.0/23 holds 10.0.1.0/24
    ("10.0.0.1/24", "10.0.0.1/24", False),
    ("10.0.0.1/24", "10.0.0.1/25", False),  # shrinking
    ("10.0.0.1/24", "10.0.0.2/23", False),  # the gateway moves
    ("10.0.0.1/24", "none", False),
    ("none", "10.0.0.1/24", False),
])
def test_grows(old: str, new: str, ok: bool) -> None:
    assert _grows({"ipv4.address": old}, {"ipv4.address": new}) is ok
