"""LXD's proxy device without NAT, on every driver: the example of LXD's own
documentation (``listen=tcp:127.0.0.1:PORT connect=tcp:127.0.0.1:80``)
reaches a server bound to the container's loopback only, added to and
removed from a running container; NAT's rule on the connect address."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from conftest import FEATURE_DRIVERS, Host

from cove.model.errors import CoveError

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int) -> bytes | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return bytes(r.read())
    except OSError:
        return None


def test_proxy_device_connects_inside_the_container(host: Host) -> None:
    d = host.driver
    name = host.name("proxy")
    d.create_container(name, alias=host.image)
    t = d.transport_for(name)
    # busybox httpd backgrounds itself; on the container's loopback only
    t.execute("mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
              "httpd -p 127.0.0.1:80 -h /tmp/www")
    port = _free_port()
    d.update_container(name, devices={"web": {
        "type": "proxy", "listen": f"tcp:127.0.0.1:{port}", "connect": "tcp:127.0.0.1:80"}})
    deadline = time.monotonic() + 10
    while (body := _get(port)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert body == b"hello\n"
    d.update_container(name, devices={"web": None})
    assert _get(port) is None
    # nat=true: LXD refuses a connect address that is not the instance's own
    # (cove when the device is set; LXD when it starts it on the running container)
    with pytest.raises(CoveError):
        d.update_container(name, devices={"n": {
            "type": "proxy", "listen": f"tcp:127.0.0.1:{port}",
            "connect": "tcp:127.0.0.1:80", "nat": "true"}})
    d.delete_container(name)
