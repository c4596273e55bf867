"""The ``cove`` command: parse, call the client, render.

Design note: this runs on every call, so it imports the standard library
and cove's own small modules only (``python -X importtime -m cove.cli.main
list`` shows the bill). The hot commands' lines are read by ``cli._fast``
without argparse; the rest, ``--help`` and usage errors go to argparse
(``cli._parser``), with the same words and exit codes. Every command module
registers its parsers with ``register(sub, common)`` and handles ``(ctx, args) -> exit code``. Errors
become one line ``Error: <message>`` on stderr: exit 1 for a failed action,
2 for a wrong command line, 130 on Ctrl-C; ``exec`` exits with the
command's own code. Set ``COVE_DEBUG=1`` to get a traceback for an
unexpected exception instead.
"""

from __future__ import annotations

import os
import sys

from cove.cli import _fast
from cove.cli.context import Context, UsageError, default_root
from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.cli._parser import Parser

__all__ = ["build_parser", "main", "run"]


def build_parser(argv: list[str] | None = None) -> Parser:
    """argparse's parser for ``argv`` (every command's without one)."""
    from cove.cli._parser import build_parser as build

    return build(argv)


def _split_after_dashes(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """For ``exec`` and ``start``, cut argv at the first ``--``: the rest is
    the command.

    Only when the command word before ``--`` is one of those, so a ``--`` given
    to another command keeps argparse's meaning.
    """
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    i = 0
    while i < cut:
        token = argv[i]
        if token in ("--root", "--project"):  # _parser.VALUED
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        if token in ("exec", "start"):  # start NAME -- CMD: once with CMD
            return argv[:cut], argv[cut + 1:]
        break
    return argv, None


def _parse_slow(head: list[str]) -> tuple[Any, Any] | int:
    """argparse's reading of ``head``: (args, the command's function), or the
    exit status when argparse printed help, the version or a usage error."""
    parser = build_parser(head)
    try:
        args = parser.parse_args(head)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    func = getattr(args, "func", None)
    if func is None:
        target = getattr(args, "help_parser", None) or parser
        target.print_help()
        return 0 if target is parser else 2
    return args, func


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
        fast = _fast.parse(head)
        if fast == _fast.VERSION:
            from cove import __version__

            sys.stdout.write(f"cove {__version__}\n")  # what argparse's version action prints
            sys.stdout.flush()
            return 0
        args: Any
        if isinstance(fast, tuple):
            module, name, args = fast
            func = getattr(__import__(f"cove.cli.{module}", fromlist=[name]), name)
        else:
            parsed = _parse_slow(head)
            if isinstance(parsed, int):
                return parsed
            args, func = parsed
        args.after = after
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


def run() -> None:
    """The ``cove`` console script: ``main()``, then the process ends without
    Python's teardown.

    Design note: tearing the interpreter down (every module's namespace
    cleared, a last garbage collection) is 1.5-2.5 ms of every command here
    (``cove --version`` 13.7 -> 12.1 ms, ``cove list`` 24.5 -> 21.8 ms,
    medians of 40, interleaved) and does nothing a finished command needs.
    Exit handlers still run and the standard streams are flushed first. If a
    thread that is not a daemon still runs (no command leaves one), the
    normal exit waits for it as before.
    """
    code = main()
    threading = sys.modules.get("threading")
    if threading is not None and any(
            not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # what Python's own exit gives a failed flush
    os._exit(code)


if __name__ == "__main__":
    run()
