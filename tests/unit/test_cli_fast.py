"""cli._fast: the hot commands read without argparse, exactly as argparse reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cove.cli import _fast, render
from cove.cli._parser import build_parser

# Command lines the fast reader must read as argparse does, or leave to it.
CORPUS = [
    ["list"], ["ls"], ["list", "web"], ["list", "-f", "csv"], ["list", "--format=json", "a", "b"],
    ["list", "--format", "bogus"], ["list", "-f"], ["list", "a", "-f", "csv", "b"],
    ["list", "--root", "/r", "-q"], ["--root", "/r", "--project", "dev", "list"],
    ["--root", "/a", "list", "--root", "/b"], ["-q", "list", "--project", "p"],
    ["list", "--proj", "p"], ["list", "-h"], ["list", "--help"], ["list", "-fcsv"],
    ["exec", "c1"], ["exec", "c1", "ls", "-l"], ["exec", "c1", "ls"],
    ["exec", "-T", "c1"], ["exec", "c1", "--env", "A=1", "--env", "B=2"],
    ["exec", "c1", "--env=A=1", "--user", "1000", "--group", "g", "--cwd", "/tmp"],
    ["exec", "c1", "-t", "-n"], ["exec", "c1", "--tty", "--no-tty", "--no-stdin"],
    ["exec", "c1", "-Tn"], ["exec", "--env", "A=1", "c1", "x"], ["exec", "c1", "--cwd"],
    ["exec", "c1", "--cwd", "-x"], ["exec"], ["exec", "c1", "--no-s"], ["exec", "c1", "-"],
    ["launch", "busybox"], ["launch", "busybox", "c1"], ["launch", "busybox", "c1", "c2"],
    ["launch", "-e", "busybox", "c1", "-c", "a=1", "-c", "b=2", "-p", "80:80"],
    ["launch", "busybox", "c1", "--network", "none", "--profile", "a", "--profile", "b"],
    ["launch", "busybox", "--no-profiles"], ["launch", "busybox", "-n", "lab", "c1"],
    ["launch"], ["init", "busybox", "c1", "-c", "limits.cpu=1"], ["init", "busybox"],
    ["start", "c1"], ["start"], ["start", "--all"], ["start", "a", "b", "c"], ["start", "-f"],
    ["stop", "c1", "-f"], ["stop", "--timeout", "10", "c1"], ["stop", "--timeout=5", "c1"],
    ["stop", "--timeout", "x", "c1"], ["stop", "--timeout", "-1", "c1"], ["stop", "--force", "--all"],
    ["restart", "-f", "c1", "c2"], ["pause", "c1"], ["resume", "c1", "--all"],
    ["delete", "c1"], ["delete"], ["delete", "-f", "c1", "c2"], ["delete", "--force", "c1"],
    ["info", "c1"], ["image", "list"], ["--version"], ["--root", "/r", "--version"],
    ["--version", "list"], ["-q"], [], ["--root"], ["--root", "--version"], ["-h"],
    ["bogus"], ["list", "--", "x"], ["--quiet", "stop", "--quiet", "c1"],
]


def _argparse(argv: list[str]) -> dict[str, object] | None:
    try:
        ns = build_parser(argv).parse_args(argv)
    except SystemExit:
        return None
    return vars(ns)


def _same(fast: dict[str, object], slow: dict[str, object], func_name: str) -> None:
    slow = dict(slow)
    func = slow.pop("func")
    assert getattr(func, "__name__", None) == func_name
    assert fast == slow


@pytest.mark.parametrize("argv", CORPUS, ids=" ".join)
def test_reads_as_argparse_does_or_leaves_it(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    fast = _fast.parse(argv)
    slow = _argparse(argv)
    capsys.readouterr()
    if fast is None:
        return  # argparse reads it: the same as before by construction
    if fast == _fast.VERSION:
        assert slow is None  # argparse printed the version and exited
        assert "--version" in argv
        return
    assert isinstance(fast, tuple)
    assert slow is not None, f"fast path accepted a line argparse refuses: {argv}"
    _same(vars(fast[2]), slow, fast[1])


def test_corpus_takes_the_fast_path_for_the_common_lines() -> None:
    for argv in (["list"], ["exec", "c1"], ["--root", "/r", "stop", "--timeout", "10", "c1"],
                 ["launch", "busybox", "c1", "-c", "a=1"], ["delete", "-f", "c1"]):
        assert isinstance(_fast.parse(argv), tuple), argv
    for argv in (["list", "-h"], ["exec", "c1", "-Tn"], ["stop", "--timeout", "x"], ["delete"],
                 ["list", "a", "-f", "csv", "b"], ["info", "c1"], []):
        assert _fast.parse(argv) is None, argv


@pytest.mark.parametrize("word", sorted(_fast.SPECS))
def test_each_spec_has_its_parsers_options_and_defaults(word: str) -> None:
    """A new option in a command's argparse parser fails here until the table has it."""
    import argparse

    parser = build_parser([word])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cmd = sub.choices[word]
    spec = _fast.SPECS[word]
    options = {s for a in cmd._actions for s in a.option_strings if s not in ("-h", "--help")}
    assert options == set(spec[4]) | set(_fast._COMMON)
    for action in cmd._actions:
        if not action.option_strings:
            continue
        if action.dest in ("help", "root", "quiet", "project"):
            continue
        dest, kind = spec[4][action.option_strings[0]]
        assert dest == action.dest
        if isinstance(kind, tuple):
            assert tuple(action.choices or ()) == kind == render.FORMATS
    positionals = [a.dest for a in cmd._actions if not a.option_strings]
    last = spec[3]
    assert positionals == [*spec[2], *([last[0]] if last else [])]
    if last:
        nargs = next(a.nargs for a in cmd._actions if a.dest == last[0])
        assert nargs == last[1]


