"""``cove remote add|list|remove|rename``: named image servers, as ``lxc remote``.

``cove remote add`` checks the server answers before storing it: an HTTPS
server whose certificate the system does not trust shows its fingerprint
and is stored only with ``--accept-certificate`` (or a ``y`` on a
terminal), the certificate then pinned in ``servercerts/NAME.crt``; coved
gets it with every request that names the remote (``source.certificate``).
"""

from __future__ import annotations

import argparse
import sys

from cove.cli import render
from cove.cli._remotes import (
    PROTOCOLS,
    Remote,
    add_remote,
    check_addr,
    check_name,
    load_remotes,
    remove_remote,
    rename_remote,
    save_credentials,
)
from cove.cli.context import Context, UsageError
from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIST_HEADERS", "register"]

_RAW = argparse.RawDescriptionHelpFormatter
LIST_HEADERS = ("NAME", "URL", "PROTOCOL", "AUTH", "PUBLIC")


def _server_certificate(ctx: Context, remote: Remote, accept: bool) -> str | None:
    """The certificate to pin for ``remote``: None when the system trusts the
    server (or it is plain HTTP); the server's own when the user accepts it.

    Raises:
        UsageError: nobody answers, or an untrusted certificate not accepted.
    """
    if not remote.addr.startswith("https://"):
        return None
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(remote.addr)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=10) as raw, \
                ssl.create_default_context().wrap_socket(raw, server_hostname=host):
            return None  # trusted by the system: nothing to pin
    except ssl.SSLCertVerificationError:
        pass
    except OSError as e:
        raise UsageError(f"cannot reach {remote.addr}: {e.strerror or e}") from None
    from cove.client._tls import _pem_to_der, fetch_certificate, fingerprint

    try:
        pem = fetch_certificate(f"https://{host}:{port}")
    except CoveError as e:
        raise UsageError(f"cannot reach {remote.addr}: {e}") from None
    print_fp = fingerprint(_pem_to_der(pem, remote.addr))
    if accept:
        return pem
    if sys.stdin.isatty() and ctx.out.isatty():
        ctx.out.write(f"Certificate fingerprint: {print_fp}\nok (y/n)? ")
        ctx.out.flush()
        if sys.stdin.readline().strip().lower() in ("y", "yes"):
            return pem
        raise UsageError("server certificate not accepted")
    raise UsageError(f"{remote.addr} presents a certificate this system does not trust "
                     f"(fingerprint {print_fp}): check it, then add the remote with "
                     "--accept-certificate")


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    check_name(args.name)
    addr = args.url.rstrip("/")
    if "://" not in addr:
        addr = f"https://{addr}"
    check_addr(addr, args.protocol, args.insecure)
    if (args.username or args.password_stdin) and args.auth_file:
        raise UsageError("--auth-file and --username/--password-stdin exclude each other")
    if args.password_stdin and not args.username:
        raise UsageError("--password-stdin needs --username")
    if (args.username or args.auth_file) and args.protocol != "oci":
        raise UsageError("credentials are for OCI registries (--protocol=oci); an LXD server "
                         "trusts a client certificate instead")
    if args.name in load_remotes():
        raise UsageError(f"remote {args.name!r} exists already")
    auth_file = None
    if args.auth_file:
        import os

        auth_file = os.path.abspath(args.auth_file)
    remote = Remote(args.name, addr, args.protocol, public=args.public, auth_file=auth_file,
                    insecure=args.insecure)
    if auth_file:
        remote.credentials()  # fails now on an unreadable file, not at the first pull
    certificate = _server_certificate(ctx, remote, args.accept_certificate)
    if args.username:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
        if not password:
            raise UsageError("give the password on standard input with --password-stdin")
        remote.auth_file = save_credentials(addr, args.username, password)
    add_remote(remote, certificate)
    ctx.info(f"Remote {args.name} added")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    remotes = sorted(load_remotes().values(), key=lambda r: r.name)
    rows = [["local (current)", f"unix://{ctx.socket_path}", "lxd", "file access", "NO"]]
    raw: list[dict[str, object]] = [{"name": "local", "addr": f"unix://{ctx.socket_path}",
                                     "protocol": "lxd"}]
    for r in remotes:
        auth = ("basic" if r.auth_file else "none") if r.protocol == "oci" else (
            "none" if r.protocol == "simplestreams" or r.public else "tls")
        rows.append([r.name, r.addr, r.protocol, auth, "YES" if r.public else "NO"])
        raw.append({"name": r.name, **r.to_json()})
    ctx.out.write(render.render(args.format, LIST_HEADERS, rows, raw))
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    for name in args.names:
        remove_remote(name)
        ctx.info(f"Remote {name} removed")
    return 0


