#!/usr/bin/env python3
"""Build (once) a Debian image with a real ``jupyterhub-singleuser`` for tests.

Usage: ``mkjupyter.py [--cache DIR] [--jupyterhub VERSION]``; prints the path
of the LXD unified image tarball (``metadata.yaml`` + ``rootfs/``).

The rootfs is Debian bookworm from ``debootstrap --variant=minbase`` with
python3 and python3-venv, and a venv at ``/opt/jupyter`` holding
``jupyterhub==VERSION`` (the hub's own version, so hub and single-user
server speak the same API) and ``jupyter_server``; ``/usr/local/bin`` links
its ``jupyterhub-singleuser``. User ``jovyan`` (1000) owns ``/home/jovyan``.

The tarball is cached under ``DIR`` (default ``$COVE_TEST_CACHE`` or
``~/.cache/cove-test``) under a name keyed by the recipe (suite, packages,
``_CHROOT_SCRIPT``, ``RECIPE``), the version and the architecture: built
once, then reused; a change of any of them builds a new one. Builds take a lock file, so two test runs never build
the same image at once; a build that fails leaves only its lock.

Needs root, ``debootstrap`` (installed with apt-get when missing) and the
Debian mirror and PyPI (through the host's proxy and CA bundle). The
``chroot`` runs in a private mount namespace (``unshare -m``), so its
``/proc`` mount goes with that namespace and can never leak. Stdlib only:
tests import this file by path.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

__all__ = ["build_jupyter_image", "cache_dir", "main"]

SUITE = "bookworm"
MIRROR = os.environ.get("COVE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_INCLUDE = "python3,python3-venv,ca-certificates,passwd"
RECIPE = 1  # bump to rebuild when the build changes in a way the key does not see
_CHROOT_SCRIPT = (
    "python3 -m venv /opt/jupyter; "
    "/opt/jupyter/bin/pip install -q jupyterhub=={version} jupyter_server; "
    "ln -sf /opt/jupyter/bin/jupyterhub-singleuser /usr/local/bin/; "
    "ln -sf /opt/jupyter/bin/jupyter /usr/local/bin/; "
    "useradd -m -u 1000 -s /bin/bash jovyan; "
    "apt-get clean; rm -rf /var/lib/apt/lists/* /root/.cache")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# Host CA bundle: pip inside the chroot goes through the same proxy as the
# host's, which may present the workplace's CA.
_HOST_CA = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")


def cache_dir() -> Path:
    """Where test artefacts built once are kept (``$COVE_TEST_CACHE`` or
    ``$XDG_CACHE_HOME/cove-test``)."""
    env = os.environ.get("COVE_TEST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cove-test"


def _run(argv: list[str], **kw: object) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                       stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        tail = "\n".join((p.stderr + p.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {p.returncode}:\n{tail}")


def _ensure_debootstrap() -> str:
    found = shutil.which("debootstrap")
    if found:
        return found
    for argv in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"],
                 ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"]):
        try:
            _run(argv, timeout=900)
        except RuntimeError:
            continue
        if shutil.which("debootstrap"):
            break
    found = shutil.which("debootstrap")
    if not found:
        raise RuntimeError("debootstrap is missing and apt-get could not install it")
    return found


def _chroot(root: Path, script: str, timeout: float) -> None:
    """Run ``script`` (sh) chrooted in ``root`` with /proc mounted, inside a
    private mount namespace."""
    inner = (f"mount -t proc proc {root}/proc && "
             f"exec chroot {root} /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
             f"HOME=/root PIP_CERT=/etc/cove-build-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "
             f"/bin/sh -ec '{script}'")
    _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec", inner],
         timeout=timeout)


def _metadata(arch: str, version: str) -> bytes:
    return (f'architecture: "{arch}"\ncreation_date: {int(time.time())}\nproperties:\n'
            f'  os: "debian"\n  release: "{SUITE}"\n'
            f'  description: "Debian {SUITE} with jupyterhub-singleuser {version}"\n'
            "templates: {}\n").encode()


def _pack(root: Path, out: Path, version: str) -> None:
    arch = os.uname().machine
    tmp = out.with_name(out.name + ".part")
    meta = root.parent / "metadata.yaml"
    meta.write_bytes(_metadata(arch, version))

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        # runc gives the container its own /dev; device nodes in an image
        # are refused by cove's extractor anyway.
        if info.ischr() or info.isblk() or info.isfifo():
            return None
        return info

    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=3) as tar:
        tar.add(meta, arcname="metadata.yaml")
        tar.add(root, arcname="rootfs", filter=keep)
    os.replace(tmp, out)


def build_jupyter_image(version: str, cache: Path | None = None,
                        timeout: float = 1800) -> Path:
    """The cached image tarball for ``jupyterhub==version``, built if missing.

    Idempotent: a second call (or another process) finds the same file.

    Raises:
        RuntimeError: debootstrap, apt-get or pip failed (the message has the
            tail of its output).
    """
    cache = Path(cache) if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    key = hashlib.sha256(repr((RECIPE, SUITE, _INCLUDE, _CHROOT_SCRIPT, version, arch)).encode())
    out = cache / f"jupyter-{version}-{key.hexdigest()[:12]}.tar.gz"
    if out.exists():
        return out
    with open(cache / (out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            return out
        work = Path(str(out) + ".build")
        shutil.rmtree(work, ignore_errors=True)
        root = work / "rootfs"
        root.mkdir(parents=True)
        try:
            _run([_ensure_debootstrap(), "--variant=minbase", f"--arch={arch}",
                  f"--include={_INCLUDE}", SUITE, str(root), MIRROR], timeout=timeout)
            shutil.copyfile(_HOST_CA, root / "etc/cove-build-ca.crt")
            shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
            _chroot(root, _CHROOT_SCRIPT.format(version=version), timeout)
            (root / "etc/cove-build-ca.crt").unlink()
            (root / "etc/resolv.conf").write_text("")
            _pack(root, out, version)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--jupyterhub", required=True, help="jupyterhub version to install")
    args = parser.parse_args(argv)
    print(build_jupyter_image(args.jupyterhub, args.cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
