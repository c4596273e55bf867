"""The ``-p [ADDRESS:]HOSTPORT:PORT[/PROTO]`` shorthand as an LXD ``proxy``
device (pure; ``re`` only).

Design note: ``cove launch -p`` turns the shorthand into a device without
importing the network model, whose dataclasses, ``typing`` and
``ipaddress`` cost a ``cove`` process ~25 ms. Only the shape is checked
here (a usage error before anything is sent); coved checks the device in
full (``cove.network.model.proxy_from_device``) as it checks any device,
and ``cove.network.model.parse_publish`` is this plus that check.
"""

from __future__ import annotations

import re

from cove.model.errors import BadRequest

__all__ = ["publish_device"]

_PORTS = re.compile(r"^\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def publish_device(spec: str) -> tuple[str, dict[str, str]]:
    """``-p`` as ``(device name, proxy device)``, NAT mode.

    Ports may be ranges of equal length (``8080-8081:80-81``).

    Raises:
        BadRequest: the shorthand does not parse.
    """
    text = spec.strip()
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
        if proto not in ("tcp", "udp"):
            raise BadRequest(f"Invalid publish {spec!r}: protocol must be tcp or udp")
    parts = text.split(":")
    if len(parts) == 2:
        addr, hport, cport = "0.0.0.0", parts[0], parts[1]
    elif len(parts) == 3:
        addr, hport, cport = parts
    else:
        raise BadRequest(f"Invalid publish {spec!r}: use [ADDRESS:]HOSTPORT:PORT[/PROTO], "
                         "like 8080:80 or 127.0.0.1:5353:53/udp")
    if not _IPV4.match(addr) or not _PORTS.match(hport) or not _PORTS.match(cport):
        raise BadRequest(f"Invalid publish {spec!r}: use [ADDRESS:]HOSTPORT:PORT[/PROTO] with "
                         "an IPv4 address and ports (or ranges like 8080-8081)")
    dev = {"type": "proxy", "listen": f"{proto}:{addr}:{hport}",
           "connect": f"{proto}:0.0.0.0:{cport}", "nat": "true"}
    name = f"proxy-{proto}-{hport.replace(',', '_')}"
    if addr != "0.0.0.0":
        name = f"proxy-{proto}-{addr}-{hport}"
    return name, dev
