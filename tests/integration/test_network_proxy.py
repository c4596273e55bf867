"""LXD's non-NAT proxy devices (nat unset or false): a forwarder process
listens on the host and connects from inside the instance's namespaces, so
``connect=tcp:127.0.0.1:80`` (LXD's documented example) reaches a server
bound to the container's loopback only; udp, unix sockets (resolved inside
the container's root), bind=instance, the PROXY header, hot-plug, stop,
coved killed and restarted, and ``lxc config device add``. Only loopback
ports of the host and the test's own containers are used."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CovedPool
from covetest import Api, Coved, forwarder_pids, mkroot, new_name, wait_until
from nethost import http_get

from cove.engine._net_bridge import host_listeners

# httpd on the container's loopback only (NAT could never reach it), an echo
# server on 81, and the bytes of each connection to 82 kept in /tmp/got.
SERVER = ("mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\n"
          "echo\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && "
          "echo hello > /www/index.html && httpd -p 127.0.0.1:80 -h /www && "
          "(while true; do nc -l -p 82 > /tmp/got.new && mv /tmp/got.new /tmp/got; done) & "
          "exec nc -ll -p 81 -e cat")
SERVER_CMD = "sh -c '" + SERVER.replace("'", "'\\''") + "'"


@pytest.fixture(scope="module")
def netd(workdir, busybox_tar) -> Iterator[Coved]:  # type: ignore[no-untyped-def]
    pool = CovedPool(workdir)
    d = pool.new("proxy")
    d.api.import_image(busybox_tar, "busybox")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(api: Api, name: str, devices: dict[str, dict[str, str]],
            cmd: str = SERVER_CMD, nic: bool = True) -> None:
    api.made.append(name)
    body = {"name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": cmd}, "start": True, "devices": devices}
    if not nic:
        body["profiles"] = []
    api.run("POST", "/1.0/instances", body)


def _proxy(listen: str, connect: str, **kw: str) -> dict[str, str]:
    return {"type": "proxy", "listen": listen, "connect": connect, **kw}


def _put_devices(api: Api, name: str, devices: dict[str, dict[str, str]]) -> None:
    """Replace the instance's devices (PUT, as ``lxc config device remove`` does)."""
    inst = api.instance(name)
    r = api.request("PUT", f"/1.0/instances/{name}", {
        k: inst[k] for k in ("config", "profiles", "description", "ephemeral")}
        | {"devices": devices})
    assert r.status in (200, 202), r.body
    if r.status == 202:
        api.wait(r)


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _try(url: str) -> bytes | None:
    try:
        return http_get(url, timeout=1)
    except OSError:
        return None


def _listening(proto: str, port: int) -> bool:
    return any(p == proto and pt == port for p, _, pt in host_listeners())


def _echo(addr: object, family: int, size: int = 4 << 20) -> bytes:
    """Send ``size`` random bytes, half-close, read all that comes back."""
    data = os.urandom(size)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)  # type: ignore[arg-type]

        def send() -> None:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while chunk := s.recv(1 << 16):
            got += chunk
        t.join()
    assert got == data, f"{len(got)} of {len(data)} bytes came back intact"
    return bytes(got)


def test_connect_to_the_containers_loopback_both_ways(netd: Coved) -> None:
    api = netd.api
    p80, p81, p82 = _free_port(), _free_port(), _free_port()
    name = new_name("fwd")
    # LXD's documented example: nat unset, connect to 127.0.0.1 inside
    _launch(api, name, {
        "web": _proxy(f"tcp:127.0.0.1:{p80}", "tcp:127.0.0.1:80"),
        "echo": _proxy(f"tcp:127.0.0.1:{p81}", "tcp:127.0.0.1:81"),
        "pp": _proxy(f"tcp:127.0.0.1:{p82}", "tcp:127.0.0.1:82", proxy_protocol="true")})
    try:
        assert wait_until(lambda: _try(f"http://127.0.0.1:{p80}/"), 5) == b"hello\n"
        # the server sees the forwarder's connection from the container's loopback, as LXD
        assert http_get(f"http://127.0.0.1:{p80}/cgi-bin/ip").strip().endswith(b"127.0.0.1")
        _echo(("127.0.0.1", p81), socket.AF_INET)  # 4 MiB there and back
        # proxy_protocol: LXD's forkproxy sends a PROXY v1 line with the client's address
        with socket.create_connection(("127.0.0.1", p82), timeout=5) as s:
            cport = s.getsockname()[1]
            s.sendall(b"ping\n")
        want = f"PROXY TCP4 127.0.0.1 127.0.0.1 {cport} {p82}\r\nping\n".encode()
        wait_until(lambda: api.exec(name, ["cat", "/tmp/got"])[1] == want, 5,
                   what="the PROXY header and the data")
        assert len(forwarder_pids(netd.root)) == 3
    finally:
        api.remove(name)
    # the forwarders went with the instance: no process, no listening port
    assert forwarder_pids(netd.root) == []
    assert not any(_listening("tcp", p) for p in (p80, p81, p82))


