"""``cove exec NAME [options] -- CMD...``: run a command in an instance.

Design note: with a terminal on both stdin and stdout (or ``-t``) the
command gets a pty: the local terminal goes raw, every byte goes through,
and SIGWINCH becomes a ``window-resize`` control message. Otherwise stdin,
stdout and stderr are three streams, and the signals a user sends to
``cove`` (INT, TERM, HUP, QUIT, USR1, USR2) are forwarded to the command;
a third Ctrl-C gives up on it and exits 130. Either way cove exits with the
command's exit code.
"""

from __future__ import annotations

import _signal  # signal's constants and handlers without the enums signal builds (~2 ms)
import os
import sys

from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from cove.client import ExecResult, ExecSession

__all__ = ["register", "user_or_id"]

_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

_EPILOG = """\
examples:
  cove exec c1 -- ls -l /
  cove exec c1 -- sh                          a shell (a pty when on a terminal)
  cove exec c1 --env FOO=bar --cwd /tmp -- env
  cove exec c1 --user nobody -- id            user and group: names or numbers
  echo hello | cove exec c1 -- cat            stdin is copied in
  cove exec -T c1 -- sh -c 'exit 3'; echo $?  prints 3: cove exits with the command's code
  cove exec -n c1 -- sleep 10                 no stdin
  cove exec --stopped c1 -- ls /etc           on a stopped instance, without its init"""


def user_or_id(value: str | None) -> int | str | None:
    """``"1000"`` → 1000 (an id); any other text is a name the server resolves."""
    if value is None or value == "":
        return None
    return int(value) if value.isdigit() else value


def _stdin_source(disabled: bool) -> Any:
    if disabled:
        return None
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return getattr(sys.stdin, "buffer", None)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def cmd_exec(ctx: Context, args: argparse.Namespace) -> int:
    command = list(args.command or []) + list(args.after or [])
    if not command:
        raise UsageError("no command given (cove exec NAME -- CMD...)")
    if args.tty and args.no_tty:
        raise UsageError("-t and -T contradict each other")
    env = parse_kv(args.env, "KEY=VALUE for --env")
    stopped = bool(getattr(args, "stopped", False))
    if args.tty and stopped:
        raise UsageError("--stopped runs without a terminal: drop -t")
    if args.tty:
        interactive = True
    elif args.no_tty or stopped:
        interactive = False
    else:
        interactive = _isatty(sys.stdin) and _isatty(sys.stdout) and not args.no_stdin
    width = height = None
    if interactive:
        env.setdefault("TERM", os.environ.get("TERM") or "xterm")
        width, height = _terminal_size()
    client = ctx.client()
    session = client.exec_start(args.name, command, environment=env,
                                user=user_or_id(args.user), group=user_or_id(args.group),
                                cwd=args.cwd, interactive=interactive, stopped=stopped,
                                width=width, height=height)
    out = ctx.binary_out()
    err = _binary(ctx.err)
    if interactive:
        result = _run_interactive(session, out)
    else:
        result = _run_streams(session, _stdin_source(args.no_stdin), out, err)
    code = result.exit_code
    return code if 0 <= code <= 255 else code & 0xFF


def _binary(stream: Any) -> Any:
    stream.flush()
    return getattr(stream, "buffer", stream)


def _terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return 80, 24
    return size.columns, size.lines


def _run_streams(session: ExecSession, stdin: Any, out: Any, err: Any) -> ExecResult:
    presses = [0]

    def forward(signum: int, _frame: Any) -> None:
        if signum == _signal.SIGINT:
            presses[0] += 1
            if presses[0] >= 3:
                raise KeyboardInterrupt
        session.signal(signum)

    saved = _install(forward, _FORWARDED)
    try:
        return session.run(stdin, out, err)
    finally:
        _restore(saved)


def _run_interactive(session: ExecSession, out: Any) -> ExecResult:
    import termios
    import tty

    fd: int | None = None
    old: Any = None
    try:
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed ahead
    except (AttributeError, OSError, ValueError, termios.error):
        old = None  # not a terminal (forced -t): no raw mode to set or restore

    def resize(_signum: int, _frame: Any) -> None:
        session.resize(*_terminal_size())

    def forward(signum: int, _frame: Any) -> None:
        session.signal(signum)

    saved = _install(resize, ("SIGWINCH",)) + _install(forward, ("SIGTERM", "SIGHUP"))
    try:
        return session.run(fd if fd is not None else _stdin_source(False), out, None)
    finally:
        _restore(saved)
        if old is not None and fd is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _install(handler: Any, names: tuple[str, ...]) -> list[tuple[int, Any]]:
    saved = []
    for name in names:
        signum = getattr(_signal, name, None)
        if signum is None:
            continue
        try:
            saved.append((signum, _signal.signal(signum, handler)))
        except (OSError, ValueError):  # not the main thread, or not a real signal
            pass
    return saved


def _restore(saved: list[tuple[int, Any]]) -> None:
    for signum, old in saved:
        try:
            _signal.signal(signum, old)
        except (OSError, ValueError):
            pass


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    import argparse  # only when parsers are built: the fast path (cli._fast) skips it

    p = sub.add_parser("exec", parents=[common], help="Run a command in an instance",
                       description="Run a command in a running instance. Put the command "
                                   "after '--'. cove exits with the command's exit code.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="instance name")
    p.add_argument("command", metavar="CMD", nargs="*",
                   help="the command and its arguments (after '--')")
    p.add_argument("--env", action="append", metavar="KEY=VALUE",
                   help="set an environment variable (repeatable)")
    p.add_argument("--user", metavar="USER", help="user name or uid to run as")
    p.add_argument("--group", metavar="GROUP", help="group name or gid to run as")
    p.add_argument("--cwd", metavar="DIR", help="directory to run in")
    p.add_argument("-t", "--tty", action="store_true", help="force a pty (interactive)")
    p.add_argument("-T", "--no-tty", action="store_true", help="never use a pty")
    p.add_argument("-n", "--no-stdin", action="store_true", help="do not read stdin")
    p.add_argument("--stopped", action="store_true",
                   help="run in a temporary container on the stopped instance's rootfs "
                        "and config (its disks, NICs and users), without its init")
    p.set_defaults(func=cmd_exec)
