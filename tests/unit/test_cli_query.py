"""``cove query``: one raw request, its metadata printed as JSON (as ``lxc query``)."""

from __future__ import annotations

import json
import os

import pytest
from test_client_fakelxd import FakeLXD, error, sync

from cove.cli.main import main

pytest_plugins = ("test_client_fakelxd",)


@pytest.fixture
def cli(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_get_prints_metadata(cli) -> None:
    code, out, _ = cli("query", "/1.0")
    assert code == 0
    assert json.loads(out)["api_version"] == "1.0"
    assert "\t" in out  # indented as lxc indents


def test_post_with_data_and_wait(fake: FakeLXD, cli) -> None:
    fake.route("POST", "/1.0/instances")(lambda req: fake.finished(made=True))
    code, out, _ = cli("query", "-X", "post", "-d", '{"name": "c1"}', "--wait",
                       "/1.0/instances")
    assert code == 0 and json.loads(out) == {"made": True}
    assert fake.find("POST", "/1.0/instances")[0].json() == {"name": "c1"}


def test_errors_and_usage(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/instances/x")(lambda req: error(404, "Instance not found"))
    assert cli("query", "/1.0/instances/x")[::2] == (1, "Error: Instance not found\n")
    assert cli("query", "-d", "{nope", "/1.0")[0] == 2
    assert cli("query", "-X", "BREW", "/1.0")[0] == 2
    assert cli("query", "1.0")[0] == 2
    fake.route("GET", "/1.0/empty")(lambda req: sync(None))
    assert cli("query", "/1.0/empty") == (0, "", "")