def test_udp_and_unix_through_both_binds(netd: Coved, tmp_path: Path) -> None:
    """A chain through the container: host -> (bind=host) -> inside port or
    socket -> (bind=instance) -> a server on the host, and back. Busybox has
    no udp or unix server of its own."""
    api = netd.api
    udp_in, udp_srv = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
    tcp_srv = _free_port()
    sock_dir = Path(mkroot("proxysock"))
    host_sock = sock_dir / "in.sock"
    name = new_name("chain")
    stop = threading.Event()

    def udp_echo() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", udp_srv))
            s.settimeout(0.2)
            while not stop.is_set():
                try:
                    data, peer = s.recvfrom(65535)
                except TimeoutError:
                    continue
                s.sendto(b"echo:" + data, peer)

    srv = socket.socket()
    srv.bind(("127.0.0.1", tcp_srv))
    srv.listen()

    def tcp_echo() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            with c:
                c.settimeout(10)
                while data := c.recv(1 << 16):
                    c.sendall(data)
    threads = [threading.Thread(target=f, daemon=True) for f in (udp_echo, tcp_echo)]
    for t in threads:
        t.start()
    _launch(api, name, {
        "u1": _proxy(f"udp:127.0.0.1:{udp_in}", "udp:127.0.0.1:7777"),
        "u2": _proxy("udp:127.0.0.1:7777", f"udp:127.0.0.1:{udp_srv}", bind="instance"),
        # x1 drops to nobody once it listens: x2's socket must let it in
        "x1": _proxy(f"unix:{host_sock}", "unix:/run/app.sock", mode="0600",
                     **{"security.uid": "65534", "security.gid": "65534"}),
        "x2": _proxy("unix:/run/app.sock", f"tcp:127.0.0.1:{tcp_srv}", bind="instance",
                     mode="0666"),
    }, cmd="sleep 1000", nic=False)  # no NIC at all: a forwarder needs none
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(2)
            c.sendto(b"dgram", ("127.0.0.1", udp_in))
            assert c.recvfrom(100)[0] == b"echo:dgram"
        assert (host_sock.stat().st_mode & 0o777) == 0o600
        uids = sorted(_uid(p) for p in forwarder_pids(netd.root))
        assert uids == [0, 0, 0, 65534], uids
        _echo(str(host_sock), socket.AF_UNIX, 1 << 20)
        # the inside socket is a file of the container's root, not the host's
        assert b"app.sock" in api.sh(name, "ls -l /run/app.sock")
        assert not Path("/run/app.sock").exists()
    finally:
        api.remove(name)
        stop.set()
        srv.close()
    assert not host_sock.exists(), "the forwarder left its socket file"
    assert forwarder_pids(netd.root) == []
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_a_unix_connect_path_resolves_inside_the_container(netd: Coved) -> None:
    """connect=unix:/run/evil.sock where the container made /run/evil.sock a
    symlink to a host path: the kernel resolves it in the container's root,
    so the host's socket is never reached."""
    api = netd.api
    sock_dir = Path(mkroot("proxyhost"))
    host_sock = sock_dir / "secret.sock"
    secret = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    secret.bind(str(host_sock))
    secret.listen()
    secret.settimeout(0.5)
    port = _free_port()
    name = new_name("esc")
    _launch(api, name, {}, cmd="sleep 1000", nic=False)
    try:
        api.sh(name, f"ln -s {host_sock} /run/evil.sock && ln -s ../../../../{host_sock} "
                     "/run/evil2.sock")
        for target in ("/run/evil.sock", "/run/evil2.sock"):
            r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
                "e": _proxy(f"tcp:127.0.0.1:{port}", f"unix:{target}")}})
            assert r.status == 200, r.body
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"x")
                c.settimeout(5)
                try:  # closed: there is nothing to connect to in the container
                    assert c.recv(10) == b""
                except ConnectionResetError:
                    pass
            with pytest.raises(TimeoutError):
                secret.accept()
    finally:
        api.remove(name)
        secret.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_hot_plug_conflicts_and_bad_devices(netd: Coved) -> None:
    api = netd.api
    port = _free_port()
    name = new_name("hot")
    _launch(api, name, {})
    try:
        assert _try(f"http://127.0.0.1:{port}/") is None
        r = api.request("PATCH", f"/1.0/instances/{name}", {
            "devices": {"web": _proxy(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:80")}})
        assert r.status == 200, r.body
        assert wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5) == b"hello\n"
        (pid,) = forwarder_pids(netd.root)
        # changing it restarts its forwarder (on another port), removing it stops it
        other = _free_port()
        r = api.request("PATCH", f"/1.0/instances/{name}", {
            "devices": {"web": _proxy(f"tcp:127.0.0.1:{other}", "tcp:127.0.0.1:80")}})
        assert r.status == 200, r.body
        assert _try(f"http://127.0.0.1:{other}/") == b"hello\n"
        assert _try(f"http://127.0.0.1:{port}/") is None
        assert forwarder_pids(netd.root) != [pid]
        # a host port in use: 409, and nothing is recorded or left running
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            bport = busy.getsockname()[1]
            r = api.request("PATCH", f"/1.0/instances/{name}", {
                "devices": {"b": _proxy(f"tcp:127.0.0.1:{bport}", "tcp:127.0.0.1:80")}})
            assert r.status == 409 and "in use" in r.error, r.body
            # a change that fails puts the device's old forwarder back
            r = api.request("PATCH", f"/1.0/instances/{name}", {
                "devices": {"web": _proxy(f"tcp:127.0.0.1:{bport}", "tcp:127.0.0.1:80")}})
            assert r.status == 409, r.body
        assert "b" not in api.instance(name)["devices"]
        assert api.instance(name)["devices"]["web"]["listen"] == f"tcp:127.0.0.1:{other}"
        assert _try(f"http://127.0.0.1:{other}/") == b"hello\n"
        assert len(forwarder_pids(netd.root)) == 1
        # a unix listen whose directory does not exist: 400 naming the device
        r = api.request("PATCH", f"/1.0/instances/{name}", {
            "devices": {"u": _proxy("unix:/nonexistent-covetest/x.sock", "tcp:127.0.0.1:80")}})
        assert r.status == 400 and "'u'" in r.error, r.body
        for dev, words in [
            # LXD's rule: with nat=true, connect must be the instance's own address
            (_proxy("tcp:127.0.0.1:1", "tcp:127.0.0.1:80", nat="true"),
             "must be one of the instance's"),
            (_proxy("tcp:127.0.0.1:1", "tcp:10.255.255.9:80", nat="true"),
             "is not one of the instance's"),
            (_proxy("tcp:127.0.0.1:1", "udp:127.0.0.1:80"), "tcp <-> udp"),
            (_proxy("unix:/x.sock", "tcp:127.0.0.1:80", nat="true"), "when using NAT"),
            (_proxy("tcp:127.0.0.1:1", "tcp:127.0.0.1:80", proxy_protocol="yes", nat="1"),
             "non-nat mode"),
        ]:
            r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {"bad": dev}})
            assert r.status == 400 and words in r.error, (dev, r.body)
        _put_devices(api, name, {})
        assert forwarder_pids(netd.root) == []
        assert not _listening("tcp", other)
    finally:
        api.remove(name)


def test_forwarders_outlive_coved_and_are_adopted(netd: Coved) -> None:
    api = netd.api
    port = _free_port()
    name = new_name("adopt")
    _launch(api, name, {"web": _proxy(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:80")})
    try:
        assert wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5) == b"hello\n"
        (pid,) = forwarder_pids(netd.root)
        netd.kill()  # SIGKILL: no cleanup at all
        assert _try(f"http://127.0.0.1:{port}/") == b"hello\n"  # still serving
        netd.start()
        assert forwarder_pids(netd.root) == [pid]  # adopted, not restarted
        # one killed while coved was down is started again by the next coved
        netd.kill()
        os.kill(pid, 9)
        wait_until(lambda: forwarder_pids(netd.root) == [], 5)
        netd.start()
        (pid2,) = forwarder_pids(netd.root)
        assert pid2 != pid
        assert wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5) == b"hello\n"
        api.action(name, "stop", force=True)
        assert forwarder_pids(netd.root) == []
        assert not _listening("tcp", port)
    finally:
        api.remove(name)


def test_a_forwarder_ends_with_its_container_even_without_coved(netd: Coved) -> None:
    api = netd.api
    port = _free_port()
    name = new_name("orphan")
    _launch(api, name, {"web": _proxy(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:80")})
    try:
        assert len(forwarder_pids(netd.root)) == 1
        netd.kill()
        os.kill(_init_pid(netd, name), 9)  # the container's init dies while coved is down
        wait_until(lambda: forwarder_pids(netd.root) == [], 5, what="the forwarder exits")
        assert not _listening("tcp", port)
    finally:
        if not netd.answers():
            netd.start()
        api.remove(name)


def _init_pid(netd: Coved, name: str) -> int:
    out = subprocess.run(["runc", "--root", str(netd.root / "run" / "runc"), "state", name],
                         capture_output=True, check=True).stdout
    return int(json.loads(out)["pid"])


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_config_device_add(netd: Coved) -> None:
    home = mkroot("proxylxc")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home), "LANG": "C.UTF-8"}

    def lxc(*args: str) -> bytes:
        p = subprocess.run([str(LXC), *args], env=env, capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, p.stderr
        return p.stdout
    api = netd.api
    port = _free_port()
    name = new_name("lxc")
    _launch(api, name, {})
    try:
        lxc("remote", "add", "covetest-p", f"unix://{netd.socket}")
        lxc("config", "device", "add", f"covetest-p:{name}", "p", "proxy",
            f"listen=tcp:127.0.0.1:{port}", "connect=tcp:127.0.0.1:80")
        assert wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5) == b"hello\n"
        lxc("config", "device", "remove", f"covetest-p:{name}", "p")
        assert _try(f"http://127.0.0.1:{port}/") is None
        assert forwarder_pids(netd.root) == []
    finally:
        api.remove(name)
        shutil.rmtree(home, ignore_errors=True)


def test_throughput_is_measured_not_asserted(netd: Coved) -> None:
    """A smoke run of the forwarder's speed (bench/proxy.py compares with LXD)."""
    api = netd.api
    port = _free_port()
    name = new_name("speed")
    _launch(api, name, {"echo": _proxy(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:81")})
    try:
        wait_until(lambda: _listening("tcp", port), 5)
        t = time.monotonic()
        _echo(("127.0.0.1", port), socket.AF_INET, 16 << 20)
        print(f"16 MiB echoed through the forwarder in {time.monotonic() - t:.3f} s")
    finally:
        api.remove(name)


def test_pylxd_adds_and_removes_the_device(netd: Coved) -> None:
    import urllib.parse

    import pylxd

    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(netd.socket),
                                                                       safe=""))
    api = netd.api
    port = _free_port()
    name = new_name("pylxd")
    _launch(api, name, {})
    try:
        inst = client.instances.get(name)
        inst.devices["web"] = {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}",
                               "connect": "tcp:127.0.0.1:80"}
        inst.save(wait=True)
        assert wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5) == b"hello\n"
        inst.sync()
        del inst.devices["web"]
        inst.save(wait=True)
        assert _try(f"http://127.0.0.1:{port}/") is None
        assert forwarder_pids(netd.root) == []
    finally:
        api.remove(name)
