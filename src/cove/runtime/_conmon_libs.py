"""conmon without libsystemd's dependencies: a stub ``libsystemd.so.0``.

Design note: conmon is the largest part of a container's host memory that
is cove's choice (docs/performance.md, "Host memory per container"): ~340
KiB of private memory each, a third of it the relocated data of shared
libraries it loads but does not use. conmon links ``libsystemd.so.0`` for
one function, ``sd_journal_sendv_with_location``, used only by its
``journald`` log driver; libsystemd in turn loads libgcrypt, libgpg-error,
liblzma, libzstd, liblz4 and libcap. Each library mapped costs a process
its relocated pages and page tables, about 150 KiB per conmon for these.
cove always asks for the ``k8s-file`` driver, so conmon never calls it.

So conmon runs with ``LD_LIBRARY_PATH`` set to a directory holding only a
stub ``libsystemd.so.0`` (built by gcc on first use into ``<cove
root>/run/bin/conmon-libs-<sha256>``, like cove-nsexec; written under a
temporary name and renamed): the same soname and symbol version, every
function it exports answering ``-ENOSYS`` as systemd's own builds without
the journal do. It is used only when conmon imports from libsystemd
nothing but what the stub exports (read with ``readelf``) and conmon then
answers ``--version``; otherwise, without gcc or readelf, or with
``COVE_CONMON_LIBS=system``, conmon loads the system's libsystemd as
before (logged once). The variable is inherited by what conmon starts,
``runc``, which does not link libsystemd; a container's processes get the
spec's environment only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from cove.host import proc
from cove.model.errors import CoveError

__all__ = ["ConmonLibs", "build", "imported_from_libsystemd"]

log = logging.getLogger("cove.runtime")

_VERSION_NODE = "LIBSYSTEMD_209"
# What the stub exports: the journal's send functions (conmon's journald
# driver). Anything else conmon imports from libsystemd: no stub.
_EXPORTS = ("sd_journal_sendv_with_location", "sd_journal_sendv")
_SOURCE = """\
/* cove: a stub libsystemd for conmon (see cove/runtime/_conmon_libs.py). */
struct iovec;
int sd_journal_sendv(const struct iovec *iov, int n);
int sd_journal_sendv_with_location(const char *file, const char *line, const char *func,
                                   const struct iovec *iov, int n);
