"""``cove exec --stopped`` (issue 11): the temporary container has what a
start gives the instance (its disk devices, its NICs with its own lease, its
/etc/hosts and resolv.conf, its published ports: NAT and forwarded) and its
own users and groups, read from its files, never the host's; nothing of it
outlives the command, whether the command ends, is killed, or coved dies
under it.

The host is read directly (links, nftables elements, dnsmasq's host files,
leases, forwarder processes, listening sockets, runc state, mounts,
cgroups), not through cove's bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from covetest import Api, Coved, assert_no_leaks, forwarder_pids, new_name, runc_ids, wait_until
from nethost import http_get, links, root_id

from cove.engine._net_bridge import host_listeners


def _host(d: Coved) -> dict[str, Any]:
    """The root's networking as the host has it (links, nft set and map
    elements, dnsmasq host files, forwarder processes) and the leases coved
    reports."""
    table = subprocess.run(["nft", "-j", "list", "table", "inet", f"cove_{root_id(d.root)}"],
                           capture_output=True, timeout=30, check=False).stdout
    elements = {}
    for item in json.loads(table or b'{"nftables": []}').get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                elements[item[kind]["name"]] = len(item[kind].get("elem", []))
    nets = d.root / "networks"
    hosts = sorted(p for n in nets.iterdir() for p in os.listdir(n / "hosts.d")) \
        if nets.exists() else []
    leases = [x for net in d.api.sync("GET", "/1.0/networks")
              for x in d.api.sync("GET", f"{net}/leases")]
    return {"links": links(d.root), "elements": elements, "hosts": hosts,
            "leases": sorted(x["address"] for x in leases),
            "forwarders": sorted(forwarder_pids(d.root))}


def _listening(port: int) -> bool:
    """A TCP socket of the host's namespace listens on ``port``."""
    return any(proto == "tcp" and pt == port for proto, _, pt in host_listeners())


def _exec_stopped(api: Api, name: str, command: list[str], **extra: Any) -> Any:
    return api.request("POST", f"/1.0/instances/{name}/exec", {
        "command": command, "wait-for-websocket": False, "record-output": True,
        "interactive": False, "stopped": True, **extra})


def _run(api: Api, name: str, script: str, **extra: Any) -> tuple[int, bytes]:
    r = _exec_stopped(api, name, ["sh", "-c", script], **extra)
    assert r.status == 202, r.body
    op = api.wait(r)
    assert op["status"] == "Success", op
    out = api.request("GET", op["metadata"]["output"]["1"]).body
    return int(op["metadata"]["return"]), out


def _pid_of(argv: bytes) -> int | None:
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if Path(f"/proc/{p}/cmdline").read_bytes() == argv:
                    return int(p)
            except OSError:
                continue
    return None


def _ipv4(api: Api, name: str) -> str:
    eth0 = api.state(name)["network"]["eth0"]
    return next(a["address"] for a in eth0["addresses"] if a["family"] == "inet")


def _settled(coved: Coved, name: str, before: dict[str, Any]) -> None:
    """The host as before the exec, and nothing of the exec left."""
    wait_until(lambda: _host(coved) == before, 10, what="the host's network as before")
    assert not [c for c in runc_ids(coved.root) if c.endswith(".exec")]
    assert not (coved.root / "instances" / name / "exec-stopped").exists()
    assert_no_leaks(coved.root, [name], existing=True)  # mounts, cgroups, runc state


