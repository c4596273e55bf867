"""An OCI image's run config, carried through an LXD image tarball as
``oci.json``.

Design notes:

* What. An image that came from an OCI layout or a registry runs its
  ``Entrypoint`` + ``Cmd`` with its ``Env`` (the image row's ``cmd`` and
  ``env``) and gives its instances the keys its config means (``oci.json``
  beside its layers: ``cove.cwd``, ``cove.uid``/``cove.gid``,
  ``cove.halt``, ``cove.health*``; ``storage.oci_layout.run_settings``).
  An LXD tarball has no field for them, so an export writes them as a
  top-level ``oci.json`` beside ``metadata.yaml``
  (``{"cmd": [...], "config": {...}, "env": {...}}``) and an import reads
  it back, from a unified tarball or a split image's metadata tarball.
  LXD unpacks an image tarball whole and reads only ``metadata.yaml``,
  ``rootfs/`` and ``templates/``, so a file it does not know is ignored and
  the export still imports into LXD.
* Which images send it. The image directory's ``oci.json`` in the full
  form above (written by an OCI import, a publish from such an image, an
  import of a tarball with one) is sent as it is. An OCI import from
  before (``{"config": ...}`` only, with ``manifest.json`` beside it) is
  sent with its row's command and environment. A published image from
  before has the short form and gets none: its fingerprint is the hash of
  its export without it, and must stay so.
* Hostile input. The member is a regular file of at most 64 KiB holding
  that shape; the config keys are only those an OCI config means, each
  checked as a user's value is (an image cannot make its instances
  privileged or give them devices); environment names are not empty and
  have no ``=`` or NUL. Anything else refuses the import with a 400
  naming ``oci.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from cove.model.config import validate_config
from cove.model.errors import BadRequest
from cove.storage._extract import lstat_type
from cove.storage.safefs import RootFS

__all__ = ["LIMIT", "MEMBER", "decode", "encode", "export_member", "keep", "kept_run",
           "write_full"]

#: the member's name in a tarball, and the file's beside an image's layers
MEMBER = "oci.json"
LIMIT = 64 << 10
_KEYS = ("cove.cwd", "cove.uid", "cove.gid", "cove.halt")
_HEALTH = "cove.health"

Run = tuple[list[str], dict[str, str]]


def encode(cmd: list[str], env: dict[str, str], config: dict[str, str]) -> bytes:
    """The full form, byte-stable (an export's bytes are hashed)."""
    doc = {"cmd": list(cmd), "config": dict(config), "env": dict(env)}
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def _fail(why: str) -> BadRequest:
    return BadRequest(f"{MEMBER}: {why}")


def _config(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail("'config' must be an object")
    for key in value:
        if not isinstance(key, str) or not (key in _KEYS or key == _HEALTH
                                            or key.startswith(_HEALTH + ".")):
            raise _fail(f"config key {key!r} is not one an OCI image's config gives")
    try:
        return validate_config(value)
    except BadRequest as exc:
        raise _fail(exc.message) from None


def decode(data: bytes) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(command, environment, instance keys) of a member.

    Raises:
        BadRequest: naming ``oci.json``: not that shape (module note).
    """
    if len(data) > LIMIT:
        raise _fail(f"larger than {LIMIT} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail("not a JSON object")
    cmd, env = doc.get("cmd", []), doc.get("env", {})
    if not isinstance(cmd, list) or not all(isinstance(c, str) and "\0" not in c for c in cmd):
        raise _fail("'cmd' must be a list of strings")
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k
            and "\0" not in k + v for k, v in env.items()):
        raise _fail("'env' must map variable names (no '=') to strings")
    return cmd, env, _config(doc.get("config", {}))


def _read(path: Path) -> bytes | None:
    """A kept oci.json's bytes (a file cove wrote), or None. Never raises."""
    try:
        with open(path, "rb", opener=_nofollow) as f:
            return f.read(LIMIT + 1)
    except OSError:
        return None


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)


def _full(data: bytes | None) -> tuple[list[str], dict[str, str], dict[str, str]] | None:
    """The full form's fields, or None (none, the short form, not valid)."""
    if data is None:
        return None
    try:
        doc = json.loads(data)
        return decode(data) if isinstance(doc, dict) and "cmd" in doc else None
    except (ValueError, UnicodeDecodeError, BadRequest):
        return None


def kept_run(image_dir: Path) -> Run | None:
    """The command and environment of ``image_dir``'s full-form oci.json,
    or None (none, or the short form). Never raises."""
    full = _full(_read(image_dir / MEMBER))
    return None if full is None else (full[0], full[1])


def export_member(image_dir: Path, run: Callable[[], Run]) -> bytes | None:
    """What an export of the image in ``image_dir`` sends as ``oci.json``
    (module note), or None; ``run`` gives the row's command and environment
    (asked only for an OCI import from before the full form). Never raises
    but what ``run`` raises."""
    data = _read(image_dir / MEMBER)
    full = _full(data)
    if full is not None:
        return encode(*full)
    if data is None or not (image_dir / "manifest.json").is_file():
        return None
    try:  # the short form an OCI import wrote before
        config = _config(json.loads(data).get("config", {}))
    except (ValueError, UnicodeDecodeError, AttributeError, BadRequest):
        return None
    cmd, env = run()
    return encode(cmd, env, config)


def write_full(path: Path, cmd: list[str], env: dict[str, str],
               config: dict[str, str]) -> None:
    """Write the full form to ``path`` (a file cove owns: the image's
    directory being made). Replaces it."""
    path.write_bytes(encode(cmd, env, config))


def keep(src: RootFS, image_dir: Path) -> None:
    """Take ``/oci.json`` of an unpacked image tarball (``src``) into the
    image directory being made, checked; nothing when it has none.

    Raises:
        BadRequest: naming ``oci.json`` (not a regular file, or not that shape).
    """
    kind = lstat_type(src, "/" + MEMBER)
    if kind is None:
        return
    if kind != "file":
        raise _fail("not a regular file")
    try:
        data = src.read_bytes("/" + MEMBER, LIMIT)
    except BadRequest:
        raise _fail(f"larger than {LIMIT} bytes") from None
    cmd, env, config = decode(data)
    write_full(image_dir / MEMBER, cmd, env, config)
