"""``cove exec``: the command's exit code, stdin through, options on the wire."""

from __future__ import annotations

import io
import os

import pytest
from test_client_fakelxd import (
    FakeExec,
    FakeLXD,
    error,
)

from cove.cli.exec import user_or_id
from cove.cli.main import main

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)


@pytest.fixture
def run(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def go(*argv: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(argv))
        out, err = capsysbinary.readouterr()
        return code, out, err

    return go


def test_exit_code_and_streams(fake: FakeLXD, run) -> None:
    ex = FakeExec(fake, "c1", stdout=b"out\n", stderr=b"err\n", code=3)
    code, out, err = run("exec", "c1", "--", "sh", "-c", "exit 3")
    assert (code, out, err) == (3, b"out\n", b"err\n")
    assert ex.body["command"] == ["sh", "-c", "exit 3"]
    assert ex.body["interactive"] is False


def test_stdin_is_copied_in(fake: FakeLXD, run) -> None:
    ex = FakeExec(fake, "c1")
    code, out, _ = run("exec", "c1", "--", "cat", stdin=b"hello\n")
    assert (code, out) == (0, b"hello\n")
    assert ex.stdin == b"hello\n" and ex.stdin_end == "text"


def test_no_stdin_flag(fake: FakeLXD, run) -> None:
    ex = FakeExec(fake, "c1")
    assert run("exec", "-n", "c1", "--", "cat", stdin=b"ignored")[:2] == (0, b"")
    assert ex.stdin == b""


def test_options_on_the_wire(fake: FakeLXD, run) -> None:
    ex = FakeExec(fake, "c1")
    fake.resolves_names()
    code, _, _ = run("exec", "c1", "--env", "A=1", "--env", "B=x=y", "--user", "1000",
                     "--group", "wheel", "--cwd", "/srv", "-T", "--", "env")
    assert code == 0
    assert ex.body["environment"] == {"A": "1", "B": "x=y"}
    assert ex.body["user"] == 1000 and ex.body["group-name"] == "wheel"
    assert ex.body["cwd"] == "/srv"
    assert "TERM" not in ex.body["environment"]


def test_command_without_dashes(fake: FakeLXD, run) -> None:
    ex = FakeExec(fake, "c1")
    assert run("exec", "c1", "true")[0] == 0
    assert ex.body["command"] == ["true"]


def test_big_exit_codes_wrap(fake: FakeLXD, run) -> None:
    FakeExec(fake, "c1", code=-1)
    assert run("exec", "c1", "--", "x")[0] == 255


def test_missing_command_is_usage_error(run) -> None:
    code, _, err = run("exec", "c1")
    assert code == 2 and err.startswith(b"Error: no command given")


def test_not_running_is_error_line(fake: FakeLXD, run) -> None:
    fake.route("POST", "/1.0/instances/c1/exec")(
        lambda req: error(400, "Instance is not running"))
    assert run("exec", "c1", "--", "true") == (1, b"", b"Error: Instance is not running\n")


def test_user_or_id() -> None:
    assert user_or_id("0") == 0 and user_or_id("1000") == 1000
    assert user_or_id("nobody") == "nobody" and user_or_id(None) is None


def test_a_name_is_refused_for_a_server_that_does_not_resolve_names(fake: FakeLXD,
                                                                     run) -> None:
    # LXD ignores cove's user-name and would run the command as root
    FakeExec(fake, "c1")
    code, _, err = run("exec", "c1", "--user", "app", "--", "id")
    assert code == 1 and b"does not resolve user and group names" in err
    assert fake.find("POST", "/1.0/instances/c1/exec") == []
    code, _, _ = run("exec", "c1", "--user", "1000", "--", "id")
    assert code == 0
