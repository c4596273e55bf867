"""``cove project list|create|delete|show|set|unset|get|rename|switch|info``.

The same words as ``lxc project``. ``switch`` records the current project
of this root in the CLI's config (``cove.cli.context.save_project``); every
other command then works in it, unless ``--project`` or ``$COVE_PROJECT``
says otherwise.
"""

from __future__ import annotations

import argparse
from urllib.parse import quote

from cove.cli import render
from cove.cli.context import Context, UsageError, parse_kv, save_project

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIST_HEADERS", "project_rows", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

LIST_HEADERS = ("NAME", "IMAGES", "PROFILES", "STORAGE VOLUMES", "NETWORKS", "DESCRIPTION",
                "USED BY")
_FEATURES = ("features.images", "features.profiles", "features.storage.volumes",
             "features.networks")


def _path(name: str) -> str:
    return "/1.0/projects/" + quote(name, safe="")


def _sync(ctx: Context, method: str, path: str, body: Any = None) -> Any:
    from cove.client._http import parse_envelope

    return parse_envelope(ctx.client().raw(method, path, body)).get("metadata")


def _get(ctx: Context, name: str) -> dict[str, Any]:
    got = _sync(ctx, "GET", _path(name))
    if not isinstance(got, dict):
        raise UsageError(f"the server sent no project for {name!r}")
    return got


def project_rows(projects: list[dict[str, Any]], current: str) -> list[list[str]]:
    rows = []
    for p in projects:
        name = str(p.get("name", ""))
        config = p.get("config") or {}
        flags = ["YES" if str(config.get(k, "")).lower() == "true" else "NO" for k in _FEATURES]
        rows.append([name + (" (current)" if name == current else ""), *flags,
                     str(p.get("description", "")), str(len(p.get("used_by") or []))])
    return rows


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    projects = _sync(ctx, "GET", "/1.0/projects?recursion=1") or []
    ctx.out.write(render.render(args.format, LIST_HEADERS, project_rows(projects, ctx.project),
                                projects))
    return 0


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    config = parse_kv(args.config, "KEY=VALUE")
    _sync(ctx, "POST", "/1.0/projects", {"name": args.name, "config": config,
                                          "description": args.description or ""})
    ctx.info(f"Project {args.name} created")
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    for name in args.names:
        _sync(ctx, "DELETE", _path(name))
        ctx.info(f"Project {name} deleted")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    p = _get(ctx, args.name)
    shown = {k: p[k] for k in ("name", "description", "config", "used_by") if k in p}
    ctx.out.write(render.yaml_text(shown))
    return 0


def _pairs(items: list[str]) -> dict[str, str]:
    if len(items) == 2 and "=" not in items[0]:
        return {items[0]: items[1]}  # KEY VALUE
    return parse_kv(items, "KEY=VALUE (or KEY VALUE)")


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    changes = _pairs(list(args.items))
    if not changes:
        raise UsageError("give KEY VALUE or KEY=VALUE...")
    _sync(ctx, "PATCH", _path(args.name), {"config": changes})
    return 0


def cmd_unset(ctx: Context, args: argparse.Namespace) -> int:
    p = _get(ctx, args.name)
    config = dict(p.get("config") or {})
    if not [k for k in args.keys if config.pop(k, None) is not None]:
        return 0
    _sync(ctx, "PUT", _path(args.name), {"config": config,
                                         "description": p.get("description", "")})
    return 0


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    value = (_get(ctx, args.name).get("config") or {}).get(args.key, "")
    ctx.out.write(f"{value}\n")
    return 0


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    from cove.client._http import parse_envelope

    client = ctx.client()
    env = parse_envelope(client.raw("POST", _path(args.name), {"name": args.new_name}))
    op = env.get("metadata")
    if env.get("type") == "async" and isinstance(op, dict):
        client.wait_operation(str(op.get("id", "")))
    if ctx.project == args.name:
        save_project(ctx.root, args.new_name)
    ctx.info(f"Project {args.name} renamed to {args.new_name}")
    return 0


