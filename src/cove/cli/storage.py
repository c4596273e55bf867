"""``cove storage list|show|info`` and ``cove storage volume
create|list|show|set|delete|rename|attach|detach``.

The same words as ``lxc storage``. cove has one pool, ``default``: a ``dir``
pool on cove's root, holding instances' root filesystems and custom
volumes (directories under ``<root>/storage/custom``). ``attach`` adds a
disk device (``pool=default source=VOLUME path=PATH``) to an instance;
``detach`` removes the devices that mount the volume.
"""

from __future__ import annotations

import argparse

from cove.cli import render
from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["POOL_HEADERS", "VOLUME_HEADERS", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

POOL_HEADERS = ("NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE")
VOLUME_HEADERS = ("TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY")


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    pools = ctx.client().storage_pools()
    rows = [[str(p.get("name", "")), str(p.get("driver", "")),
             str((p.get("config") or {}).get("source", "")), str(p.get("description", "")),
             str(len(p.get("used_by") or [])), str(p.get("status", "")).upper()]
            for p in pools]
    ctx.out.write(render.render(args.format, POOL_HEADERS, rows, pools))
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    pool = ctx.client().storage_pool(args.pool)
    shown = {k: pool[k] for k in ("name", "description", "driver", "config", "status",
                                  "used_by", "locations") if k in pool}
    ctx.out.write(render.yaml_text(shown))
    return 0


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    pool = client.storage_pool(args.pool)
    res = client.storage_pool(args.pool, "resources")
    space = res.get("space") or {}
    out = ["info:", f"  name: {pool.get('name', '')}", f"  driver: {pool.get('driver', '')}",
           f"  description: {pool.get('description', '')}",
           f"  total space: {render.bytes_si(space.get('total', 0))}",
           f"  space used: {render.bytes_si(space.get('used', 0))}", "used by:"]
    by: dict[str, list[str]] = {}
    for url in pool.get("used_by") or []:
        parts = str(url).split("?", 1)[0].split("/")
        kind = "volumes" if parts[2:3] == ["storage-pools"] else (parts[2:3] or ["?"])[0]
        by.setdefault(kind, []).append(parts[-1])
    for kind in sorted(by):
        out.append(f"  {kind}:")
        out += [f"  - {n}" for n in by[kind]]
    ctx.out.write("\n".join(out) + "\n")
    return 0


def cmd_volume_list(ctx: Context, args: argparse.Namespace) -> int:
    vols = ctx.client().volumes(args.pool)
    rows = [[str(v.get("type", "")), str(v.get("name", "")), str(v.get("description", "")),
             str(v.get("content_type", "")), str(len(v.get("used_by") or []))] for v in vols]
    ctx.out.write(render.render(args.format, VOLUME_HEADERS, rows, vols))
    return 0


def cmd_volume_create(ctx: Context, args: argparse.Namespace) -> int:
    config = parse_kv(args.items, "KEY=VALUE")
    ctx.client().create_volume(args.pool, args.volume, config,
                               description=args.description or "")
    ctx.info(f"Storage volume {args.volume} created")
    return 0


def cmd_volume_show(ctx: Context, args: argparse.Namespace) -> int:
    vol = ctx.client().volume(args.pool, _custom(args.volume))
    shown = {k: vol[k] for k in ("name", "description", "type", "pool", "content_type",
                                 "config", "used_by", "created_at") if k in vol}
    ctx.out.write(render.yaml_text(shown))
    return 0


def cmd_volume_set(ctx: Context, args: argparse.Namespace) -> int:
    items = list(args.items)
    changes = {items[0]: items[1]} if len(items) == 2 and "=" not in items[0] \
        else parse_kv(items, "KEY=VALUE (or KEY VALUE)")
    ctx.client().update_volume(args.pool, _custom(args.volume), config=changes)
    return 0


def cmd_volume_delete(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_volume(args.pool, _custom(args.volume))
    ctx.info(f"Storage volume {args.volume} deleted")
    return 0


def cmd_volume_rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_volume(args.pool, _custom(args.volume), args.new_name)
    ctx.info(f"Renamed storage volume from {args.volume} to {args.new_name}")
    return 0


def cmd_volume_attach(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli.device import add_device

    rest = list(args.rest)
    if len(rest) not in (1, 2):
        raise UsageError("give POOL VOLUME INSTANCE [DEVICE] PATH")
    device, path = (rest[0], rest[1]) if len(rest) == 2 else (args.volume, rest[0])
    volume = _custom(args.volume)
    ctx.client().volume(args.pool, volume)  # NotFound names the volume, not the device
    add_device(ctx, args.instance, device,
               {"type": "disk", "pool": args.pool, "source": volume, "path": path})
    return 0


def cmd_volume_detach(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli.device import remove_devices
    from cove.model.errors import NotFound

    volume = _custom(args.volume)
    devices = ctx.client().instance(args.instance).get("devices") or {}
    names = [n for n, d in devices.items() if d.get("type") == "disk"
             and d.get("pool") == args.pool and d.get("source") == volume
             and (args.device is None or n == args.device)]
    if not names:
        raise NotFound(f"No device of {args.instance} mounts storage volume {volume}")
    remove_devices(ctx, args.instance, names)
    return 0


def _custom(volume: str) -> str:
    """``custom/NAME`` (lxc's form) or ``NAME``; other types cove has not."""
    kind, sep, name = volume.partition("/")
    if not sep:
        return volume
    if kind != "custom":
        raise UsageError(f"only custom volumes can be named, not {kind!r}")
    return name


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "storage", parents=[common], help="Storage pool and custom volumes",
        description="cove has one storage pool, default: a dir pool on cove's root. It holds "
                    "instances' root filesystems and custom volumes, which instances mount "
                    "as disk devices.",
        epilog="commands:\n  list, show, info, volume\n\n"
               "examples:\n"
               "  cove storage list\n"
               "  cove storage info default\n"
               "  cove storage volume create default data\n"
               "  cove storage volume attach default data c1 /srv/data\n\n"
               "Run 'cove storage COMMAND --help' for more.",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    ssub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = ssub.add_parser("list", aliases=["ls"], parents=[common], help="List storage pools",
                        description="List storage pools.",
                        epilog="examples:\n  cove storage list -f csv", formatter_class=_RAW)
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)
    for word, helptext, func in (("show", "Print a pool as YAML", cmd_show),
                                 ("info", "Show a pool's space and users", cmd_info)):
        p = ssub.add_parser(word, parents=[common], help=helptext, description=helptext + ".",
                            epilog=f"examples:\n  cove storage {word} default",
                            formatter_class=_RAW)
        p.add_argument("pool", metavar="POOL")
        p.set_defaults(func=func)
    _register_volume(ssub, common)


def _register_volume(ssub: Any, common: argparse.ArgumentParser) -> None:
    vol = ssub.add_parser(
        "volume", parents=[common], help="Manage custom storage volumes",
        description="Custom volumes: directories that outlive instances, mounted into them "
                    "as disk devices. A volume in use cannot be deleted; one in use by a "
                    "running instance cannot be renamed.",
        epilog="commands:\n  create, list, show, set, delete, rename, attach, detach\n\n"
               "examples:\n"
               "  cove storage volume create default data size=10GiB\n"
               "  cove storage volume attach default data c1 /srv/data\n"
               "  cove storage volume detach default data c1\n"
               "  cove storage volume delete default data",
        formatter_class=_RAW)
    vol.set_defaults(help_parser=vol)
    vsub = vol.add_subparsers(title="commands", metavar="COMMAND")

    def add(word: str, helptext: str, func: Any, example: str, *names: str,
            aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = vsub.add_parser(
            word, aliases=list(aliases), parents=[common], help=helptext,
            description=helptext + ".", epilog=f"examples:\n  cove storage volume {example}",
            formatter_class=_RAW)
        for n in names:
            p.add_argument(n.lower().replace("-", "_"), metavar=n)
        p.set_defaults(func=func)
        return p

    p = add("create", "Create a custom volume (size is recorded; a dir pool enforces none)",
            cmd_volume_create, "create default data size=10GiB", "POOL", "VOLUME")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.add_argument("--description", default="")
    p = add("list", "List a pool's custom volumes", cmd_volume_list, "list default", "POOL",
            aliases=("ls",))
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    add("show", "Print a volume as YAML", cmd_volume_show, "show default data", "POOL",
        "VOLUME")
    p = add("set", "Set volume config keys", cmd_volume_set, "set default data user.owner=me",
            "POOL", "VOLUME")
    p.add_argument("items", metavar="KEY=VALUE", nargs="+")
    add("delete", "Delete a volume and its data", cmd_volume_delete, "delete default data",
        "POOL", "VOLUME", aliases=("rm",))
    add("rename", "Rename a volume (and the devices that mount it)", cmd_volume_rename,
        "rename default data data2", "POOL", "VOLUME", "NEW-NAME")
    p = add("attach", "Mount a volume in an instance (a disk device; at once if it runs)", cmd_volume_attach, "attach default data c1 /srv/data", "POOL", "VOLUME",
            "INSTANCE")
    p.add_argument("rest", metavar="[DEVICE] PATH", nargs="+")
    p = add("detach", "Remove the devices that mount a volume", cmd_volume_detach,
            "detach default data c1", "POOL", "VOLUME", "INSTANCE")
    p.add_argument("device", metavar="DEVICE", nargs="?")
