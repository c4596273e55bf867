"""cove's own fields of LXD requests for app stacks: a start with another
command (``InstanceStatePut.command``) and an exec into a stopped instance
(``InstanceExecPost.stopped``); both absent from the wire unless set; and
the forced delete of an instance others depend on (``?force=1``)."""

from __future__ import annotations

import pytest

from cove import api
from cove.cli.main import _split_after_dashes
from cove.model.errors import BadRequest


def test_start_with_a_command_round_trips_and_is_checked() -> None:
    put = api.InstanceStatePut.parse({"action": "start", "command": ["sh", "-c", "true"]})
    assert put.command == ["sh", "-c", "true"]
    assert put.to_wire()["command"] == ["sh", "-c", "true"]
    assert api.InstanceStatePut.from_wire(put.to_wire()).command == ["sh", "-c", "true"]
    assert "command" not in api.InstanceStatePut(action="start").to_wire()
    for body in ({"action": "stop", "command": ["x"]}, {"action": "start", "command": []},
                 {"action": "start", "command": "sh"}):
        with pytest.raises(BadRequest, match="command"):
            api.InstanceStatePut.parse(body)


def test_exec_stopped_round_trips() -> None:
    post = api.InstanceExecPost.parse({"command": ["ls"], "stopped": True})
    assert post.stopped is True and post.to_wire()["stopped"] is True
    assert api.InstanceExecPost.from_wire(post.to_wire()).stopped is True
    assert "stopped" not in api.InstanceExecPost(command=["ls"]).to_wire()


def test_start_takes_the_command_after_dashes() -> None:
    assert _split_after_dashes(["start", "web", "--", "sh", "-c", "x"]) == (
        ["start", "web"], ["sh", "-c", "x"])
    assert _split_after_dashes(["stop", "web", "--", "x"]) == (["stop", "web", "--", "x"], None)


def test_a_forced_delete_says_so_only_when_asked() -> None:
    from cove.client import _wire as wire

    assert wire.delete_instance("db").path == "/1.0/instances/db"
    assert wire.delete_instance("db", force=True).path == "/1.0/instances/db?force=1"