def cmd_rename(ctx: Context, args: argparse.Namespace) -> int:
    rename_remote(args.old, args.new)
    return 0


_ADD_EPILOG = """\
examples:
  cove remote add hub https://registry.example:5000 --protocol=oci
  cove remote add hub https://registry.example --protocol=oci --auth-file ~/.docker/config.json
  echo "$PASS" | cove remote add hub https://registry.example --protocol=oci \\
      --username me --password-stdin
  cove remote add dev http://127.0.0.1:5000 --protocol=oci --insecure
  cove remote add images https://images.example --protocol=simplestreams --public
  cove remote add lxd2 https://10.0.0.2:8443 --accept-certificate
then:
  cove image pull hub:library/alpine:3.20
  cove launch hub:library/alpine:3.20 web"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("remote", help="named image servers: OCI registries, LXD servers",
                       description="Name image servers (OCI registries, LXD image servers, other "
                                   "LXD or cove hosts); their images are then REMOTE:IMAGE for "
                                   "launch, init and image pull. coved fetches them itself.",
                       epilog=_ADD_EPILOG, formatter_class=_RAW)
    cmds = p.add_subparsers(title="commands", metavar="COMMAND", required=True)

    a = cmds.add_parser("add", parents=[common], help="add a remote",
                        description="Add an image server under a name; its images are then "
                                    "NAME:IMAGE for launch, init and image pull.",
                        epilog=_ADD_EPILOG, formatter_class=_RAW)
    a.add_argument("name", metavar="NAME")
    a.add_argument("url", metavar="URL", help="https://HOST[:PORT] (http:// only with --insecure)")
    a.add_argument("--protocol", choices=PROTOCOLS, default="lxd",
                   help="lxd (another LXD or cove host), simplestreams (an LXD image server) "
                        "or oci (a container registry); default lxd")
    a.add_argument("--public", action="store_true",
                   help="the server's public images only, without a trusted certificate")
    a.add_argument("--auth-file", metavar="FILE",
                   help="registry credentials in containers-auth.json / docker config.json form")
    a.add_argument("--username", metavar="USER", help="registry user (password from stdin)")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the registry password from standard input")
    a.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP to a registry on a loopback address")
    a.add_argument("--accept-certificate", action="store_true",
                   help="pin the server's certificate when the system does not trust it")
    a.set_defaults(func=cmd_add)

    ls = cmds.add_parser("list", aliases=["ls"], parents=[common], help="list remotes",
                         description="The remotes this user has, and local (this coved).",
                         epilog="examples:\n  cove remote list\n  cove remote list -f json",
                         formatter_class=_RAW)
    ls.add_argument("--format", "-f", choices=render.FORMATS, default="table")
    ls.set_defaults(func=cmd_list)

    rm = cmds.add_parser("remove", aliases=["rm"], parents=[common], help="forget remotes",
                         description="Forget remotes and their pinned certificates (images "
                                     "pulled from them stay).",
                         epilog="examples:\n  cove remote remove hub", formatter_class=_RAW)
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_remove)

    rn = cmds.add_parser("rename", parents=[common], help="rename a remote",
                         description="Give a remote another name (its certificate follows).",
                         epilog="examples:\n  cove remote rename hub registry",
                         formatter_class=_RAW)
    rn.add_argument("old", metavar="OLD")
    rn.add_argument("new", metavar="NEW")
    rn.set_defaults(func=cmd_rename)
