"""``cove launch|init|start|stop|restart|pause|resume|delete|list|info|rename|logs``."""

from __future__ import annotations

import os

from cove.cli import render
from cove.cli._progress import wait
from cove.cli.context import Context, UsageError, parse_kv
from cove.model.errors import CoveError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from cove.client import Operation

__all__ = ["image_source", "instance_rows", "register"]

_ADJECTIVES = ("amber", "brisk", "calm", "deft", "eager", "fair", "glad", "hardy", "keen",
               "lucid", "merry", "noble", "proud", "quick", "rapid", "sunny", "tidy", "vivid",
               "witty", "young")
_NOUNS = ("badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal",
          "koala", "lemur", "marten", "newt", "otter", "puffin", "quail", "raven", "stoat",
          "tapir", "vole")


def _new_name() -> str:
    a, n, x = os.urandom(3)
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}-{_NOUNS[n % len(_NOUNS)]}-{x:02x}"


def image_source(image: str) -> dict[str, str]:
    """``{"type": "image", ...}``: ``REMOTE:REF`` names an image on a remote
    (``cove remote``: coved fetches it); a hex string of 12+ characters is
    taken as a fingerprint (or its prefix), anything else as an alias."""
    from cove.cli._remotes import split_image_ref

    remote, text = split_image_ref(image)
    if remote is not None:
        return remote.source(text)
    if len(text) >= 12 and all(c in "0123456789abcdef" for c in text):
        return {"type": "image", "fingerprint": text}
    return {"type": "image", "alias": text}


# -- create ------------------------------------------------------------------------

