"""``cove up|down|ps`` and ``cove stack list``: stacks from Compose files, as
``docker compose`` runs them (``-f FILE``, ``-p NAME``, ``-d``, ``down -v``).

The stack's name is ``-p``, else ``$COMPOSE_PROJECT_NAME``, else the file's
``name:``, else its folder's name. Its services are ordinary instances named
``STACK-SERVICE`` (``cove list``, ``lxc`` and pylxd see them); ``cove logs
SERVICE`` in the stack's folder shows a service's console. Everything in a
file is checked before anything is made (the key and line of a fault are
named); what the file means is ``cove.model.compose``, how a stack is
brought up ``cove.client.stack``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from cove.cli import render
from cove.cli.context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.client.stack import Stack

__all__ = ["register", "service_instance"]

_RAW = argparse.RawDescriptionHelpFormatter
_PS_HEADERS = ("NAME", "SERVICE", "IMAGE", "STATUS")


def _stack(ctx: Context, args: argparse.Namespace, *, need_file: bool) -> Stack:
    """The stack the command line names (a file's, or only a name)."""
    from cove.client.drivers.rest import RestDriver
    from cove.client.stack import COMPOSE_FILES, Stack, find_file, load
    from cove.model.compose import normalize_stack_name

    # the file first: a bad one is refused before coved is even asked
    path = args.file
    if path is None and (need_file or any(os.path.isfile(f) for f in COMPOSE_FILES)):
        path = find_file()
    plan = load(path, name=args.project_name) if path is not None else None
    ctx.client()  # coved answers (started here if it is not running)
    driver = RestDriver(ctx.socket_path, project=ctx.project)
    if plan is not None:
        return Stack(driver, plan)
    name = args.project_name or os.environ.get("COMPOSE_PROJECT_NAME") or \
        os.path.basename(os.getcwd())
    return Stack(driver, name=normalize_stack_name(name))


def cmd_up(ctx: Context, args: argparse.Namespace) -> int:
    """Through the asyncio driver: the services of one dependency level are
    created and started at once (the sync drivers do them in turn)."""
    import asyncio

    from cove.client.aio import AsyncRestDriver
    from cove.client.stack import AsyncStack, StackChange

    stack = _stack(ctx, args, need_file=True)

    def report(change: StackChange) -> None:
        ctx.info(f"{change.instance}: {change.action}")

    async def up() -> None:
        async with AsyncRestDriver(ctx.socket_path, project=ctx.project) as driver:
            await AsyncStack(driver, stack.plan).up(report)

    asyncio.run(up())
    if args.detach:
        return 0
    return _attach(ctx, stack)


def _attach(ctx: Context, stack: Stack) -> int:
    """Print every service's console, prefixed, until Ctrl-C; then stop the
    stack (dependents first), as ``docker compose up`` without ``-d``."""
    from cove.client import Client

    members = [i.name for i in stack.ps()]
    width = max((len(n) for n in members), default=0)
    lock = threading.Lock()
    out = ctx.binary_out()

    def follow(name: str) -> None:
        client = Client(ctx.socket_path, project=ctx.project)
        prefix = f"{name.ljust(width)} | ".encode()
        pending = b""
        try:
            for chunk in client.follow_logs(name):
                pending += chunk
                *whole, pending = pending.split(b"\n")
                with lock:
                    out.write(b"".join(prefix + line + b"\n" for line in whole))
                    out.flush()
        except Exception:  # noqa: BLE001 - the instance went away; its stream ends
            return
        finally:
            client.close()

    ctx.info(f"Attaching to {', '.join(members)} (Ctrl-C stops the stack)")
    threads = [threading.Thread(target=follow, args=(n,), daemon=True) for n in members]
    try:  # from the first thread on: a Ctrl-C as soon as output shows stops the stack
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        sys.stderr.write("\nStopping the stack\n")
        stack.stop()
        return 130
    return 0


def cmd_down(ctx: Context, args: argparse.Namespace) -> int:
    stack = _stack(ctx, args, need_file=False)
    for name in stack.down(volumes=args.volumes):
        ctx.info(f"{name}: removed")
    return 0


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    stack = _stack(ctx, args, need_file=False)
    members = stack.ps()
    rows = [[i.name, i.config.get("user.cove.service", ""), i.config.get("user.cove.image", ""),
             i.status.upper()] for i in members]
    ctx.out.write(render.render(args.format, _PS_HEADERS, rows, [i.to_wire() for i in members]))
    return 0


def cmd_stack_list(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client.drivers.rest import RestDriver

    ctx.client()
    stacks = RestDriver(ctx.socket_path, project=ctx.project).stacks()
    rows = [[name, str(sum(counts.values())),
             ", ".join(f"{status}({n})" for status, n in sorted(counts.items()))]
            for name, counts in stacks.items()]
    raw: list[dict[str, Any]] = [{"name": n, "instances": c} for n, c in stacks.items()]
    ctx.out.write(render.render(args.format, ("NAME", "INSTANCES", "STATUS"), rows, raw))
    return 0


def service_instance(ctx: Context, service: str, stack: str | None) -> str | None:
    """The instance of ``service`` in ``stack`` (else the stack of the
    Compose file in this folder), or None when there is no such stack file."""
    from cove.client.stack import COMPOSE_FILES, load
    from cove.model.compose import normalize_stack_name

    if stack:
        return f"{normalize_stack_name(stack)}-{service}"
    if not any(os.path.isfile(f) for f in COMPOSE_FILES):
        return None
    plan = load()
    return next((s.instance for s in plan.services if s.name == service), None)


# -- parsers -----------------------------------------------------------------------------

def _stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", metavar="FILE",
                   help="the Compose file (default: compose.yaml, docker-compose.yml... here)")
    p.add_argument("-p", "--project-name", metavar="NAME",
                   help="the stack's name (default: $COMPOSE_PROJECT_NAME, the file's name:, "
                        "the folder's name)")


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", "-F", default="table",
                   choices=("table", "compact", "csv", "json", "yaml"))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "up", parents=[common], help="Create and start a stack from a Compose file",
        description="Create the stack's network, volumes and instances and start them in "
                    "dependency order. Again after an edit: unchanged services are left "
                    "alone, changed ones recreated, removed ones deleted.",
        epilog="examples:\n  cove up -d\n  cove up -f app.yaml -p demo -d\n"
               "  cove up                 follow the services' output; Ctrl-C stops them",
        formatter_class=_RAW)
    _stack_options(p)
    p.add_argument("-d", "--detach", action="store_true",
                   help="return once the stack runs (else follow its output)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", parents=[common], help="Stop and delete a stack",
                       description="Delete the stack's instances (dependents first) and the "
                                   "networks it made; with -v its volumes too.",
                       epilog="examples:\n  cove down\n  cove down -p demo -v",
                       formatter_class=_RAW)
    _stack_options(p)
    p.add_argument("-v", "--volumes", action="store_true",
                   help="also delete the named volumes the stack made")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("ps", parents=[common], help="List a stack's instances",
                       description="The instances of the stack, with their service.",
                       epilog="examples:\n  cove ps\n  cove ps -p demo --format json",
                       formatter_class=_RAW)
    _stack_options(p)
    _format(p)
    p.set_defaults(func=cmd_ps)
    p = sub.add_parser("stack", parents=[common], help="Stacks on the host",
                       description="cove stack list: every stack and its instances' states.",
                       epilog="examples:\n  cove stack list\n  cove stack ls --format json",
                       formatter_class=_RAW)
    ssub = p.add_subparsers(dest="stack_command", metavar="COMMAND", required=True)
    q = ssub.add_parser("list", aliases=["ls"], parents=[common], help="List the stacks",
                        description="Every stack (instances labelled user.cove.stack), with "
                                    "the count of its instances in each state.",
                        epilog="examples:\n  cove stack list", formatter_class=_RAW)
    _format(q)
    q.set_defaults(func=cmd_stack_list)