def test_stopped_exec_gets_nics_disks_and_own_users(coved: Coved, api: Api,
                                                    tmp_path: Path) -> None:
    name = new_name("xs")
    share = tmp_path / "covetest-share"
    share.mkdir()
    (share / "f").write_text("from the host\n")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    api.sync("PATCH", f"/1.0/instances/{name}", {"devices": {
        "data": {"type": "disk", "source": str(share), "path": "/mnt/data"}}})
    before = _host(coved)

    # its disk, its NIC with its own address, its resolver and hosts file
    code, out = _run(api, name, "cat /mnt/data/f; ip -4 -o addr show eth0; "
                                "cat /etc/resolv.conf /etc/hosts; echo up > /mnt/data/g")
    assert code == 0 and out.startswith(b"from the host\n"), out
    addr = out.split(b" inet ")[1].split(b"/")[0].decode()
    assert b"nameserver" in out and name.encode() in out, out
    assert (share / "g").read_text() == "up\n"
    _settled(coved, name, before)
    api.action(name, "start")
    assert _ipv4(api, name) == addr  # the instance's own lease, not another one
    api.action(name, "stop", force=True)

    # users and groups by name, from the instance's own files
    passwd = api.file_get(name, "/etc/passwd").body
    group = api.file_get(name, "/etc/group").body
    api.file_put(name, "/etc/passwd", passwd + b"covetestu:x:1234:2345::/home/u:/bin/sh\n")
    api.file_put(name, "/etc/group", group + b"covetestg:x:3456:\n")
    code, out = _run(api, name, 'id -u; id -g; echo "$HOME"', **{"user-name": "covetestu"})
    assert (code, out) == (0, b"1234\n2345\n/home/u\n")
    code, out = _run(api, name, "id -u; id -g", **{"user-name": "covetestu", "group-name": "covetestg"})
    assert (code, out) == (0, b"1234\n3456\n")
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "exec", "--stopped", "--user",
                        "covetestu", name, "--", "id", "-u"], env=coved.cli_env(),
                       capture_output=True, timeout=60, check=False)
    assert (p.returncode, p.stdout) == (0, b"1234\n"), p.stderr
    r = _exec_stopped(api, name, ["true"], **{"user-name": "covetest-nobody"})
    assert r.status == 400 and "covetest-nobody" in r.error, r.body
    # a passwd that points out of the container is read inside it: the host's
    # users stay unknown (here it resolves to itself, a loop: no users at all)
    host_user = next(line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()
                     if line and line.split(":")[0].encode() + b":" not in passwd)
    api.request("DELETE", f"/1.0/instances/{name}/files?path=/etc/passwd")
    r = api.request("POST", f"/1.0/instances/{name}/files?path=/etc/passwd",
                    b"../../../../../../../../../etc/passwd",
                    headers={"X-LXD-type": "symlink",
                             "Content-Type": "application/octet-stream"})
    assert r.status == 200, r.body
    r = _exec_stopped(api, name, ["true"], **{"user-name": host_user})
    assert r.status == 400 and host_user in r.error, r.body
    _settled(coved, name, before)

    # not on a running instance (LXD's wording), and the running one is untouched
    api.action(name, "start")
    r = _exec_stopped(api, name, ["true"])
    assert r.status == 400 and r.error.startswith("Instance is running"), r.body
    assert api.status(name) == "Running"
    api.action(name, "stop", force=True)


def test_stopped_exec_killed_or_coved_killed_leaves_nothing(coved: Coved, api: Api) -> None:
    name = new_name("xk")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    port = 32000 + os.getpid() % 1000  # published while the exec runs, as by a start
    fport = port + 1000  # forwarded (nat off: a forwarder process) to its loopback
    api.sync("PATCH", f"/1.0/instances/{name}", {"devices": {"p": {
        "type": "proxy", "listen": f"tcp:127.0.0.1:{port}", "connect": "tcp:0.0.0.0:80",
        "nat": "true"}, "f": {"type": "proxy", "listen": f"tcp:127.0.0.1:{fport}",
                              "connect": "tcp:127.0.0.1:80"}}})
    before = _host(coved)
    assert not _listening(fport)
    argv = [b"sleep", str(900000 + os.getpid() % 1000).encode()]
    serve = ("mkdir -p /www && echo covetest-fwd > /www/index.html && "
             "httpd -p 127.0.0.1:80 -h /www && exec " + b" ".join(argv).decode())

    # the command killed from outside: the session ends, its network goes
    r = _exec_stopped(api, name, ["sh", "-c", serve])
    assert r.status == 202, r.body
    pid = wait_until(lambda: _pid_of(b"\0".join(argv) + b"\0"), 20, what="the command")
    during = _host(coved)
    assert len(during["links"]) == len(before["links"]) + 1 and len(during["leases"]) \
        == len(before["leases"]) + 1, (before, during)
    assert during["elements"] != before["elements"] and len(during["hosts"]) \
        == len(before["hosts"]) + 1, (before, during)  # its port and its DNS name
    assert len(during["forwarders"]) == len(before["forwarders"]) + 1 and _listening(fport), \
        (before, during)
    # the forwarder reaches the exec's own loopback (in its namespace, not the host's)
    assert http_get(f"http://127.0.0.1:{fport}/", timeout=5) == b"covetest-fwd\n"
    os.kill(pid, signal.SIGKILL)
    op = api.wait(r)
    assert op["metadata"]["return"] == 137, op
    _settled(coved, name, before)
    assert not _listening(fport)
    assert api.status(name) == "Stopped"

    # coved killed while the command runs: the next coved removes it all
    r = _exec_stopped(api, name, [a.decode() for a in argv])
    assert r.status == 202, r.body
    pid = wait_until(lambda: _pid_of(b"\0".join(argv) + b"\0"), 20, what="the command")
    coved.kill()
    coved.start()
    wait_until(lambda: _pid_of(b"\0".join(argv) + b"\0") is None, 10, what="the command gone")
    _settled(coved, name, before)
    assert not _listening(fport)

    # coved killed while runc's hook waits for the NICs: the next coved
    # answers the hook, and runc ends the half-made container at once
    coved.arm("exec-stopped.hooked")
    with contextlib.suppress(OSError):  # coved dies under the request
        _exec_stopped(api, name, [a.decode() for a in argv])
    coved.revive()
    t = time.monotonic()
    _settled(coved, name, before)
    assert time.monotonic() - t < 10  # not runc's minute of hook timeout
    api.action(name, "start")  # the instance is whole
    assert api.status(name) == "Running"
    api.action(name, "stop", force=True)
