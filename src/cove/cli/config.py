"""``cove config show|get|set|unset``: an instance's configuration.

``set`` merges with ``PATCH {"config": {...}}``; ``unset`` fetches the
instance and ``PUT``s it back without the key (a PATCH cannot remove one).
"""

from __future__ import annotations

import argparse

from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PUT_FIELDS", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

#: The writable fields of an instance (LXD's InstancePut).
PUT_FIELDS = ("architecture", "config", "devices", "ephemeral", "profiles", "stateful",
              "description")


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    inst = ctx.client().instance(args.name)
    shown = {k: inst[k] for k in PUT_FIELDS if k in inst}
    if args.expanded:
        shown["config"] = inst.get("expanded_config", shown.get("config", {}))
        shown["devices"] = inst.get("expanded_devices", shown.get("devices", {}))
    try:
        from cove.cli.render import yaml_text

        ctx.out.write(yaml_text(shown))
    except ImportError:
        from cove.cli.render import json_text

        ctx.out.write(json_text(shown))
    return 0


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    inst = ctx.client().instance(args.name)
    config = inst.get("expanded_config" if args.expanded else "config") or {}
    ctx.out.write(f"{config.get(args.key, '')}\n")
    return 0


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    items = list(args.items)
    if len(items) == 2 and "=" not in items[0]:
        changes = {items[0]: items[1]}  # cove config set c1 KEY VALUE
    else:
        changes = parse_kv(items, "KEY=VALUE (or KEY VALUE)")
    if not changes:
        raise UsageError("give KEY VALUE or KEY=VALUE...")
    ctx.client().update_instance(args.name, {"config": changes}, patch=True).wait()
    return 0


def cmd_unset(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    inst = client.instance(args.name)
    config = dict(inst.get("config") or {})
    removed = [k for k in args.keys if config.pop(k, None) is not None]
    if not removed:
        return 0
    body = {k: inst[k] for k in PUT_FIELDS if k in inst}
    body["config"] = config
    client.update_instance(args.name, body).wait()
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("config", parents=[common], help="Show or change instance config",
                           description="Show or change an instance's configuration.",
                           epilog="commands:\n  show, get, set, unset\n\n"
                                  "Run 'cove config COMMAND --help' for examples.",
                           formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    csub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = csub.add_parser("show", parents=[common], help="Print an instance's config as YAML",
                        description="Print an instance's writable fields as YAML.",
                        epilog="examples:\n  cove config show c1\n"
                               "  cove config show --expanded c1     with profiles applied",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--expanded", action="store_true", help="include what profiles add")
    p.set_defaults(func=cmd_show)

    p = csub.add_parser("get", parents=[common], help="Print one config value",
                        description="Print one config value (an empty line if unset).",
                        epilog="examples:\n  cove config get c1 limits.memory",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("key", metavar="KEY")
    p.add_argument("--expanded", action="store_true", help="include what profiles add")
    p.set_defaults(func=cmd_get)

    p = csub.add_parser("set", parents=[common], help="Set config values",
                        description="Set config values (merged into the existing config).",
                        epilog="examples:\n"
                               "  cove config set c1 limits.memory 256MiB\n"
                               "  cove config set c1 limits.cpu=1 environment.FOO=bar",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("items", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(func=cmd_set)

    p = csub.add_parser("unset", parents=[common], help="Remove config keys",
                        description="Remove config keys (missing keys are ignored).",
                        epilog="examples:\n  cove config unset c1 limits.memory",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("keys", metavar="KEY", nargs="+")
    p.set_defaults(func=cmd_unset)
