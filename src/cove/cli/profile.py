"""``cove profile list|show|create|copy|edit|delete|rename|get|set|unset|
device add|device remove|device show|assign|add|remove``.

The same words as ``lxc profile``. A profile is a named set of config keys
and devices; an instance applies its profiles in order, later ones winning,
its own config and devices on top. Changing a profile changes every
instance that uses it (limits and published ports at once on running ones).
"""

from __future__ import annotations

import argparse
import sys

from cove.cli import render
from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIST_HEADERS", "profile_rows", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

LIST_HEADERS = ("NAME", "DESCRIPTION", "USED BY")


def profile_rows(profiles: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(p.get("name", "")), str(p.get("description", "")),
             str(len(p.get("used_by") or []))] for p in profiles]


def _pairs(items: list[str]) -> dict[str, str]:
    if len(items) == 2 and "=" not in items[0]:
        return {items[0]: items[1]}  # KEY VALUE
    return parse_kv(items, "KEY=VALUE (or KEY VALUE)")


def _shown(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in ("name", "description", "config", "devices", "used_by")}


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    profiles = ctx.client().profiles()
    ctx.out.write(render.render(args.format, LIST_HEADERS, profile_rows(profiles), profiles))
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.write(render.yaml_text(_shown(ctx.client().profile(args.name))))
    return 0


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().create_profile(args.name, parse_kv(args.items, "KEY=VALUE"),
                                description=args.description or "")
    ctx.info(f"Profile {args.name} created")
    return 0