def cmd_switch(ctx: Context, args: argparse.Namespace) -> int:
    _get(ctx, args.name)  # NotFound for a project that is not there
    save_project(ctx.root, args.name)
    return 0


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    state = _sync(ctx, "GET", _path(args.name) + "/state") or {}
    resources = state.get("resources") or {}
    rows = []
    for key in sorted(resources):
        r = resources[key] or {}
        limit, usage = int(r.get("limit", -1)), int(r.get("usage", 0))
        if key in ("memory", "disk"):
            shown = ("UNLIMITED" if limit < 0 else render.bytes_iec(limit),
                     render.bytes_iec(usage))
        else:
            shown = ("UNLIMITED" if limit < 0 else str(limit), str(usage))
        rows.append([key.upper(), *shown])
    ctx.out.write(render.render(args.format, ("RESOURCE", "LIMIT", "USAGE"), rows, state))
    return 0


def _name_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="PROJECT")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "project", parents=[common], help="Manage projects",
        description="Projects split one cove into separate sets of instances, each with "
                    "its own names and limits (LXD's projects). The current project is "
                    "'default' until 'cove project switch'; --project or $COVE_PROJECT "
                    "picks one for a single command.",
        epilog="commands:\n  list, create, delete, show, set, unset, get, rename, switch, "
               "info\n\n"
               "examples:\n"
               "  cove project create dev -c limits.instances=5\n"
               "  cove project switch dev         later commands work in dev\n"
               "  cove launch busybox web         'web' of dev ('default' may have one too)\n"
               "  cove list --project default\n"
               "  cove project info dev           limits and usage\n\n"
               "Run 'cove project COMMAND --help' for more.",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    psub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = psub.add_parser("list", aliases=["ls"], parents=[common], help="List projects",
                        description="List projects; the current one is marked.",
                        epilog="examples:\n  cove project list\n  cove project list -f json",
                        formatter_class=_RAW)
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)

    p = psub.add_parser(
        "create", parents=[common], help="Create a project",
        description="Create a project. Unless told otherwise it has its own images, "
                    "profiles and storage volumes (features.*=true) and uses the default "
                    "project's networks. Limits: limits.instances, limits.containers, "
                    "limits.memory, limits.cpu, limits.processes.",
        epilog="examples:\n  cove project create dev\n"
               "  cove project create small -c limits.memory=1GiB -c limits.instances=3",
        formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("-c", "--config", metavar="KEY=VALUE", action="append", default=[])
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_create)

    p = psub.add_parser("delete", aliases=["rm"], parents=[common], help="Delete projects",
                        description="Delete empty projects ('default' stays).",
                        epilog="examples:\n  cove project delete dev", formatter_class=_RAW)
    p.add_argument("names", metavar="PROJECT", nargs="+")
    p.set_defaults(func=cmd_delete)

    p = psub.add_parser("show", parents=[common], help="Print a project as YAML",
                        description="Print a project's config and users as YAML.",
                        epilog="examples:\n  cove project show dev", formatter_class=_RAW)
    _name_arg(p)
    p.set_defaults(func=cmd_show)

    p = psub.add_parser("set", parents=[common], help="Set project config keys",
                        description="Set config keys; a new limit must fit what the project "
                                    "already uses.",
                        epilog="examples:\n  cove project set dev limits.instances 10\n"
                               "  cove project set dev limits.memory=2GiB user.owner=me",
                        formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("items", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(func=cmd_set)

    p = psub.add_parser("unset", parents=[common], help="Remove project config keys",
                        description="Remove config keys.",
                        epilog="examples:\n  cove project unset dev limits.memory",
                        formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("keys", metavar="KEY", nargs="+")
    p.set_defaults(func=cmd_unset)

    p = psub.add_parser("get", parents=[common], help="Print one project config value",
                        description="Print the value of one config key (empty if unset).",
                        epilog="examples:\n  cove project get dev limits.instances",
                        formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_get)

    p = psub.add_parser("rename", parents=[common], help="Rename an empty project",
                        description="Rename a project that holds no instances.",
                        epilog="examples:\n  cove project rename dev staging",
                        formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("new_name", metavar="NEW")
    p.set_defaults(func=cmd_rename)

    p = psub.add_parser("switch", parents=[common], help="Make a project the current one",
                        description="Later commands on this root work in PROJECT (kept in "
                                    "$XDG_CONFIG_HOME/cove/config.json).",
                        epilog="examples:\n  cove project switch dev\n"
                               "  cove project switch default", formatter_class=_RAW)
    _name_arg(p)
    p.set_defaults(func=cmd_switch)

    p = psub.add_parser("info", parents=[common], help="Show a project's limits and usage",
                        description="Each resource's limit and what the project uses.",
                        epilog="examples:\n  cove project info dev", formatter_class=_RAW)
    _name_arg(p)
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_info)
