"""The ``cove`` command: help texts, usage errors, error lines, exit codes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from test_client_fakelxd import (
    FakeLXD,
    error,
)

from cove.cli import instances as cli_instances
from cove.cli.main import _split_after_dashes, build_parser, main

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue  # an alias of one already walked
                seen.add(id(sub))
                yield from _walk(sub, (*path, name))


ALL_COMMANDS = [p for p, _ in _walk(build_parser())]


def test_every_expected_command_exists() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    for cmd in ["launch", "init", "start", "stop", "restart", "pause", "resume", "delete",
                "list", "info", "rename", "logs", "exec", "file push", "file pull",
                "file delete", "config show", "config get", "config set", "config unset",
                "image import", "image list", "image delete", "image alias create",
                "image alias delete", "image alias list", "image alias rename"]:
        assert cmd in names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "cove")
def test_every_command_has_help_with_examples(path: tuple[str, ...],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cove")
    assert "examples:" in out or "Run 'cove" in out
    assert "cove " + " ".join(path) in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["image"]) == 2
    assert "import" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cove ")


@pytest.mark.parametrize("argv", [["frobnicate"], ["list", "--format", "xml"],
                                  ["stop", "--timeout", "soon", "c1"], ["rename", "c1"]])
def test_usage_errors_are_one_line_exit_2(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1


def test_bad_key_value_is_usage_error(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    assert main(["launch", "busybox", "c1", "-c", "novalue"]) == 2
    assert capsys.readouterr().err == "Error: expected KEY=VALUE for -c, got 'novalue'\n"


def test_daemon_not_running_is_one_error_line(cove_dir: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COVE_DIR", cove_dir)
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err == f"Error: coved is not running: no socket at {cove_dir}/unix.socket\n"


def test_root_option_before_and_after_command(cove_dir: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")
    monkeypatch.setenv("COVE_DIR", "/nonexistent")
    for argv in (["--root", cove_dir, "list"], ["list", "--root", cove_dir]):
        assert main(argv) == 1
        assert cove_dir in capsys.readouterr().err


def test_server_error_is_one_line_exit_1(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    fake.route("GET", "/1.0/instances/ghost")(lambda req: error(404, "Instance not found"))
    assert main(["info", "ghost"]) == 1
    assert capsys.readouterr().err == "Error: Instance not found\n"


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(ctx: object, args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_instances, "cmd_list", interrupted)
    assert main(["list"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_unexpected_exception_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def broken(ctx: object, args: object) -> int:
        raise RuntimeError("oops")

    monkeypatch.setattr(cli_instances, "cmd_list", broken)
    monkeypatch.delenv("COVE_DEBUG", raising=False)
    assert main(["list"]) == 1
    assert capsys.readouterr().err == "Error: internal error: RuntimeError: oops\n"


def test_dashes_split_only_for_exec() -> None:
    assert _split_after_dashes(["exec", "c1", "--", "ls", "-l"]) == (["exec", "c1"],
                                                                     ["ls", "-l"])
    assert _split_after_dashes(["--root", "/x", "-q", "exec", "c1", "--env", "A=1", "--",
                                "sh", "--", "x"]) == (
        ["--root", "/x", "-q", "exec", "c1", "--env", "A=1"], ["sh", "--", "x"])
    assert _split_after_dashes(["file", "push", "--", "-odd"]) == (
        ["file", "push", "--", "-odd"], None)
    assert _split_after_dashes(["list"]) == (["list"], None)


def test_module_runs_as_script_without_traceback(cove_dir: str) -> None:
    env = dict(os.environ, COVE_DIR=cove_dir, COVE_NO_AUTOSTART="1")
    proc = subprocess.run([sys.executable, "-m", "cove.cli.main", "list"], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: coved is not running")


def test_hot_paths_import_only_the_standard_library(cove_dir: str) -> None:
    code = ("import sys; from cove.cli.main import main; main(['list']);"
            "from cove.cli import exec; import cove.client._ws;"
            "bad = [m for m in ('httpx', 'click', 'rich', 'typer', 'aiohttp', 'yaml')"
            " if m in sys.modules]; print(bad)")
    env = dict(os.environ, COVE_DIR=cove_dir, COVE_NO_AUTOSTART="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.stdout.strip() == "[]", proc.stderr