def test_version_prints_what_argparse_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from cove.cli.main import main

    with pytest.raises(SystemExit) as e:
        build_parser(["--version"]).parse_args(["--version"])
    assert e.value.code == 0
    slow = capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr() == slow


@pytest.fixture
def cove_dir(tmp_path: Path) -> str:
    """An empty covetest root: nobody listens there, so commands stop at connect."""
    root = tmp_path / "covetest-root"
    root.mkdir()
    return str(root)


_HEAVY = ("argparse", "re", "enum", "gettext", "json", "locale", "shutil", "urllib.parse",
          "hashlib", "typing", "dataclasses")


def _imported(cove_dir: str, argv: list[str], then: str = "pass") -> set[str]:
    code = (f"import sys; from cove.cli.main import main; code = main({argv!r}); {then}; "
            "mods = sorted(sys.modules); import json; print(json.dumps(mods)); print(code)")
    env = dict(os.environ, COVE_DIR=cove_dir, COVE_NO_AUTOSTART="1")
    env.pop("COVE_PROJECT", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) >= 2, proc.stderr
    return set(json.loads(lines[-2]))


def test_version_imports_almost_nothing(cove_dir: str) -> None:
    loaded = _imported(cove_dir, ["--version"])
    assert not loaded & set(_HEAVY), loaded & set(_HEAVY)
    assert not {m for m in loaded if m.startswith("cove.client")}


@pytest.mark.parametrize("argv", [["list"], ["exec", "c1", "--", "true"], ["stop", "c1"],
                                  ["launch", "busybox", "c1"]])
def test_hot_commands_import_no_parser(cove_dir: str, argv: list[str]) -> None:
    """coved is not running here: the command fails at connect, after its imports.

    (enum comes with socket and signal, which the client needs; json and re
    it does without: client/_json.)"""
    # exec's websockets are opened after connecting: their module is imported by hand
    loaded = _imported(cove_dir, argv, "import cove.client._ws" if argv[0] == "exec" else "pass")
    assert argv[0] != "exec" or "cove.client._ws" in loaded
    heavy = {"argparse", "gettext", "typing", "dataclasses", "shutil", "locale", "hashlib",
             "urllib.parse", "ipaddress", "importlib", "re", "json", "base64",
             "cove.cli._parser"}
    assert not loaded & heavy, loaded & heavy
    if argv[0] != "exec":  # only exec runs threads (its stream pumps)
        assert "threading" not in loaded
