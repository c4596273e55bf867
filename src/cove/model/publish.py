r"""The ``-p [ADDRESS:]HOSTPORT:PORT[/PROTO]`` shorthand as an LXD ``proxy``
device (pure; imports nothing).

Design note: ``cove launch -p`` turns the shorthand into a device without
importing the network model, whose dataclasses, ``typing`` and
``ipaddress`` cost a ``cove`` process ~25 ms. Only the shape is checked
here (a usage error before anything is sent); coved checks the device in
full (``cove.network.model.proxy_from_device``) as it checks any device,
and ``cove.network.model.parse_publish`` is this plus that check. The shape
is checked with str methods, not ``re`` (~3 ms the ``cove`` command no
longer imports otherwise), giving what the regular expressions
``^\d{1,3}(\.\d{1,3}){3}$`` and ``^\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*$``
gave (tests/unit/test_network_model.py holds them equal).
"""

from __future__ import annotations

from cove.model.errors import BadRequest

__all__ = ["is_ipv4_shape", "is_ports_shape", "publish_device"]


def _digits(text: str, most: int) -> bool:
    # isdecimal() is exactly re's \d for str (Unicode category Nd)
    return 1 <= len(text) <= most and text.isdecimal()


def _end(text: str) -> str:
    return text.removesuffix("\n")  # re's "$" also matches before one "\n"


def is_ipv4_shape(text: str) -> bool:
    """Four dot-separated runs of 1-3 digits (the values are coved's check)."""
    parts = _end(text).split(".")
    return len(parts) == 4 and all(_digits(p, 3) for p in parts)


def is_ports_shape(text: str) -> bool:
    """Comma-separated ports or ``A-B`` ranges of 1-5 digits each."""
    for item in _end(text).split(","):
        low, dash, high = item.partition("-")
        if not _digits(low, 5) or (dash and not _digits(high, 5)):
            return False
    return True


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
    if not is_ipv4_shape(addr) or not is_ports_shape(hport) or not is_ports_shape(cport):
        raise BadRequest(f"Invalid publish {spec!r}: use [ADDRESS:]HOSTPORT:PORT[/PROTO] with "
                         "an IPv4 address and ports (or ranges like 8080-8081)")
    dev = {"type": "proxy", "listen": f"{proto}:{addr}:{hport}",
           "connect": f"{proto}:0.0.0.0:{cport}", "nat": "true"}
    name = f"proxy-{proto}-{hport.replace(',', '_')}"
    if addr != "0.0.0.0":
        name = f"proxy-{proto}-{addr}-{hport}"
    return name, dev
