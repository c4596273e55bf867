"""``cove config device add|remove|list|show``: an instance's own devices.

The same words as ``lxc config device``. ``add`` merges one device with
``PATCH {"devices": {...}}``; ``remove`` fetches the instance and ``PUT``s it
back without the devices (a PATCH cannot remove one). Disks are mounted
and unmounted at once in a running instance.
"""

from __future__ import annotations

import argparse

from cove.cli.context import Context, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_device", "register_device", "remove_devices"]

_RAW = argparse.RawDescriptionHelpFormatter


def add_device(ctx: Context, instance: str, device: str, config: dict[str, str]) -> None:
    """Add ``device`` to ``instance``. Raises: Conflict when the name is taken."""
    from cove.api import InstancePut
    from cove.model.errors import Conflict

    client = ctx.client()
    if device in (client.instance(instance).get("devices") or {}):
        raise Conflict(f"The device already exists: {device}")
    client.update_instance(instance, InstancePut(devices={device: config}), patch=True).wait()


def remove_devices(ctx: Context, instance: str, names: list[str]) -> None:
    """Remove devices of ``instance``. Raises: NotFound for one it lacks."""
    from cove.api import InstancePut
    from cove.model.errors import NotFound

    client = ctx.client()
    inst = client.instance(instance)
    devices = dict(inst.get("devices") or {})
    for name in names:
        if devices.pop(name, None) is None:
            raise NotFound(f"Device {name!r} not found on {instance} (a profile's device is "
                           "hidden with type=none)")
    put = InstancePut.from_wire(inst)  # the writable fields, as read
    put.devices = devices
    client.update_instance(instance, put).wait()


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    config = parse_kv(args.items, "KEY=VALUE")
    add_device(ctx, args.instance, args.device, {"type": args.type, **config})
    ctx.info(f"Device {args.device} added to {args.instance}")
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    remove_devices(ctx, args.instance, list(args.devices))
    ctx.info(f"Device {', '.join(args.devices)} removed from {args.instance}")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    for name in sorted(ctx.client().instance(args.instance).get("devices") or {}):
        ctx.out.write(f"{name}\n")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli.render import yaml_text

    ctx.out.write(yaml_text(ctx.client().instance(args.instance).get("devices") or {}))
    return 0


def register_device(csub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``device`` under ``cove config``."""
    group = csub.add_parser(
        "device", parents=[common], help="Add, remove or list an instance's devices",
        description="An instance's own devices (its profiles' come on top: see "
                    "'cove config show NAME --expanded').",
        epilog="commands:\n  add, remove, list, show\n\n"
               "examples:\n"
               "  cove config device add c1 data disk source=/srv/data path=/data\n"
               "  cove config device add c1 conf disk source=/etc/app.conf path=/etc/app.conf "
               "readonly=true\n"
               "  cove config device add c1 vol disk pool=default source=vol1 path=/mnt/vol\n"
               "  cove config device remove c1 data",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    dsub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = dsub.add_parser(
        "add", parents=[common], help="Add a device",
        description="Add a device. disk: source=HOST_PATH path=PATH [readonly=true] "
                    "[required=false] [recursive=true], or pool=default source=VOLUME "
                    "path=PATH (mounted at once if it runs). nic: network=NET [name=eth1]. "
                    "proxy: listen=tcp:0.0.0.0:80 connect=tcp:0.0.0.0:8080 nat=true.",
        epilog="examples:\n  cove config device add c1 data disk source=/srv/data path=/data",
        formatter_class=_RAW)
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("device", metavar="DEVICE", help="the device's name")
    p.add_argument("type", metavar="TYPE", help="disk, nic, proxy or none")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.set_defaults(func=cmd_add)

    p = dsub.add_parser("remove", aliases=["rm"], parents=[common], help="Remove devices",
                        description="Remove devices of the instance's own.",
                        epilog="examples:\n  cove config device remove c1 data",
                        formatter_class=_RAW)
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("devices", metavar="DEVICE", nargs="+")
    p.set_defaults(func=cmd_remove)

    p = dsub.add_parser("list", aliases=["ls"], parents=[common], help="List device names",
                        description="The names of the instance's own devices.",
                        epilog="examples:\n  cove config device list c1", formatter_class=_RAW)
    p.add_argument("instance", metavar="INSTANCE")
    p.set_defaults(func=cmd_list)

    p = dsub.add_parser("show", parents=[common], help="Print the devices as YAML",
                        description="The instance's own devices as YAML.",
                        epilog="examples:\n  cove config device show c1", formatter_class=_RAW)
    p.add_argument("instance", metavar="INSTANCE")
    p.set_defaults(func=cmd_show)
