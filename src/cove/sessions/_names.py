"""Pure rules of app sessions: instance names, labels, volumes, environment.

Design notes:

* An instance name is for people; the labels (``user.cove.session.*``
  config keys) carry the facts and nothing is parsed back out of a name. A
  name is ``s-USER-APP-HASH``: USER and APP are the login and the app id
  cut down to LXD's characters (letters, digits, ``-``) and 20 characters
  each, HASH is 12 hex digits of SHA-256 over (realm, user, app). Two users
  whose logins cut down alike (``a.b`` and ``a-b``, or two long e-mail
  addresses) therefore still get two names, and the same (realm, user, app)
  always gets the same name: that is what makes the create the lock.
* Filters go to the server as LXD's ``?filter=`` language, whose values are
  regular expressions for LXD and coved alike. So the facts a lookup filters
  on are also stored hashed (``user-hash``, ``app-hash``: hex), and the
  results are checked against the plain labels once more on the client.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from cove.model.errors import BadRequest

__all__ = [
    "LABEL",
    "PORT_DEVICE",
    "check_realm",
    "digest",
    "disk_devices",
    "limits_config",
    "session_env",
    "session_name",
    "unix_user",
]

LABEL = "user.cove.session."  # the prefix of every session label
PORT_DEVICE = "session-port"  # the proxy device publishing the app port
VOLUME_DEVICE = "session-vol"  # + an index: one disk device per volume

_KEEP = re.compile(r"[^A-Za-z0-9]+")
_REALM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def digest(*parts: str) -> str:
    """32 hex digits of SHA-256 over ``parts`` (NUL-separated, so
    ``("a", "bc")`` and ``("ab", "c")`` differ)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _readable(text: str, size: int) -> str:
    return _KEEP.sub("-", text).strip("-")[:size].strip("-") or "x"


def session_name(realm: str, user: str, app_id: str) -> str:
    """The instance name of (realm, user, app): LXD's rules (letters, digits
    and ``-``, a letter first, at most 63), the same every time, distinct
    for distinct triples (up to a 48-bit hash)."""
    return "-".join(("s", _readable(user, 20), _readable(app_id, 20),
                     digest(realm, user, app_id)[:12]))


def check_realm(realm: object) -> str:
    """Return ``realm`` if it may name a realm: letters, digits and ``-``,
    up to 63, not starting with ``-`` (it becomes a project name, and a
    filter value, so nothing else).

    Raises:
        BadRequest: it may not.
    """
    if not isinstance(realm, str) or not _REALM.match(realm):
        raise BadRequest(f"Bad realm {realm!r}: use up to 63 letters, digits and '-', "
                         "starting with a letter or digit")
    return realm


def check_text(what: str, value: object) -> str:
    """A user or app id: any non-empty text without NUL.

    Raises:
        BadRequest: naming ``what``.
    """
    if not isinstance(value, str) or not value or "\0" in value or len(value) > 1024:
        raise BadRequest(f"Bad {what} {value!r}: a non-empty string (no NUL, at most 1024)")
    return value


def unix_user(login: str) -> str:
    """The ``USER`` a session's app sees: the local part of an e-mail login,
    cut to POSIX name characters; ``user`` for anything else (simphony's
    rule: the name in the container is a convenience, not an identity)."""
    if "@" in login:
        local = re.sub(r"[^a-z0-9_-]", "", login.split("@", 1)[0].lower())[:32]
        if local and not local[0].isdigit() and local[0] != "-":
            return local
    return "user"


def session_env(user: str, url_id: str, base_urlpath: str,
                environment: Mapping[str, Any] | None) -> dict[str, str]:
    """The app's environment: the caller's, then simphony's four on top
    (the caller's never override them).

    Raises:
        BadRequest: a key that is no environment variable name.
    """
    env: dict[str, str] = {}
    for key, value in (environment or {}).items():
        if not isinstance(key, str) or not _ENV_KEY.match(key):
            raise BadRequest(f"Bad environment variable name {key!r}")
        env[key] = str(value)
    env.update(JPY_USER=user, JPY_BASE_USER_URL=base_urlpath.rstrip("/"),
               USER=unix_user(user), URL_ID=url_id)
    return env


def limits_config(limits: Mapping[str, Any] | None) -> dict[str, str]:
    """``{"memory": "256MiB", "limits.cpu": "1"}`` as ``limits.*`` config keys.

    Raises:
        BadRequest: a key that is not a plain word.
    """
    out: dict[str, str] = {}
    for key, value in (limits or {}).items():
        if not isinstance(key, str) or not re.match(r"^[a-z][a-z0-9_.-]*$", key):
            raise BadRequest(f"Bad limit {key!r}")
        out[key if key.startswith("limits.") else f"limits.{key}"] = str(value)
    return out


def _clean_path(what: str, path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise BadRequest(f"Bad volume {what} {path!r}: an absolute path")
    if ".." in path.split("/"):
        raise BadRequest(f"Bad volume {what} {path!r}: '..' is not allowed")
    return posixpath.normpath(path)


def disk_devices(volumes: Mapping[str, Any] | None,
                 exists: Any) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``{host_path: {"bind": path, "mode": "ro"|"rw"}}`` as LXD disk devices,
    and the host paths skipped because ``exists(path)`` said they are
    missing (never created: simphony's rule).

    Raises:
        BadRequest: a bad path (relative, or with ``..``), bind or mode, all
            checked before anything is looked up.
    """
    devices: dict[str, dict[str, str]] = {}
    skipped: list[str] = []
    checked = []
    for source, spec in (volumes or {}).items():
        host = _clean_path("host path", source)
        if not isinstance(spec, Mapping):
            raise BadRequest(f"Bad volume {source!r}: a {{'bind': path, 'mode': mode}} mapping")
        bind = _clean_path("bind", spec.get("bind"))
        mode = spec.get("mode", "rw")
        if mode not in ("ro", "rw"):
            raise BadRequest(f"Bad volume mode {mode!r} for {source!r}: 'ro' or 'rw'")
        checked.append((str(source), host, bind, mode))
    for source, host, bind, mode in checked:
        if not exists(host):
            skipped.append(source)
            continue
        dev = {"type": "disk", "source": host, "path": bind}
        if mode == "ro":
            dev["readonly"] = "true"
        devices[f"{VOLUME_DEVICE}{len(devices)}"] = dev
    return devices, skipped
