"""The hot commands' command lines, read without argparse.

Design note: importing argparse (and re, enum, gettext under it) and
building a parser cost more than the rest of ``cove --version`` or ``cove
list`` together. The commands run most often (``--version``, ``exec``,
``list``, ``launch``, ``init``, ``start``, ``stop``, ...) are read here
from a table of their options instead. This reader only accepts what it
understands without doubt: exact option names (no abbreviations, no
``-abc`` bundles), values that do not start with ``-``, the positionals in
one run. Anything else (``--help``, unknown options, a missing value, a bad
choice, positionals on both sides of an option) returns None and the caller
falls back to argparse, which then prints the same help, usage error and
exit code as always. ``tests/unit/test_cli_fast.py`` holds each table entry
to its argparse parser: the same option strings and the same Namespace for a
corpus of command lines.

Standard library only, and nothing of it: this module imports nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SPECS", "VERSION", "Args", "parse"]

VERSION = "--version"  # parse()'s answer for a command line that asks for the version only


class Args:
    """What argparse's Namespace holds for the same command line."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __repr__(self) -> str:
        return f"Args({self.__dict__!r})"


# An option's kind: "flag" (store_true), "value" (store), "append", "int"
# (store, type=int), or a tuple of choices (store, choices=...).
_COMMON: dict[str, tuple[str, Any]] = {
    "--root": ("root", "value"), "--project": ("project", "value"),
    "-q": ("quiet", "flag"), "--quiet": ("quiet", "flag"),
}

_FORMATS = ("table", "compact", "csv", "json", "yaml")  # cli.render.FORMATS (a test holds them equal)

_CREATE = {
    "-c": ("config", "append"), "--config": ("config", "append"),
    "-e": ("ephemeral", "flag"), "--ephemeral": ("ephemeral", "flag"),
    "-p": ("publish", "append"), "--publish": ("publish", "append"),
    "-n": ("network", "value"), "--network": ("network", "value"),
    "--profile": ("profile", "append"), "--no-profiles": ("no_profiles", "flag"),
}
_CREATE_DEFAULTS = {"config": None, "ephemeral": False, "publish": None, "network": None,
                    "profile": None, "no_profiles": False, "name": None}
_STATE = {"--all": ("all", "flag")}
_STOP = {"--all": ("all", "flag"), "-f": ("force", "flag"), "--force": ("force", "flag"),
         "--timeout": ("timeout", "int")}


def _state(command: str, stop: bool) -> tuple[Any, ...]:
    defaults: dict[str, Any] = {"all": False, "command": command}
    if stop:
        defaults.update(force=False, timeout=-1)
    return ("instances", "cmd_state", (), ("names", "*"), _STOP if stop else _STATE, defaults)


_LIST = ("instances", "cmd_list", (), ("filters", "*"),
         {"-f": ("format", _FORMATS), "--format": ("format", _FORMATS)}, {"format": "table"})

# command word -> (module of cove.cli, function, required positionals,
# (the last positional, its nargs "?"/"*"/"+") or None, options, defaults)
SPECS: dict[str, tuple[Any, ...]] = {
    "exec": ("exec", "cmd_exec", ("name",), ("command", "*"), {
        "--env": ("env", "append"), "--user": ("user", "value"),
        "--group": ("group", "value"), "--cwd": ("cwd", "value"),
        "-t": ("tty", "flag"), "--tty": ("tty", "flag"),
        "-T": ("no_tty", "flag"), "--no-tty": ("no_tty", "flag"),
        "-n": ("no_stdin", "flag"), "--no-stdin": ("no_stdin", "flag"),
        "--stopped": ("stopped", "flag"),
    }, {"env": None, "user": None, "group": None, "cwd": None, "tty": False,
        "no_tty": False, "no_stdin": False, "stopped": False}),
    "launch": ("instances", "cmd_launch", ("image",), ("name", "?"), _CREATE, _CREATE_DEFAULTS),
    "init": ("instances", "cmd_init", ("image",), ("name", "?"), _CREATE, _CREATE_DEFAULTS),
    "start": _state("start", False),
    "stop": _state("stop", True),
    "restart": _state("restart", True),
    "pause": _state("pause", False),
    "resume": _state("resume", False),
    "delete": ("instances", "cmd_delete", (), ("names", "+"),
               {"-f": ("force", "flag"), "--force": ("force", "flag")}, {"force": False}),
    "list": _LIST,
    "ls": _LIST,
}


def _globals(argv: list[str], values: dict[str, Any]) -> int | None:
    """Read the options before the command word into ``values``; return the
    word's index, -1 for ``--version``, None for anything argparse must see."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--version":
            return -1
        if token in ("--root", "--project"):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            values[token[2:]] = argv[i + 1]
            i += 2
        elif token in ("-q", "--quiet"):
            values["quiet"] = True
            i += 1
        else:
            return i if not token.startswith("-") else None
    return None  # no command word: argparse prints the help


def _option(token: str, argv: list[str], i: int, options: dict[str, tuple[str, Any]],
            values: dict[str, Any]) -> int | None:
    """Apply the option at ``argv[i]``; return the index after it, or None."""
    name, eq, attached = token.partition("=") if token.startswith("--") else (token, "", "")
    found = options.get(name) or _COMMON.get(name)
    if found is None:
        return None
    dest, kind = found
    if kind == "flag":
        if eq:
            return None
        values[dest] = True
        return i + 1
    if eq:
        value, after = attached, i + 1
    elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        value, after = argv[i + 1], i + 2
    else:
        return None
    if kind == "append":
        values[dest] = [*(values.get(dest) or ()), value]
    elif kind == "int":
        try:
            values[dest] = int(value)
        except ValueError:
            return None
    elif isinstance(kind, tuple) and value not in kind:
        return None
    else:
        values[dest] = value
    return after


def _positionals(spec: tuple[Any, ...], words: list[str], values: dict[str, Any]) -> bool:
    required, last = spec[2], spec[3]
    if len(words) < len(required):
        return False
    for dest, word in zip(required, words, strict=False):
        values[dest] = word
    rest = words[len(required):]
    if last is None:
        return not rest
    dest, nargs = last
    if nargs == "?":
        if len(rest) > 1:
            return False
        if rest:
            values[dest] = rest[0]
        return True
    if nargs == "+" and not rest:
        return False
    values[dest] = rest
    return True


def parse(argv: list[str]) -> tuple[str, str, Args] | str | None:
    """``(module, function, args)`` for a hot command line, ``VERSION`` for
    one that asks for the version, None for anything argparse must read.

    Pure: reads ``argv`` only, raises nothing.
    """
    values: dict[str, Any] = {"root": None, "quiet": False, "project": None}
    at = _globals(argv, values)
    if at is None:
        return None
    if at < 0:
        return VERSION
    spec = SPECS.get(argv[at])
    if spec is None:
        return None
    values.update(spec[5])
    words: list[str] = []
    runs = 0  # argparse reads positionals split by an option its own way: leave those to it
    in_run = False
    i = at + 1
    while i < len(argv):
        token = argv[i]
        if token.startswith("-"):
            after = _option(token, argv, i, spec[4], values)
            if after is None:
                return None
            i, in_run = after, False
            continue
        runs += not in_run
        in_run = True
        words.append(token)
        i += 1
    if runs > 1 or not _positionals(spec, words, values):
        return None
    return spec[0], spec[1], Args(**values)
