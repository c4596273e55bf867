"""The image servers the CLI knows by name (``cove remote``), as ``lxc``'s remotes.

A remote is a name for an image server: another LXD or cove host
(``protocol=lxd``), an LXD image server (``simplestreams``) or an OCI
registry (``oci``). ``cove launch hub:library/alpine:3.20 web`` turns the
name into LXD's wire form, ``source: {type: image, server, protocol, alias,
certificate}``, and coved fetches the image itself: the server does the
pull, as with LXD, so what the CLI keeps is only where to find the server
and whom to trust there.

Kept in the CLI's config (``$XDG_CONFIG_HOME/cove/config.json``, key
``remotes``), a server certificate the user accepted in
``servercerts/NAME.crt`` beside it (as ``lxc`` does), and credentials for a
registry in a containers-auth.json file (``--auth-file``, or cove's own
``auth.json`` written by ``--username``/``--password-stdin``).

Design note: ``local`` is the coved of ``--root``, never stored; a spec
whose prefix before ``:`` is not a remote's name is a local image reference,
so local aliases that hold a colon keep working.
"""

from __future__ import annotations

import os

from cove.cli.context import UsageError, config_dir, read_config, write_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PROTOCOLS", "Remote", "add_remote", "load_remotes", "remove_remote",
           "rename_remote", "save_credentials", "split_image_ref"]

PROTOCOLS = ("lxd", "simplestreams", "oci")
_LOOPBACK = ("127.", "localhost", "[::1]", "::1")


class Remote:
    """One named image server. ``addr`` is its URL (``https://host[:port]``, or
    ``http://`` to a loopback registry with ``insecure``)."""

    __slots__ = ("addr", "auth_file", "insecure", "name", "protocol", "public")

    def __init__(self, name: str, addr: str, protocol: str, *, public: bool = False,
                 auth_file: str | None = None, insecure: bool = False) -> None:
        self.name = name
        self.addr = addr
        self.protocol = protocol
        self.public = public
        self.auth_file = auth_file
        self.insecure = insecure

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"addr": self.addr, "protocol": self.protocol}
        if self.public:
            out["public"] = True
        if self.auth_file:
            out["auth_file"] = self.auth_file
        if self.insecure:
            out["insecure"] = True
        return out

    @property
    def cert_path(self) -> str:
        return os.path.join(config_dir(), "servercerts", f"{self.name}.crt")

    def certificate(self) -> str | None:
        """The server certificate the user accepted (PEM), if any."""
        try:
            with open(self.cert_path, encoding="ascii") as f:
                return f.read()
        except OSError:
            return None

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) for this server from the remote's auth file
        (containers-auth.json: ``{"auths": {"host[:port]": {"auth":
        base64("user:password")}}}``), or None.

        Raises:
            UsageError: the auth file is named but unreadable or malformed.
        """
        if not self.auth_file:
            return None
        return _lookup_auth(self.auth_file, _host_key(self.addr))

    def source(self, ref: str) -> dict[str, str]:
        """LXD's instance/image source for ``ref`` on this server: an alias,
        or a fingerprint for ``protocol=lxd`` when ``ref`` is hex."""
        src = {"type": "image", "server": self.addr, "protocol": self.protocol}
        if (self.protocol == "lxd" and len(ref) >= 12
                and all(c in "0123456789abcdef" for c in ref)):
            src["fingerprint"] = ref
        else:
            src["alias"] = ref
        cert = self.certificate()
        if cert:
            src["certificate"] = cert
        creds = self.credentials() if self.protocol == "oci" else None
        if creds:  # coved pulls: the registry's credentials go with the request
            import base64
            src["secret"] = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        return src


def load_remotes() -> dict[str, Remote]:
    """Every stored remote by name (entries that are not well-formed are skipped)."""
    raw = read_config().get("remotes")
    out: dict[str, Remote] = {}
    if not isinstance(raw, dict):
        return out
    for name, entry in raw.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("addr"), str)
                and entry.get("protocol") in PROTOCOLS):
            continue
        auth = entry.get("auth_file")
        out[name] = Remote(name, entry["addr"], entry["protocol"],
                           public=bool(entry.get("public")),
                           auth_file=auth if isinstance(auth, str) else None,
                           insecure=bool(entry.get("insecure")))
    return out


def split_image_ref(spec: str) -> tuple[Remote | None, str]:
    """``hub:library/alpine:3.20`` → (the remote ``hub``, ``library/alpine:3.20``);
    ``local:x`` and a spec whose prefix names no remote → (None, the local ref).

    Raises:
        UsageError: ``REMOTE:`` with nothing after it.
    """
    prefix, sep, rest = spec.partition(":")
    if not sep:
        return None, spec
    if prefix == "local":
        return None, rest
    remote = load_remotes().get(prefix)
    if remote is None:
        return None, spec
    if not rest:
        raise UsageError(f"give an image on remote {prefix!r}: {prefix}:NAME")
    return remote, rest


def check_name(name: str) -> None:
    if not name or name == "local" or any(c in name for c in ":/ \t\n") or name.startswith("-"):
        raise UsageError(f"invalid remote name {name!r}: a word without ':', '/' or spaces, "
                         "not 'local'")


def check_addr(addr: str, protocol: str, insecure: bool) -> None:
    """https always (with a path for a simplestreams tree); plain http only to a
    loopback OCI registry with --insecure.

    Raises:
        UsageError: any other URL.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(addr)
    # a simplestreams tree may live under a path (lxc takes one too)
    path_ok = parts.path in ("", "/") or protocol == "simplestreams"
    if not parts.hostname or not path_ok or parts.query or parts.fragment:
        raise UsageError(f"invalid URL {addr!r}: want https://HOST[:PORT]"
                         + ("[/PATH]" if protocol == "simplestreams" else ""))
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise UsageError(f"invalid port in {addr!r}") from None
    if parts.scheme == "https":
        return
    if parts.scheme == "http":
        if protocol != "oci" or not insecure:
            raise UsageError(f"{addr!r} is plain HTTP: only an OCI registry on loopback may be "
                             "reached that way, with --insecure")
        if not parts.hostname.startswith(_LOOPBACK) and parts.hostname != "::1":
            raise UsageError(f"{addr!r}: plain HTTP is allowed only to a loopback address")
        return
    raise UsageError(f"invalid URL {addr!r}: want https://HOST[:PORT]")


