"""The host's view of one cove root's networking, read without asking cove:
links (bridges carry ``ifalias cove:<root id>:<network>``, veths are named
``cv<root id>...``), cove's nftables table, dnsmasq processes started from
the root's files, network namespaces. Used by the leak checks and by the
forced cleanup of a root; touches nothing of any other root or program.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from cove.host import proc

__all__ = ["HTTPD", "destroy_network", "dns_query", "dnsmasq_pids", "http_get", "httpd_cmd",
           "links", "network_leaks", "nft_tables", "root_id"]


def root_id(root: Path) -> str:
    return hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:6]


def _ip_links() -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, check=False,
                         timeout=30).stdout
    try:
        return list(json.loads(out or b"[]"))
    except ValueError:
        return []


def links(root: Path) -> list[str]:
    """Links of ``root``: its bridges (by ifalias) and veths (by name)."""
    rid = root_id(root)
    found = []
    for ln in _ip_links():
        name = str(ln.get("ifname", ""))
        alias = str(ln.get("ifalias", ""))
        if alias.startswith(f"cove:{rid}:") or name.startswith(f"cv{rid}"):
            found.append(name)
    return sorted(found)


def nft_tables(root: Path) -> list[str]:
    rid = root_id(root)
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, check=False,
                         timeout=30).stdout
    try:
        items = json.loads(out or b"{}").get("nftables", [])
    except ValueError:
        return []
    return [f"{t['table']['family']} {t['table']['name']}" for t in items
            if "table" in t and t["table"]["name"] == f"cove_{rid}"]


def dnsmasq_pids(root: Path) -> list[int]:
    needle = f"--conf-file={Path(root).absolute()}/".encode()
    return sorted(proc.pids_with_arg(b"dnsmasq", needle))


def network_leaks(root: Path, *, bridges_ok: bool = False) -> list[str]:
    """What of ``root``'s networking is on the host. ``bridges_ok``: a coved
    serving the root may keep its bridges, dnsmasqs and table; only veths count."""
    rid = root_id(root)
    found = [f"link {n}" for n in links(root) if not (bridges_ok and not n.startswith(f"cv{rid}"))]
    if not bridges_ok:
        found += [f"nft table {t}" for t in nft_tables(root)]
        found += [f"dnsmasq pid {p}" for p in dnsmasq_pids(root)]
    return found


def destroy_network(root: Path) -> list[str]:
    """Remove whatever of ``root``'s networking is left; what had to go."""
    forced: list[str] = []
    for pid in dnsmasq_pids(root):
        forced.append(f"dnsmasq {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    rid = root_id(root)
    # veths go with their container's namespace; wait a little for the kernel
    deadline = time.monotonic() + 2
    while any(n.startswith(f"cv{rid}") for n in links(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in links(root):
        forced.append(f"link {name}")
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False, timeout=30)
    for table in nft_tables(root):
        forced.append(f"nft table {table}")
        subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True,
                       check=False, timeout=30)
    return forced


# -- talking to what a test made (its containers, its bridges, loopback) ------------

def dns_query(server: str, name: str, timeout: float = 1.0) -> str | None:
    """The first A record ``server`` (a test's own bridge address) gives for
    ``name``; None for NXDOMAIN or no answer."""
    import socket
    import struct

    qid = int.from_bytes(os.urandom(2), "big")
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    msg += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    msg += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (server, 53))
        try:
            data = s.recv(512)
        except OSError:
            return None
    if data[3] & 0x0F or struct.unpack(">H", data[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(data[-4:])


def http_get(url: str, timeout: float = 3.0) -> bytes:
    import urllib.request

    # never through a proxy from the environment: only to the test's own addresses
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return bytes(r.read())


# The busybox httpd of a test container: /cgi-bin/ip answers the client's address.
HTTPD = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\n"
         "echo\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && "
         "echo hello > /www/index.html && exec httpd -f -p 80 -h /www")


def httpd_cmd() -> str:
    """``cove.cmd`` that runs HTTPD (shell words)."""
    return "sh -c '" + HTTPD.replace("'", "'\\''") + "'"