def _devices(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """``--network`` and ``-p/--publish`` as LXD devices (nic, proxy)."""
    devices: dict[str, dict[str, str]] = {}
    if args.network == "none":
        devices["eth0"] = {"type": "none"}
    elif args.network:
        devices["eth0"] = {"type": "nic", "network": args.network, "name": "eth0"}
    if args.publish:
        from cove.model.errors import BadRequest
        from cove.model.publish import publish_device  # coved checks the device in full

        for spec in args.publish:
            try:
                name, dev = publish_device(spec)
            except BadRequest as e:
                raise UsageError(str(e)) from None
            devices[name] = dev
    return devices


def _create(ctx: Context, args: argparse.Namespace, start: bool) -> int:
    config = parse_kv(args.config, "KEY=VALUE for -c")
    devices = _devices(args)
    if args.no_profiles and args.profile:
        raise UsageError("--no-profiles and --profile exclude each other")
    client = ctx.client()
    name = args.name or _new_name()
    # One operation for launch: cove makes and starts the instance together and
    # undoes both if the start fails, so a failed launch leaves nothing behind.
    ctx.info(f"{'Launching' if start else 'Creating'} {name}")
    wait(ctx, client.create_instance(name, image_source(args.image), config=config,
                                     devices=devices or None, ephemeral=args.ephemeral,
                                     profiles=[] if args.no_profiles else args.profile or None,
                                     start=start))
    return 0


def cmd_launch(ctx: Context, args: argparse.Namespace) -> int:
    return _create(ctx, args, start=True)


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    return _create(ctx, args, start=False)


# -- state -------------------------------------------------------------------------

_ACTIONS = {"start": "start", "stop": "stop", "restart": "restart", "pause": "freeze",
            "resume": "unfreeze"}
# With --all, which instances each command applies to.
_ALL_FILTER = {"start": ("Stopped",), "stop": ("Running", "Frozen"),
               "restart": ("Running",), "pause": ("Running",), "resume": ("Frozen",)}


def _report(ctx: Context, names: list[str], errors: list[tuple[str, CoveError]]) -> int:
    for name, e in errors:
        prefix = f"{name}: " if len(names) > 1 else ""
        ctx.err.write(f"Error: {prefix}{e}\n")
    return 1 if errors else 0


def _wait_all(started: list[tuple[str, Operation]],
              errors: list[tuple[str, CoveError]]) -> None:
    for name, op in started:
        try:
            op.wait()
        except CoveError as e:
            errors.append((name, e))


def cmd_state(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    names: list[str] = list(args.names)
    if args.all:
        wanted = _ALL_FILTER[args.command]
        names += [i["name"] for i in client.instances(1) if i.get("status") in wanted
                  and i["name"] not in names]
    elif not names:
        raise UsageError(f"give instance names or --all (see 'cove {args.command} --help')")
    force = bool(getattr(args, "force", False))
    timeout = int(getattr(args, "timeout", -1))
    command = getattr(args, "after", None)
    if command is not None:  # cove start NAME -- CMD...: this once with CMD
        if args.command != "start" or len(names) != 1 or args.all or not command:
            raise UsageError("cove start NAME -- COMMAND...: one instance and a command")
        client.change_state(names[0], "start", command=command).wait()
        return 0
    started: list[tuple[str, Operation]] = []
    errors: list[tuple[str, CoveError]] = []
    # Ask for every change first, then wait: the instances change in parallel.
    for name in names:
        try:
            started.append((name, client.change_state(name, _ACTIONS[args.command],
                                                      timeout=timeout, force=force)))
        except CoveError as e:
            errors.append((name, e))
    _wait_all(started, errors)
    return _report(ctx, names, errors)


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    errors: list[tuple[str, CoveError]] = []
    for name in args.names:
        try:
            if args.force:
                status = client.instance(name).get("status")
                if status in ("Running", "Frozen"):
                    client.change_state(name, "stop", force=True).wait()
            client.delete_instance(name, force=args.force).wait()
        except CoveError as e:
            errors.append((name, e))
    return _report(ctx, list(args.names), errors)


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().rename_instance(args.old, args.new).wait()
    return 0


# -- list --------------------------------------------------------------------------

LIST_HEADERS = ("NAME", "STATE", "IPV4", "TYPE", "CREATED")


def _ipv4(state: dict[str, Any] | None) -> str:
    found = []
    for iface, net in sorted(((state or {}).get("network") or {}).items()):
        if iface == "lo":
            continue
        for addr in (net or {}).get("addresses") or []:
            if addr.get("family") == "inet" and addr.get("scope", "global") == "global":
                found.append(f"{addr.get('address')} ({iface})")
    return "\n".join(found)


def _type(inst: dict[str, Any]) -> str:
    kind = str(inst.get("type") or "container").upper()
    return f"{kind} (EPHEMERAL)" if inst.get("ephemeral") else kind


def instance_rows(insts: list[dict[str, Any]]) -> list[list[str]]:
    """The NAME, STATE, IPV4, TYPE, CREATED cells of each instance (state from recursion=2)."""
    return [[str(i.get("name", "")), str(i.get("status", "")).upper(), _ipv4(i.get("state")),
             _type(i), render.timestamp(i.get("created_at"))] for i in insts]


def health_cell(state: dict[str, Any] | None) -> str:
    """The HEALTH cell: cove's app-stack state (``state.cove``): ``healthy``,
    ``unhealthy (N)`` with its failing streak, ``starting``, or ``ready``
    for an instance with only a readiness probe; empty without either."""
    cove = (state or {}).get("cove") or {}
    health = cove.get("health") or {}
    status = str(health.get("status") or "")
    if status == "unhealthy":
        return f"unhealthy ({health.get('failing_streak', 0)})"
    if status:
        return status
    return "ready" if cove.get("ready") else ""


# What the table reads of each instance; json and yaml show whole objects.
LIST_KEYS = ["name", "status", "type", "ephemeral", "created_at", "state.network",
             "state.cove"]


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    # Only the state part the columns show (the IPv4 addresses): no disk
    # usage; for a table only its columns' keys (a coved without
    # cove_instances_keys sends whole objects: read the same way).
    keys = None if args.format in ("json", "yaml") else LIST_KEYS
    insts = [i for i in ctx.client().instances(2, fields=["state.network"], keys=keys)
             if isinstance(i, dict)]
    if args.filters:
        insts = [i for i in insts if any(str(i.get("name", "")).startswith(f)
                                         for f in args.filters)]
    insts.sort(key=lambda i: str(i.get("name", "")))
    headers: tuple[str, ...] = LIST_HEADERS
    rows = instance_rows(insts)
    health = [health_cell(i.get("state")) for i in insts]
    if any(health):  # the column only where an app stack is
        headers = (*LIST_HEADERS[:2], "HEALTH", *LIST_HEADERS[2:])
        rows = [[*r[:2], h, *r[2:]] for r, h in zip(rows, health, strict=True)]
    ctx.out.write(render.render(args.format, headers, rows, insts))
    return 0


# -- info --------------------------------------------------------------------------

def _server_info(ctx: Context) -> int:
    srv = ctx.client().server()
    env = srv.get("environment") or {}
    lines = [f"API version: {srv.get('api_version', '')}"]
    for key, label in (("server", "Server"), ("server_version", "Server version"),
                       ("server_name", "Server name"), ("kernel_version", "Kernel"),
                       ("driver", "Driver"), ("driver_version", "Driver version"),
                       ("storage", "Storage")):
        if env.get(key):
            lines.append(f"{label}: {env[key]}")
    if srv.get("api_extensions"):
        lines.append("API extensions: " + ", ".join(srv["api_extensions"]))
    ctx.out.write("\n".join(lines) + "\n")
    return 0


def info_text(inst: dict[str, Any], state: dict[str, Any]) -> str:
    """``cove info NAME`` output from ``/1.0/instances/NAME`` and its ``/state``."""
    config = inst.get("config") or {}
    kind = str(inst.get("type") or "container")
    lines = [
        f"Name: {inst.get('name', '')}",
        f"Status: {str(state.get('status') or inst.get('status', '')).upper()}",
        f"Type: {kind}{' (ephemeral)' if inst.get('ephemeral') else ''}",
        f"Architecture: {inst.get('architecture', '')}",
    ]
    if inst.get("description"):
        lines.append(f"Description: {inst['description']}")
    image = config.get("image.description") or config.get("volatile.base_image", "")
    if image:
        lines.append(f"Image: {image}")
    if config.get("image.exposed_ports"):  # an OCI image's ExposedPorts
        lines.append(f"Exposed Ports: {config['image.exposed_ports']}")
    pid = state.get("pid") or 0
    if pid:
        lines.append(f"PID: {pid}")
    lines.append(f"Created: {render.timestamp(inst.get('created_at'))}")
    lines.append(f"Last Used: {render.timestamp(inst.get('last_used_at'))}")
    exit_code = config.get("volatile.last_state.exit_code", inst.get("last_exit_code"))
    if exit_code not in (None, ""):
        lines.append(f"Last Exit Code: {exit_code}")
    cove = state.get("cove") or {}
    if cove.get("health"):
        h = cove["health"]
        lines.append(f"Health: {h.get('status', '')} (failing streak "
                     f"{h.get('failing_streak', 0)})")
        if h.get("output"):
            lines.append("Last Health Output: " + str(h["output"]).strip().replace("\n", "\n  "))
    if "ready" in cove:
        lines.append(f"Ready: {'yes' if cove['ready'] else 'no'}")
    res = _resources(state)
    if res:
        lines += ["", "Resources:"] + res
    return "\n".join(lines) + "\n"


def _resources(state: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if state.get("processes") not in (None, -1):
        out.append(f"  Processes: {state['processes']}")
    cpu = (state.get("cpu") or {}).get("usage")
    if cpu:
        out += ["  CPU usage:", f"    CPU usage (in seconds): {int(cpu) // 1_000_000_000}"]
    mem = state.get("memory") or {}
    if mem.get("usage"):
        out += ["  Memory usage:", f"    Memory (current): {render.bytes_iec(mem['usage'])}"]
        if mem.get("usage_peak"):
            out.append(f"    Memory (peak): {render.bytes_iec(mem['usage_peak'])}")
    net = state.get("network") or {}
    ifaces = [(k, v) for k, v in sorted(net.items()) if k != "lo" and isinstance(v, dict)]
    if ifaces:
        out.append("  Network usage:")
        for name, n in ifaces:
            out.append(f"    {name}:")
            for key, label in (("type", "Type"), ("state", "State"),
                               ("host_name", "Host interface"), ("hwaddr", "MAC address"),
                               ("mtu", "MTU")):
                if n.get(key) not in (None, ""):
                    value = n[key].upper() if key == "state" else n[key]
                    out.append(f"      {label}: {value}")
            c = n.get("counters") or {}
            for key, label in (("bytes_received", "Bytes received"),
                               ("bytes_sent", "Bytes sent")):
                if key in c:
                    out.append(f"      {label}: {render.bytes_si(c[key])}")
            for key, label in (("packets_received", "Packets received"),
                               ("packets_sent", "Packets sent")):
                if key in c:
                    out.append(f"      {label}: {c[key]}")
            addrs = n.get("addresses") or []
            if addrs:
                out.append("      IP addresses:")
                for a in addrs:
                    out.append(f"        {a.get('family', '')}:  {a.get('address', '')}"
                               f"/{a.get('netmask', '')} ({a.get('scope', '')})")
    return out


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    if args.resources:
        if args.name:
            raise UsageError("--resources shows the host's; give no NAME")
        from cove.cli.metrics import resources_text

        ctx.out.write(resources_text(ctx.client().resources()))
        return 0
    if not args.name:
        return _server_info(ctx)
    client = ctx.client()
    inst = client.instance(args.name)
    try:
        state = client.instance_state(args.name)
    except NotFound:
        state = {}
    from cove.cli.snapshot import snapshot_lines

    text = info_text(inst, state)
    try:
        snaps = client.snapshots(args.name)
    except NotFound:  # a server without snapshots
        snaps = []
    lines = snapshot_lines(snaps)
    ctx.out.write(text + ("\n".join(lines) + "\n" if lines else ""))
    return 0


# -- logs --------------------------------------------------------------------------

def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    from cove.cli.stack import service_instance  # NAME may be a service of a stack
    from cove.model.errors import NotFound

    if args.stack:
        args.name = service_instance(ctx, args.name, args.stack)
    try:
        return _logs(ctx, args)
    except NotFound:
        other = None if args.stack else service_instance(ctx, args.name, None)
        if other is None:
            raise
        args.name = other
        return _logs(ctx, args)


def _logs(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    out = ctx.binary_out()
    if not args.follow:
        out.write(client.logs(args.name))
        out.flush()
        return 0
    for chunk in client.follow_logs(args.name):
        out.write(chunk)
        out.flush()
    return 0


# -- parsers -----------------------------------------------------------------------

def _create_parser(sub: Any, common: argparse.ArgumentParser, name: str, summary: str,
                   epilog: str) -> None:
    import argparse  # only when parsers are built: the fast path (cli._fast) skips it

    p = sub.add_parser(name, parents=[common], help=summary, description=summary,
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image alias or fingerprint (prefix)")
    p.add_argument("name", metavar="NAME", nargs="?", help="instance name (default: a new one)")
    p.add_argument("-c", "--config", action="append", metavar="KEY=VALUE",
                   help="set a config key (repeatable)")
    p.add_argument("-e", "--ephemeral", action="store_true",
                   help="delete the instance when it stops")
    p.add_argument("-p", "--publish", action="append", metavar="[ADDR:]PORT:PORT[/udp]",
                   help="publish a container port on the host (repeatable): 8080:80, "
                        "127.0.0.1:5353:53/udp")
    p.add_argument("-n", "--network", metavar="NETWORK",
                   help="put eth0 on this network instead of the default one ('none': no NIC)")
    p.add_argument("--profile", action="append", metavar="PROFILE",
                   help="apply a profile, in order (repeatable; default: 'default')")
    p.add_argument("--no-profiles", action="store_true",
                   help="no profile at all (so no eth0 from the default profile)")
    p.set_defaults(func=cmd_launch if name == "launch" else cmd_init)


_STATE_HELP = {
    "start": ("Start instances", "cove start c1\ncove start c1 c2 c3\ncove start --all"),
    "stop": ("Stop instances", ("cove stop c1                  ask c1 to shut down, wait\n"
                                "cove stop -f c1               kill it now\n"
                                "cove stop --timeout 10 c1     kill it if not down in 10 s\n"
                                "cove stop --all")),
    "restart": ("Restart instances", "cove restart c1\ncove restart -f c1 c2"),
    "pause": ("Freeze instances (all their processes)", "cove pause c1"),
    "resume": ("Thaw frozen instances", "cove resume c1"),
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    import argparse  # only when parsers are built: the fast path (cli._fast) skips it

    raw = argparse.RawDescriptionHelpFormatter
    _create_parser(sub, common, "launch", "Create and start an instance from an image",
                   "examples:\n"
                   "  cove launch busybox c1\n"
                   "  cove launch busybox                   a name is made up and printed\n"
                   "  cove launch busybox c2 -c limits.memory=256MiB -c environment.FOO=bar\n"
                   "  cove launch busybox web -p 8080:80     port 80 of web on the host's 8080\n"
                   "  cove launch busybox dns -p 127.0.0.1:5353:53/udp --network lab\n"
                   "  cove launch -e busybox scratch        deleted when it stops\n"
                   "  cove launch busybox db --profile default --profile small\n"
                   "  cove launch busybox bare --no-profiles   no profile, so no NIC")
    _create_parser(sub, common, "init", "Create an instance from an image (do not start it)",
                   "examples:\n"
                   "  cove init busybox c1\n"
                   "  cove init busybox c1 -c limits.cpu=1 && cove start c1")
    for cmd, (summary, examples) in _STATE_HELP.items():
        p = sub.add_parser(cmd, parents=[common], help=summary, description=summary,
                           epilog="examples:\n" + "\n".join("  " + x for x in
                                                            examples.splitlines()),
                           formatter_class=raw)
        p.add_argument("names", metavar="NAME", nargs="*", help="instance names")
        p.add_argument("--all", action="store_true", help="every instance this applies to")
        if cmd in ("stop", "restart"):
            p.add_argument("-f", "--force", action="store_true", help="kill, do not ask")
            p.add_argument("--timeout", type=int, default=-1, metavar="SECONDS",
                           help="kill after this long (default -1: wait)")
        p.set_defaults(func=cmd_state, command=cmd)

    p = sub.add_parser("delete", aliases=["rm"], parents=[common], help="Delete instances",
                       description="Delete instances (stopped ones, or any with --force).",
                       epilog="examples:\n  cove delete c1\n  cove delete -f c1 c2"
                              "        stop them first if running",
                       formatter_class=raw)
    p.add_argument("names", metavar="NAME", nargs="+", help="instance names")
    p.add_argument("-f", "--force", action="store_true",
                   help="stop running instances first; delete one others name in cove.depends")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("list", aliases=["ls"], parents=[common], help="List instances",
                       description="List instances: NAME, STATE, IPV4, TYPE, CREATED.",
                       epilog="examples:\n"
                              "  cove list\n"
                              "  cove list web                 names starting with 'web'\n"
                              "  cove list --format csv        one line per instance, no header\n"
                              "  cove list --format json       the full LXD objects, with state\n"
                              "  cove list --format compact    no borders",
                       formatter_class=raw)
    p.add_argument("filters", metavar="PREFIX", nargs="*", help="show names starting so")
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", parents=[common], help="Show an instance's status and use",
                       description="Show an instance's status, PID, times, last exit code "
                                   "and resource use (or, without NAME, the server's).",
                       epilog="examples:\n  cove info c1\n  cove info\n"
                              "  cove info --resources   the host's CPUs, memory, NICs, disks",
                       formatter_class=raw)
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--resources", action="store_true",
                   help="show the host's hardware (as lxc info --resources)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("rename", parents=[common], help="Rename an instance",
                       description="Rename a (stopped) instance.",
                       epilog="examples:\n  cove rename c1 web1", formatter_class=raw)
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("logs", parents=[common], help="Show an instance's console output",
                       description="Print what the instance's main process wrote.",
                       epilog="examples:\n  cove logs c1\n  cove logs -f c1       "
                              "keep printing new output (Ctrl-C to stop)",
                       formatter_class=raw)
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--stack", metavar="STACK",
                   help="NAME is a service of this stack (default: of the Compose file here)")
    p.set_defaults(func=cmd_logs)
