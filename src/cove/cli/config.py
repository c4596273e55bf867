"""``cove config show|get|set|unset``: an instance's configuration, or the
server's; ``cove config trust add|list|remove``: who may use coved over HTTPS;
``cove config device add|remove|list|show`` (``cove.cli.device``).

``set`` merges with ``PATCH {"config": {...}}``; ``unset`` fetches the
instance and ``PUT``s it back without the key (a PATCH cannot remove one).

Server or instance? As with ``lxc config``: when the first word is a config
key, the command is about the server. A key always has a dot
(``core.https_address``) and an instance name never can, so
``cove config set core.https_address :8443`` sets the server's and
``cove config set c1 limits.cpu 1`` an instance's; ``cove config show``
without a name shows the server's.
"""

from __future__ import annotations

import argparse

from cove.cli.context import Context, UsageError, parse_kv
from cove.cli.device import register_device

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PUT_FIELDS", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

#: The writable fields of an instance (LXD's InstancePut), in the order ``show`` prints them.
PUT_FIELDS = ("architecture", "config", "devices", "ephemeral", "profiles", "stateful",
              "description")


def _is_key(word: str | None) -> bool:
    return word is not None and "." in word


def _write_yaml(ctx: Context, obj: Any) -> None:
    try:
        from cove.cli.render import yaml_text

        ctx.out.write(yaml_text(obj))
    except ImportError:
        from cove.cli.render import json_text

        ctx.out.write(json_text(obj))


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    if args.name is None:
        _write_yaml(ctx, {"config": ctx.client().server().get("config") or {}})
        return 0
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
    if _is_key(args.name) and args.key is None:
        config = ctx.client().server().get("config") or {}
        ctx.out.write(f"{config.get(args.name, '')}\n")
        return 0
    if args.key is None:
        raise UsageError("give NAME KEY (an instance's) or KEY (the server's, e.g. "
                         "core.https_address)")
    inst = ctx.client().instance(args.name)
    config = inst.get("expanded_config" if args.expanded else "config") or {}
    ctx.out.write(f"{config.get(args.key, '')}\n")
    return 0


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    if _is_key(args.name):
        words = [args.name, *args.items]
        if len(words) == 2 and "=" not in words[0]:
            server = {words[0]: words[1]}  # cove config set core.https_address :8443
        else:
            server = parse_kv(words, "KEY=VALUE (or KEY VALUE)")
        ctx.client().update_server(server)
        return 0
    items = list(args.items)
    if not items:
        raise UsageError("give NAME KEY VALUE, NAME KEY=VALUE... or KEY VALUE (the server's)")
    if len(items) == 2 and "=" not in items[0]:
        changes = {items[0]: items[1]}  # cove config set c1 KEY VALUE
    else:
        changes = parse_kv(items, "KEY=VALUE (or KEY VALUE)")
    if not changes:
        raise UsageError("give KEY VALUE or KEY=VALUE...")
    from cove.api import InstancePut

    ctx.client().update_instance(args.name, InstancePut(config=changes), patch=True).wait()
    return 0


