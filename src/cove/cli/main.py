"""The ``cove`` command: parse, call the client, render.

Design note: this runs on every call, so it imports the standard library
and cove's own small modules only (``python -X importtime -m cove.cli.main
list`` shows the bill). Every command module registers its parsers with
``register(sub, common)`` and handles ``(ctx, args) -> exit code``. Errors
become one line ``Error: <message>`` on stderr: exit 1 for a failed action,
2 for a wrong command line, 130 on Ctrl-C; ``exec`` exits with the
command's own code. Set ``COVE_DEBUG=1`` to get a traceback for an
unexpected exception instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cove import __version__
from cove.cli.context import Context, UsageError, default_root
from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["build_parser", "main"]

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
_MODULES: dict[str, tuple[str, ...]] = {
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
}

_VALUED = ("--root", "--project")  # global options that take the next word


def _modules_for(argv: list[str]) -> list[str]:
    word = next((a for i, a in enumerate(argv) if not a.startswith("-")
                 and (i == 0 or argv[i - 1] not in _VALUED)), None)
    for module, words in _MODULES.items():
        if word in words:
            return [module]
    if word is None and "--version" in argv:
        return []  # argparse prints it and exits before any command's parser is needed
    return list(_MODULES)


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
    for module in _modules_for(argv) if argv is not None else list(_MODULES):
        try:
            mod = importlib.import_module(f"cove.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"cove.cli.{module}":
                raise
            continue  # a command group this build does not have
        mod.register(sub, common)
    return parser


def _split_after_dashes(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """For ``exec``, cut argv at the first ``--``: the rest is the command.

    Only when the command word before ``--`` is ``exec``, so a ``--`` given
    to another command keeps argparse's meaning.
    """
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    i = 0
    while i < cut:
        token = argv[i]
        if token in _VALUED:
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        if token == "exec":
            return argv[:cut], argv[cut + 1:]
        break
    return argv, None


def _print_error(message: str) -> None:
    try:
        sys.stderr.write(f"Error: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one ``cove`` command line; return its exit status."""
    args_in = sys.argv[1:] if argv is None else list(argv)
    ctx: Context | None = None
    try:
        head, after = _split_after_dashes(args_in)
        parser = build_parser(head)
        try:
            args = parser.parse_args(head)
        except SystemExit as e:  # --help, --version, usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        args.after = after
        func = getattr(args, "func", None)
        if func is None:
            target = getattr(args, "help_parser", None) or parser
            target.print_help()
            return 0 if target is parser else 2
        ctx = Context(args.root or default_root(), quiet=bool(args.quiet),
                      project=args.project or None)
        code = int(func(ctx, args) or 0)
        sys.stdout.flush()  # here, so a closed pipe is handled below, not at exit
        return code
    except UsageError as e:
        _print_error(str(e))
        return 2
    except CoveError as e:
        _print_error(str(e))
        return 1
    except KeyboardInterrupt:
        try:
            sys.stderr.write("\n")
        except (OSError, ValueError):
            pass
        return 130
    except BrokenPipeError:
        # The reader went away (``cove list | head``); say nothing more.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except OSError as e:  # a local file: push source, pull destination
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _print_error(f"{e.strerror or e}{where}")
        return 1
    except Exception as e:
        if os.environ.get("COVE_DEBUG"):
            raise
        _print_error(f"internal error: {type(e).__name__}: {e}")
        return 1
    finally:
        if ctx is not None:
            ctx.close()


if __name__ == "__main__":
    sys.exit(main())