int sd_journal_sendv(const struct iovec *iov, int n) {
    (void)iov; (void)n;
    return -38; /* -ENOSYS */
}
int sd_journal_sendv_with_location(const char *file, const char *line, const char *func,
                                   const struct iovec *iov, int n) {
    (void)file; (void)line; (void)func; (void)iov; (void)n;
    return -38;
}
"""
_MAP = f"{_VERSION_NODE} {{ global: {'; '.join(_EXPORTS)}; local: *; }};\n"
_FLAGS = ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-nostdlib",
          "-Wl,-soname,libsystemd.so.0", "-Wl,-z,relro,-z,now"]
_UND = re.compile(r"\bUND\s+(\S+?)@(\S+?)(?:\s|\(|$)")


class BuildError(CoveError):
    """The stub could not be built, or conmon does not run with it."""


def imported_from_libsystemd(conmon: str, readelf: str = "readelf") -> set[str] | None:
    """The symbols ``conmon`` imports with a libsystemd version (``LIBSYSTEMD_*``);
    None when it does not link libsystemd. Raises: BuildError (no readelf)."""
    try:
        needed = proc.run([readelf, "-d", "-W", conmon], timeout=30).stdout.decode()
        syms = proc.run([readelf, "--dyn-syms", "-W", conmon], timeout=30).stdout.decode()
    except CoveError as e:
        raise BuildError(f"cannot read conmon's imports: {e}") from None
    if "[libsystemd.so.0]" not in needed:
        return None
    return {m.group(1) for m in _UND.finditer(syms)
            if m.group(2).startswith("LIBSYSTEMD_")}


def _digest(cc: str) -> str:
    h = hashlib.sha256(_SOURCE.encode())
    h.update(_MAP.encode())
    h.update("\0".join([cc, *_FLAGS]).encode())
    return h.hexdigest()[:16]


def build(out_dir: Path, conmon: str, *, cc: str = "gcc") -> Path:
    """Build the stub into ``out_dir/conmon-libs-<digest>/`` unless there;
    return that directory (for ``LD_LIBRARY_PATH``). Appears whole or not at
    all; older builds are removed.

    Raises:
        BuildError: conmon imports from libsystemd what the stub lacks (or
            nothing: it does not link it), no compiler or readelf, the build
            failed, or conmon does not run with the stub.
    """
    imported = imported_from_libsystemd(conmon)
    if imported is None:
        raise BuildError("conmon does not link libsystemd")
    extra = imported - set(_EXPORTS)
    if extra:
        raise BuildError(f"conmon imports {', '.join(sorted(extra))} from libsystemd")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = out_dir / f"conmon-libs-{_digest(cc)}"
    if _usable(target, conmon):
        _remove_older(out_dir, target)
        return target
    if target.exists() or target.is_symlink():  # not ours, or not loadable: again
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    tmp = Path(tempfile.mkdtemp(prefix=".conmon-libs-", dir=out_dir))
    try:
        (tmp / "stub.c").write_text(_SOURCE)
        (tmp / "stub.map").write_text(_MAP)
        try:
            proc.run([cc, *_FLAGS, f"-Wl,--version-script={tmp / 'stub.map'}",
                      "-o", str(tmp / "libsystemd.so.0"), str(tmp / "stub.c")], timeout=120)
        except CoveError as e:
            raise BuildError(f"cannot build the libsystemd stub: {e}") from None
        (tmp / "stub.c").unlink()
        (tmp / "stub.map").unlink()
        os.chmod(tmp / "libsystemd.so.0", 0o500)
        os.chmod(tmp, 0o700)
        _check_runs(str(tmp), conmon)
        try:
            os.rename(tmp, target)
        except OSError:  # another builder was first
            if not _usable(target, conmon):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_older(out_dir, target)
    return target


def _remove_older(out_dir: Path, target: Path) -> None:
    for old in out_dir.glob("conmon-libs-*"):  # builds of an older source
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _usable(d: Path, conmon: str) -> bool:
    """An existing build conmon may load as root: our directory and file,
    writable by no one else, with which conmon runs."""
    try:
        for p in (d, d / "libsystemd.so.0"):
            st = os.stat(p, follow_symlinks=False)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022 or stat.S_ISLNK(st.st_mode):
                return False
        _check_runs(str(d), conmon)
    except (OSError, BuildError):
        return False
    return True


def _check_runs(lib_dir: str, conmon: str) -> None:
    """conmon loads the stub (not the system's libsystemd) and runs with it."""
    env = {"LD_LIBRARY_PATH": lib_dir, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        res = proc.run([conmon, "--version"], check=False, timeout=10, env=env)
        trace = proc.run([conmon], check=False, timeout=10,
                         env={**env, "LD_TRACE_LOADED_OBJECTS": "1"})
    except CoveError as e:
        raise BuildError(f"conmon does not run with the stub: {e}") from None
    if res.returncode != 0 or b"conmon version" not in res.stdout:
        raise BuildError(f"conmon does not run with the stub (exit {res.returncode})")
    if f"{lib_dir}/libsystemd.so.0".encode() not in trace.stdout:
        raise BuildError("conmon does not load the stub")


class ConmonLibs:
    """The stub of one cove root: built on first use, then cached.

    ``env()`` never raises: ``{"LD_LIBRARY_PATH": dir}`` for conmon's
    environment, or ``{}`` (logged once) when the stub cannot be had or
    ``COVE_CONMON_LIBS=system``. Thread-safe.
    """

    def __init__(self, bin_dir: Path, conmon: str = "conmon", cc: str = "gcc") -> None:
        self.bin_dir = Path(bin_dir)
        self.conmon = conmon
        self.cc = cc
        self._lock = threading.Lock()
        self._env: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        if self._env is not None:
            return self._env
        with self._lock:
            if self._env is None:
                self._env = {}
                if os.environ.get("COVE_CONMON_LIBS") == "system":
                    return self._env
                conmon = shutil.which(self.conmon) or self.conmon
                try:
                    self._env = {"LD_LIBRARY_PATH": str(build(self.bin_dir, conmon,
                                                              cc=self.cc))}
                except (BuildError, OSError) as e:
                    log.warning("conmon loads the system's libsystemd (more memory "
                                "per container): %s", e)
        return self._env