def cmd_unset(ctx: Context, args: argparse.Namespace) -> int:
    if _is_key(args.name):
        ctx.client().update_server({k: "" for k in [args.name, *args.keys]})
        return 0
    if not args.keys:
        raise UsageError("give NAME KEY... (an instance's) or KEY (the server's)")
    client = ctx.client()
    inst = client.instance(args.name)
    config = dict(inst.get("config") or {})
    removed = [k for k in args.keys if config.pop(k, None) is not None]
    if not removed:
        return 0
    from cove.api import InstancePut

    put = InstancePut.from_wire(inst)  # the writable fields, as read
    put.config = config
    client.update_instance(args.name, put).wait()
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser("config", parents=[common], help="Show or change instance config",
                           description="Show or change an instance's configuration.",
                           epilog="commands:\n  show, get, set, unset, trust\n\n"
                                  "Run 'cove config COMMAND --help' for examples.",
                           formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    csub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = csub.add_parser("show", parents=[common], help="Print an instance's config as YAML",
                        description="Print an instance's writable fields (no NAME: the "
                                    "server's config) as YAML.",
                        epilog="examples:\n  cove config show c1\n"
                               "  cove config show --expanded c1     with profiles applied\n"
                               "  cove config show                   the server's",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--expanded", action="store_true", help="include what profiles add")
    p.set_defaults(func=cmd_show)

    p = csub.add_parser("get", parents=[common], help="Print one config value",
                        description="Print one config value (an empty line if unset).",
                        epilog="examples:\n  cove config get c1 limits.memory\n"
                               "  cove config get core.https_address     the server's",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("key", metavar="KEY", nargs="?")
    p.add_argument("--expanded", action="store_true", help="include what profiles add")
    p.set_defaults(func=cmd_get)

    p = csub.add_parser("set", parents=[common], help="Set config values",
                        description="Set config values (merged into the existing config).",
                        epilog="examples:\n"
                               "  cove config set c1 limits.memory 256MiB\n"
                               "  cove config set c1 limits.cpu=1 environment.FOO=bar\n"
                               "  cove config set core.https_address :8443     the server's: "
                               "HTTPS on every address\n"
                               "  cove config set core.https_address 127.0.0.1:8443",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.set_defaults(func=cmd_set)

    p = csub.add_parser("unset", parents=[common], help="Remove config keys",
                        description="Remove config keys (missing keys are ignored).",
                        epilog="examples:\n  cove config unset c1 limits.memory\n"
                               "  cove config unset core.https_address     stop HTTPS",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("keys", metavar="KEY", nargs="*")
    p.set_defaults(func=cmd_unset)

    trust = csub.add_parser("trust", parents=[common], help="Manage trusted client certificates",
                            description="Clients over HTTPS (core.https_address) are trusted "
                                        "when their certificate is in this list.",
                            epilog="commands:\n  add, list, remove\n\n"
                                   "Run 'cove config trust COMMAND --help' for examples.",
                            formatter_class=_RAW)
    trust.set_defaults(help_parser=trust)
    tsub = trust.add_subparsers(title="commands", metavar="COMMAND")
    p = tsub.add_parser("add", parents=[common], help="Trust a client certificate",
                        description="Trust a client certificate (a PEM file).",
                        epilog="examples:\n  cove config trust add ~/.config/lxc/client.crt\n"
                               "  cove config trust add laptop.crt --name laptop\n"
                               "  cove config trust add prometheus.crt --type metrics\n"
                               "                     may scrape /1.0/metrics, nothing else",
                        formatter_class=_RAW)
    p.add_argument("file", metavar="CERT_FILE")
    p.add_argument("--name", default="", help="a name to list it by")
    p.add_argument("--type", default="client", choices=("client", "metrics"),
                   help="client (the whole API) or metrics (/1.0/metrics only)")
    p.set_defaults(func=cmd_trust_add)
    p = tsub.add_parser("list", aliases=["ls"], parents=[common],
                        help="List trusted certificates",
                        description="List trusted certificates.",
                        epilog="examples:\n  cove config trust list\n"
                               "  cove config trust list -f json",
                        formatter_class=_RAW)
    p.add_argument("-f", "--format", choices=("table", "csv", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_trust_list)
    p = tsub.add_parser("remove", aliases=["rm"], parents=[common],
                        help="Stop trusting a certificate",
                        description="Stop trusting a certificate, by fingerprint (a unique "
                                    "prefix will do).",
                        epilog="examples:\n  cove config trust remove 3f2a9c81d0e4",
                        formatter_class=_RAW)
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.set_defaults(func=cmd_trust_remove)

    register_device(csub, common)


def cmd_trust_add(ctx: Context, args: argparse.Namespace) -> int:
    with open(args.file, encoding="ascii", errors="replace") as f:
        pem = f.read()
    ctx.client().add_certificate(pem, name=args.name, type=args.type)
    return 0


def cmd_trust_list(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli import render

    certs = ctx.client().certificates()
    if args.format in ("json", "yaml"):
        ctx.out.write(render.json_text(certs) if args.format == "json"
                      else render.yaml_text(certs))
        return 0
    rows = [[c.get("name", ""), c.get("type", ""), str(c.get("fingerprint", ""))[:12]]
            for c in certs]
    if args.format == "csv":
        ctx.out.write("".join(",".join(r) + "\n" for r in rows))
    else:
        ctx.out.write(render.table(["NAME", "TYPE", "FINGERPRINT"], rows))
    return 0


def cmd_trust_remove(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_certificate(args.fingerprint)
    return 0
