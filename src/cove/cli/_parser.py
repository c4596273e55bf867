"""``cove``'s argparse parser: every command's options, help and usage errors.

Design note: argparse (with re, enum and gettext under it) costs ~10 ms to
import and more to build, so the hot commands skip it (``cove.cli._fast``);
this module is imported for ``--help``, usage errors, the commands the fast
path does not know, and anything unusual on a command line. Only the module
of the command word on the command line registers its parsers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cove import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["MODULES", "VALUED", "Parser", "build_parser"]

_DESCRIPTION = """\
cove runs Linux containers on runc and overlayfs. It talks to the coved daemon
over the LXD REST API on $COVE_DIR/unix.socket, and starts coved itself when
nobody answers there."""

_EPILOG = """\
examples:
  cove image import busybox.tar.gz --alias busybox
  cove launch busybox c1            create and start c1 from an image
  cove list                         NAME, STATE, IPV4, TYPE, CREATED
  cove exec c1 -- ls -l /           run a command; its exit code is cove's
  cove exec c1 -- sh                interactive shell when on a terminal
  cove console c1                   the instance's console (Ctrl+a q detaches)
  cove file push ./app.conf c1/etc/app.conf
  cove config set c1 limits.memory=256MiB
  cove stop c1 && cove delete c1
  cove project create dev && cove project switch dev

environment:
  COVE_DIR            cove's root (default /var/lib/cove); --root overrides it
  COVE_NO_AUTOSTART   set to never start coved from the command line
  COVE_PROJECT        the project to work in (--project overrides it)
  COVE_DEBUG          set to print tracebacks of unexpected errors

Run 'cove COMMAND --help' for a command's options and examples."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one ``Error:`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"Error: {message} (see '{self.prog} --help')\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, and without a
        # width each one imports shutil (and with it bz2, lzma, fnmatch: ~2 ms)
        # just to ask for the terminal's size; os answers that directly.
        return self.formatter_class(prog=self.prog, width=_width())  # type: ignore[call-arg]


def _width() -> int:
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = int(os.environ.get("COLUMNS", "80") or 80)
    return max(columns - 2, 40)


# Which module registers which command words. Only the module of the word on
# the command line is imported and registered (argparse and the imports cost
# ~15 ms for all of them); --help and unknown words get every module.
MODULES: dict[str, tuple[str, ...]] = {
    "instances": ("launch", "init", "start", "stop", "restart", "pause", "resume",
                  "delete", "rm", "list", "ls", "info", "rename", "logs"),
    "exec": ("exec",),
    "console": ("console",),
    "files": ("file",),
    "config": ("config",),
    "images": ("image",),
    "query": ("query",),
    "network": ("network",),
    "profile": ("profile",),
    "metrics": ("metrics",),
    "project": ("project",),
    "storage": ("storage",),
    "snapshot": ("snapshot",),
    "copy": ("copy", "cp", "move", "mv", "rebuild"),
    "session": ("session",),
    "publish": ("publish",),
    "stack": ("up", "down", "ps", "stack"),
    "backup": ("export", "import", "backup"),
    "remote": ("remote",),
}

VALUED = ("--root", "--project")  # global options that take the next word


def _modules_for(argv: list[str]) -> list[str]:
    word = next((a for i, a in enumerate(argv) if not a.startswith("-")
                 and (i == 0 or argv[i - 1] not in VALUED)), None)
    for module, words in MODULES.items():
        if word in words:
            return [module]
    if word is None and "--version" in argv:
        return []  # argparse prints it and exits before any command's parser is needed
    return list(MODULES)


def build_parser(argv: list[str] | None = None) -> Parser:
    parser = Parser(prog="cove", description=_DESCRIPTION, epilog=_EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cove {__version__}")
    parser.add_argument("--root", metavar="DIR",
                        help="cove's root directory (default: $COVE_DIR or /var/lib/cove)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print no progress lines")
    parser.add_argument("--project", metavar="NAME",
                        help="the project to work in (default: $COVE_PROJECT, else the one "
                             "'cove project switch' chose, else default)")
    # The same two options after the command (``cove list --root X``); SUPPRESS
    # keeps a value given before the command from being reset.
    common = Parser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    common.add_argument("--project", metavar="NAME", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in _modules_for(argv) if argv is not None else list(MODULES):
        try:
            mod = importlib.import_module(f"cove.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"cove.cli.{module}":
                raise
            continue  # a command group this build does not have
        mod.register(sub, common)
    return parser
