"""Snapshot names, ``snapshots.*`` config keys and expiry (pure rules)."""

from __future__ import annotations

import pytest

from cove.model.config import parse_expiry, parse_schedule, validate_config
from cove.model.errors import BadRequest
from cove.model.names import validate_snapshot_name


@pytest.mark.parametrize("name", ["snap0", "a b", "x.y", "with-dash_ok", "ü", "a" * 255])
def test_good_snapshot_names(name: str) -> None:
    assert validate_snapshot_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "/", ".", "..", " x", "x ", "a\nb", "a\x7f",
                                  "a" * 256, None, 3])
def test_bad_snapshot_names(name: object) -> None:
    with pytest.raises(BadRequest, match="[Ss]napshot name"):
        validate_snapshot_name(name)


def test_expiry() -> None:
    assert parse_expiry("", 100.0) == 0.0
    assert parse_expiry("1M", 100.0) == 160.0
    assert parse_expiry("1H 2d", 0.0) == 3600 + 2 * 86400
    assert parse_expiry("1w 1m 1y", 0.0) == (7 + 30 + 365) * 86400
    for bad in ("1", "1x", "d", "-1d", "1d2H"):
        with pytest.raises(BadRequest, match="snapshots.expiry"):
            parse_expiry(bad)


def test_schedule() -> None:
    assert parse_schedule("@daily, 0 6 * * 1-5") == ["@daily", "0 6 * * 1-5"]
    assert parse_schedule("*/15 * * * *") == ["*/15 * * * *"]
    for bad in ("daily", "* * * *", "@sometimes", "a b c d e"):
        with pytest.raises(BadRequest, match="snapshots.schedule"):
            parse_schedule(bad)


def test_config_keys_accepted_and_checked() -> None:
    good = {"snapshots.expiry": "3d", "snapshots.schedule": "@hourly",
            "snapshots.schedule.stopped": "false", "snapshots.pattern": "auto-%d"}
    assert validate_config(good) == good
    with pytest.raises(BadRequest, match="snapshots.pattern"):
        validate_config({"snapshots.pattern": "a/%d"})
    with pytest.raises(BadRequest):
        validate_config({"snapshots.schedule.stopped": "perhaps"})
