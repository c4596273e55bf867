"""``cove console NAME``: the instance's console, as ``lxc console``.

Attached, the terminal is in raw mode and everything typed goes to the
console; Ctrl+a then q detaches (what runs on the console goes on), Ctrl+a
twice sends one Ctrl+a. Window resizes follow. ``--show-log`` prints the
console log instead, ``--clear-log`` empties it. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from cove.cli.context import Context, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cmd_console", "register"]

_EPILOG = """\
examples:
  cove console c1               attach (Ctrl+a q detaches)
  cove console c1 --show-log    what the console showed so far
  cove console c1 --clear-log   empty the console log

An instance has a console when it runs its image's init (no cove.cmd); for
busybox, an /etc/inittab line '::respawn:-/bin/sh' puts a shell on it."""


def cmd_console(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    if args.show_log and args.clear_log:
        raise UsageError("--show-log and --clear-log contradict each other")
    if args.show_log:
        out = ctx.binary_out()
        out.write(client.console_log(args.name))
        out.flush()
        return 0
    if args.clear_log:
        client.clear_console_log(args.name)
        return 0
    import termios
    import tty

    from cove.client._console import DETACH_HINT

    try:
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
    except (AttributeError, OSError, ValueError, termios.error):
        raise UsageError("cove console needs a terminal (or use --show-log)") from None
    width, height = _terminal_size()
    session = client.console(args.name, width, height)
    ctx.err.write(DETACH_HINT + "\n")
    ctx.err.flush()

    def resize(_signum: int, _frame: Any) -> None:
        session.resize(*_terminal_size())

    saved = signal.signal(signal.SIGWINCH, resize)
    try:
        tty.setraw(fd, termios.TCSANOW)
        session.run(fd, sys.stdout.fileno())
    finally:
        signal.signal(signal.SIGWINCH, saved)
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
    ctx.err.write("\n")
    return 0


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return 80, 24
    return size.columns, size.lines


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("console", parents=[common], help="Attach to an instance's console",
                       description="Attach to the console of a running instance, or show "
                                   "its log.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="instance name")
    p.add_argument("--show-log", action="store_true", help="print the console log and exit")
    p.add_argument("--clear-log", action="store_true", help="empty the console log and exit")
    p.set_defaults(func=cmd_console)
