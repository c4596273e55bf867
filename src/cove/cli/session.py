"""``cove session start|list|stop``: per-user app sessions (``cove.sessions``).

A session is one container per (user, app) in a realm (a project, made on
first use), with the app's port published on a free port of the host. The
commands are the ``SessionManager`` calls; ``cove.sessions`` is imported
only when one runs, so the CLI's start stays fast.
"""

from __future__ import annotations

import argparse

from cove.cli import render
from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.sessions import Session, SessionManager

__all__ = ["LIST_HEADERS", "register", "session_rows"]

_RAW = argparse.RawDescriptionHelpFormatter
LIST_HEADERS = ("NAME", "USER", "APP", "URL", "ADDRESS", "IMAGE", "STATUS")


def _manager(ctx: Context, args: argparse.Namespace) -> SessionManager:
    from cove.sessions import SessionManager

    return SessionManager(ctx.client(), realm=args.realm, app_port=args.app_port,
                          host_address=args.host_address,
                          publish=getattr(args, "publish", "proxy"))


def _volumes(specs: list[str]) -> dict[str, dict[str, str]]:
    """``HOST:PATH[:ro|rw]`` each."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(f"bad volume {spec!r}: HOST_PATH:PATH[:ro|rw]")
        out[parts[0]] = {"bind": parts[1], "mode": parts[2] if len(parts) == 3 else "rw"}
    return out


def session_rows(sessions: list[Session]) -> list[list[str]]:
    return [[s.name, s.user, s.app_id, s.urlpath, f"{s.ip}:{s.port}", s.image, s.status]
            for s in sessions]


def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    m = _manager(ctx, args)
    s = m.start(args.user, args.image, args.app, base_urlpath=args.base_urlpath,
                volumes=_volumes(args.volume), environment=parse_kv(args.env, "KEY=VALUE"),
                limits=parse_kv(args.limit, "KEY=VALUE"),
                profiles=args.profile or None)
    for path in s.skipped_volumes:
        ctx.err.write(f"Warning: {path} does not exist: not mounted\n")
    if args.format == "json":
        ctx.out.write(render.json_text(s.to_dict()))
    else:
        ctx.info(f"Session {s.name} started: http://{s.ip}:{s.port} ({s.urlpath})")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    found = _manager(ctx, args).find(user=args.user, app_id=args.app, url_id=args.url_id)
    ctx.out.write(render.render(args.format, LIST_HEADERS, session_rows(found),
                                [s.to_dict() for s in found]))
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    m = _manager(ctx, args)
    if args.name:
        if args.user is not None or args.app is not None:
            raise UsageError("give a session NAME or --user and --app, not both")
        names = [args.name]
    elif args.user is not None and args.app is not None:
        names = [s.name for s in m.find(user=args.user, app_id=args.app)]
    else:
        raise UsageError("give a session NAME, or --user and --app")
    for name in names:
        m.stop_and_remove(name)
        ctx.info(f"Session {name} removed")
    return 0


def cmd_sweep(ctx: Context, args: argparse.Namespace) -> int:
    for name in _manager(ctx, args).sweep_stale():
        ctx.info(f"Stale start {name} removed")
    return 0


def _realm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--realm", default="cove",
                   help="the realm (a project, made on first use; default: cove)")
    p.add_argument("--app-port", type=int, default=8888,
                   help="the app's port in the container (default 8888)")
    p.add_argument("--host-address", default="127.0.0.1",
                   help="the host address the app port is published on")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "session", parents=[common], help="Manage per-user app sessions",
        description="An app session is one container per user and app, in a realm (a "
                    "project made on first use), its app port published on a free port "
                    "of the host, found again by labels. A second start of the same user "
                    "and app replaces the first; one while another is in flight fails.",
        epilog="commands:\n  start, list, stop, sweep\n\n"
               "examples:\n"
               "  cove session start ann@example.org jupyter notebook --base-urlpath /user/ann/\n"
               "  cove session list --user ann@example.org\n"
               "  cove session stop --user ann@example.org --app notebook",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    ssub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = ssub.add_parser(
        "start", parents=[common], help="Start a fresh session",
        description="Start a session of APP for USER from IMAGE (an alias or fingerprint), "
                    "removing the user's old one of that app first.",
        epilog="examples:\n"
               "  cove session start ann@example.org jupyter notebook --base-urlpath /user/ann/\n"
               "  cove session start bob app1 app1 --base-urlpath /u/bob/ -v /srv/data:/data:ro "
               "-e MODE=demo -l memory=256MiB",
        formatter_class=_RAW)
    p.add_argument("user")
    p.add_argument("image")
    p.add_argument("app")
    p.add_argument("--base-urlpath", default="/", help="the user's base URL path")
    p.add_argument("-v", "--volume", metavar="HOST:PATH[:ro]", action="append", default=[])
    p.add_argument("-e", "--env", metavar="KEY=VALUE", action="append", default=[])
    p.add_argument("-l", "--limit", metavar="KEY=VALUE", action="append", default=[],
                   help="a limits.* key (the prefix may be left out)")
    p.add_argument("-p", "--profile", action="append", default=[])
    p.add_argument("-f", "--format", choices=("text", "json"), default="text")
    p.add_argument("--publish", choices=("proxy", "nat"), default="proxy",
                   help="publish the app port by a forwarder process (proxy, the default) "
                        "or by NAT rules (nat: no process; the app listens on the "
                        "instance's address)")
    _realm_args(p)
    p.set_defaults(func=cmd_start)

    p = ssub.add_parser("list", aliases=["ls"], parents=[common], help="List sessions",
                        description="List the realm's sessions (all, or those matching).",
                        epilog="examples:\n  cove session list\n"
                               "  cove session list --user ann@example.org -f json",
                        formatter_class=_RAW)
    p.add_argument("--user")
    p.add_argument("--app")
    p.add_argument("--url-id")
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    _realm_args(p)
    p.set_defaults(func=cmd_list)

    p = ssub.add_parser("stop", aliases=["rm"], parents=[common],
                        help="Stop and remove a session",
                        description="Stop and remove a session, by name or by user and app. "
                                    "Gone already: nothing to do.",
                        epilog="examples:\n  cove session stop s-ann-notebook-0123456789ab\n"
                               "  cove session stop --user ann@example.org --app notebook",
                        formatter_class=_RAW)
    p.add_argument("name", nargs="?")
    p.add_argument("--user")
    p.add_argument("--app")
    _realm_args(p)
    p.set_defaults(func=cmd_stop)

    p = ssub.add_parser("sweep", parents=[common], help="Remove starts whose starter died",
                        description="Remove the instances of session starts whose starter "
                                    "died before the start finished (their lease ran out). "
                                    "Starts in flight are left alone.",
                        epilog="examples:\n  cove session sweep --realm portal",
                        formatter_class=_RAW)
    _realm_args(p)
    p.set_defaults(func=cmd_sweep)