def add_remote(remote: Remote, certificate: str | None) -> None:
    """Store ``remote`` (and the accepted server certificate, PEM).

    Raises:
        UsageError: the name is taken or invalid, the URL is not allowed.
    """
    check_name(remote.name)
    check_addr(remote.addr, remote.protocol, remote.insecure)
    data = read_config()
    remotes = data.get("remotes") if isinstance(data.get("remotes"), dict) else {}
    assert isinstance(remotes, dict)
    if remote.name in remotes:
        raise UsageError(f"remote {remote.name!r} exists already")
    if certificate:
        os.makedirs(os.path.dirname(remote.cert_path), mode=0o700, exist_ok=True)
        _write_private(remote.cert_path, certificate)
    remotes[remote.name] = remote.to_json()
    data["remotes"] = remotes
    write_config(data)


def remove_remote(name: str) -> None:
    """Forget remote ``name`` and its certificate.

    Raises:
        UsageError: no such remote.
    """
    data = read_config()
    remotes = data.get("remotes")
    if not isinstance(remotes, dict) or name not in remotes:
        raise UsageError(f"remote {name!r} not found")
    del remotes[name]
    write_config(data)
    try:
        os.unlink(Remote(name, "", "lxd").cert_path)
    except FileNotFoundError:
        pass


def rename_remote(old: str, new: str) -> None:
    """Raises: UsageError: ``old`` missing, ``new`` taken or invalid."""
    check_name(new)
    data = read_config()
    remotes = data.get("remotes")
    if not isinstance(remotes, dict) or old not in remotes:
        raise UsageError(f"remote {old!r} not found")
    if new in remotes:
        raise UsageError(f"remote {new!r} exists already")
    remotes[new] = remotes.pop(old)
    old_cert, new_cert = Remote(old, "", "lxd").cert_path, Remote(new, "", "lxd").cert_path
    if os.path.exists(old_cert):
        os.replace(old_cert, new_cert)
    write_config(data)


def save_credentials(addr: str, user: str, password: str) -> str:
    """Record (user, password) for ``addr``'s host in cove's own auth file
    (``$XDG_CONFIG_HOME/cove/auth.json``, mode 0600, containers-auth.json
    format, so skopeo and podman read it too); its path."""
    import base64
    import json

    path = os.path.join(config_dir(), "auth.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("auths"), dict):
        data = {"auths": {}}
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    data["auths"][_host_key(addr)] = {"auth": token}
    os.makedirs(config_dir(), mode=0o700, exist_ok=True)
    _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def _write_private(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _host_key(addr: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(addr).netloc


def _lookup_auth(path: str, host: str) -> tuple[str, str] | None:
    import base64
    import binascii
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read auth file {path}: {e.strerror}") from None
    except ValueError:
        raise UsageError(f"auth file {path} is not JSON") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    entry = auths.get(host) if isinstance(auths, dict) else None
    if entry is None and isinstance(auths, dict):  # docker writes "https://host" keys too
        entry = auths.get(f"https://{host}") or auths.get(f"http://{host}")
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    token = entry.get("auth")
    if not isinstance(token, str):
        return None
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise UsageError(f"auth file {path}: the entry for {host} is not base64 "
                         "'user:password'") from None
    if not sep:
        raise UsageError(f"auth file {path}: the entry for {host} has no password")
    return user, password