def cmd_copy(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    src = client.profile(args.source)
    client.create_profile(args.target, src.get("config") or {}, src.get("devices") or {},
                          description=str(src.get("description") or ""))
    ctx.info(f"Profile {args.target} created from {args.source}")
    return 0


def cmd_edit(ctx: Context, args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        raise UsageError(f"pipe the YAML in: cove profile show {args.name} > p.yaml; "
                         f"(edit p.yaml); cove profile edit {args.name} < p.yaml")
    import yaml

    try:
        doc = yaml.safe_load(sys.stdin.read()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"the YAML does not parse: {e}") from None
    if not isinstance(doc, dict):
        raise UsageError("the YAML must be a mapping (config, devices, description)")
    config = {str(k): str(v) for k, v in (doc.get("config") or {}).items()}
    devices = {str(k): {str(a): str(b) for a, b in (v or {}).items()}
               for k, v in (doc.get("devices") or {}).items()}
    ctx.client().update_profile(args.name, config=config, devices=devices,
                                description=str(doc.get("description") or ""), patch=False)
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for name in args.names:
        client.delete_profile(name)
        ctx.info(f"Profile {name} deleted")
    return 0


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_profile(args.name, args.new_name)
    ctx.info(f"Profile {args.name} renamed to {args.new_name}")
    return 0


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    config = ctx.client().profile(args.name).get("config") or {}
    ctx.out.write(str(config.get(args.key, "")) + "\n")
    return 0


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    changes = _pairs(list(args.items))
    ctx.client().update_profile(args.name, config=changes)
    return 0


def cmd_unset(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    p = client.profile(args.name)
    config = dict(p.get("config") or {})
    if not [k for k in args.keys if config.pop(k, None) is not None]:
        return 0
    client.update_profile(args.name, config=config, devices=p.get("devices") or {},
                          description=str(p.get("description") or ""), patch=False)
    return 0


def cmd_device_add(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    p = client.profile(args.name)
    if args.device in (p.get("devices") or {}):
        raise UsageError(f"The device already exists: {args.device}")
    dev = {"type": args.type, **parse_kv(args.items, "KEY=VALUE")}
    client.update_profile(args.name, devices={args.device: dev})  # PATCH: merged by name
    ctx.info(f"Device {args.device} added to {args.name}")
    return 0


def cmd_device_remove(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    p = client.profile(args.name)
    devices = dict(p.get("devices") or {})
    for dev in args.devices:
        if devices.pop(dev, None) is None:
            raise UsageError(f"Device doesn't exist: {dev}")
    client.update_profile(args.name, config=p.get("config") or {}, devices=devices,
                          description=str(p.get("description") or ""), patch=False)
    ctx.info(f"Device {', '.join(args.devices)} removed from {args.name}")
    return 0


def cmd_device_show(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out.write(render.yaml_text(ctx.client().profile(args.name).get("devices") or {}))
    return 0


def _set_profiles(ctx: Context, instance: str, profiles: list[str]) -> None:
    ctx.client().update_instance(instance, {"profiles": profiles}, patch=True).wait()


def cmd_assign(ctx: Context, args: argparse.Namespace) -> int:
    profiles = [p for p in args.profiles.split(",") if p] if args.profiles else []
    _set_profiles(ctx, args.instance, profiles)
    ctx.info(f"Profiles {', '.join(profiles) or '(none)'} applied to {args.instance}")
    return 0


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    current = list(ctx.client().instance(args.instance).get("profiles") or [])
    if args.profile in current:
        raise UsageError(f"Profile {args.profile} is already applied to {args.instance}")
    _set_profiles(ctx, args.instance, [*current, args.profile])
    ctx.info(f"Profile {args.profile} added to {args.instance}")
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    current = list(ctx.client().instance(args.instance).get("profiles") or [])
    if args.profile not in current:
        raise UsageError(f"Profile {args.profile} isn't currently applied to {args.instance}")
    _set_profiles(ctx, args.instance, [p for p in current if p != args.profile])
    ctx.info(f"Profile {args.profile} removed from {args.instance}")
    return 0


def _parser(psub: Any, common: argparse.ArgumentParser, name: str, summary: str,
            examples: str, *, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = psub.add_parser(
        name, aliases=list(aliases), parents=[common], help=summary, description=summary,
        epilog="examples:\n" + "\n".join("  " + x for x in examples.splitlines()),
        formatter_class=_RAW)
    return p


def _register_devices(psub: Any, common: argparse.ArgumentParser) -> None:
    group = psub.add_parser(
        "device", parents=[common], help="Manage a profile's devices",
        description="Add, remove or show the devices of a profile.",
        epilog="examples:\n"
               "  cove profile device add web eth1 nic network=lab\n"
               "  cove profile device add web http proxy listen=tcp:0.0.0.0:8080 "
               "connect=tcp:0.0.0.0:80\n"
               "  cove profile device remove web http\n"
               "  cove profile device show web", formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    dsub = group.add_subparsers(title="commands", metavar="COMMAND")
    p = _parser(dsub, common, "add", "Add a device to a profile",
                "cove profile device add web eth1 nic network=lab name=eth1\n"
                "cove profile device add web root disk path=/")
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("device", metavar="DEVICE")
    p.add_argument("type", metavar="TYPE", help="nic, proxy, disk or none")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.set_defaults(func=cmd_device_add)
    p = _parser(dsub, common, "remove", "Remove devices from a profile",
                "cove profile device remove web http", aliases=("rm",))
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("devices", metavar="DEVICE", nargs="+")
    p.set_defaults(func=cmd_device_remove)
    p = _parser(dsub, common, "show", "Print a profile's devices as YAML",
                "cove profile device show web")
    p.add_argument("name", metavar="PROFILE")
    p.set_defaults(func=cmd_device_show)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "profile", parents=[common], help="Manage profiles (shared config and devices)",
        description="Manage profiles: named config keys and devices that instances apply "
                    "in order (later ones win, the instance's own on top). Every instance "
                    "gets the 'default' profile (eth0 on the default network) unless told "
                    "otherwise.",
        epilog="commands:\n  list, show, create, copy, edit, delete, rename, get, set, unset,\n"
               "  device add|remove|show, assign, add, remove\n\n"
               "examples:\n"
               "  cove profile create small limits.memory=128MiB limits.cpu=1\n"
               "  cove profile device add small http proxy listen=tcp:0.0.0.0:8080 "
               "connect=tcp:0.0.0.0:80\n"
               "  cove launch busybox web --profile default --profile small\n"
               "  cove profile set small limits.memory=256MiB   web follows at once\n"
               "  cove profile add web debug                     apply one more profile\n"
               "  cove profile list\n\n"
               "Run 'cove profile COMMAND --help' for more.",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    psub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = _parser(psub, common, "list", "List profiles",
                "cove profile list\ncove profile list -f json", aliases=("ls",))
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)

    p = _parser(psub, common, "show", "Print a profile as YAML", "cove profile show default")
    p.add_argument("name", metavar="PROFILE")
    p.set_defaults(func=cmd_show)

    p = _parser(psub, common, "create", "Create a profile",
                "cove profile create small\n"
                "cove profile create small limits.memory=128MiB environment.MODE=prod")
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.add_argument("--description", default="")
    p.set_defaults(func=cmd_create)

    p = _parser(psub, common, "copy", "Copy a profile", "cove profile copy small medium",
                aliases=("cp",))
    p.add_argument("source", metavar="PROFILE")
    p.add_argument("target", metavar="NEW")
    p.set_defaults(func=cmd_copy)

    p = _parser(psub, common, "edit", "Replace a profile with YAML from stdin",
                "cove profile show small > small.yaml   (edit it)\n"
                "cove profile edit small < small.yaml")
    p.add_argument("name", metavar="PROFILE")
    p.set_defaults(func=cmd_edit)

    p = _parser(psub, common, "delete", "Delete profiles (not one in use, not default)",
                "cove profile delete small", aliases=("rm",))
    p.add_argument("names", metavar="PROFILE", nargs="+")
    p.set_defaults(func=cmd_delete)

    p = _parser(psub, common, "rename", "Rename a profile (instances follow)",
                "cove profile rename small tiny", aliases=("mv",))
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("new_name", metavar="NEW")
    p.set_defaults(func=cmd_rename)

    p = _parser(psub, common, "get", "Print one config key of a profile",
                "cove profile get small limits.memory")
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("key", metavar="KEY")
    p.set_defaults(func=cmd_get)

    p = _parser(psub, common, "set", "Set config keys of a profile",
                "cove profile set small limits.memory 256MiB\n"
                "cove profile set small limits.memory=256MiB limits.processes=100")
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("items", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(func=cmd_set)

    p = _parser(psub, common, "unset", "Remove config keys of a profile",
                "cove profile unset small limits.memory")
    p.add_argument("name", metavar="PROFILE")
    p.add_argument("keys", metavar="KEY", nargs="+")
    p.set_defaults(func=cmd_unset)

    _register_devices(psub, common)

    p = _parser(psub, common, "assign", "Set an instance's profiles (comma-separated)",
                "cove profile assign web default,small\n"
                "cove profile assign web ''              no profile at all",
                aliases=("apply",))
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("profiles", metavar="PROFILES")
    p.set_defaults(func=cmd_assign)

    p = _parser(psub, common, "add", "Apply one more profile to an instance",
                "cove profile add web small")
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("profile", metavar="PROFILE")
    p.set_defaults(func=cmd_add)

    p = _parser(psub, common, "remove", "Stop applying a profile to an instance",
                "cove profile remove web small")
    p.add_argument("instance", metavar="INSTANCE")
    p.add_argument("profile", metavar="PROFILE")
    p.set_defaults(func=cmd_remove)
