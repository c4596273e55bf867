"""The stub libsystemd conmon runs with: built once, loaded instead of the
system's (so libgcrypt and the compressors are not), refused when it would
not do. That conmon then monitors containers as before is what every
integration test that starts one shows."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cove.runtime import _conmon_libs

CONMON = shutil.which("conmon")
pytestmark = pytest.mark.skipif(
    not (CONMON and shutil.which("gcc") and shutil.which("readelf")),
    reason="needs conmon, gcc and readelf (scripts/setup.sh)")


def _loaded(env: dict[str, str]) -> str:
    assert CONMON
    return subprocess.run([CONMON], env={**env, "LD_TRACE_LOADED_OBJECTS": "1"},
                          capture_output=True, text=True, timeout=10, check=False).stdout


def test_conmon_loads_the_stub_and_not_libsystemds_dependencies(tmp_path: Path) -> None:
    assert CONMON
    d = _conmon_libs.build(tmp_path, CONMON)
    assert sorted(p.name for p in d.iterdir()) == ["libsystemd.so.0"]
    assert not os.stat(d).st_mode & 0o077
    system, stubbed = _loaded({}), _loaded({"LD_LIBRARY_PATH": str(d)})
    assert "libgcrypt" in system  # what the stub spares each conmon
    assert f"{d}/libsystemd.so.0" in stubbed
    assert "libgcrypt" not in stubbed and "liblzma" not in stubbed
    # built once: the second call finds it
    inode = os.stat(d / "libsystemd.so.0").st_ino
    assert _conmon_libs.build(tmp_path, CONMON) == d
    assert os.stat(d / "libsystemd.so.0").st_ino == inode
    # a build of another source is replaced, never loaded
    (tmp_path / "conmon-libs-0000").mkdir()
    _conmon_libs.build(tmp_path, CONMON)
    assert not (tmp_path / "conmon-libs-0000").exists()


def test_a_build_others_can_write_is_built_again(tmp_path: Path) -> None:
    assert CONMON
    d = _conmon_libs.build(tmp_path, CONMON)
    lib = d / "libsystemd.so.0"
    os.chmod(lib, 0o777)
    with open(lib, "ab") as f:  # what someone else could have written into it
        f.write(b"covetest-tampered")
    assert _conmon_libs.build(tmp_path, CONMON) == d
    # (not the inode: a file made right after the old one went may reuse it)
    assert not lib.read_bytes().endswith(b"covetest-tampered")
    assert not os.stat(lib).st_mode & 0o022


def test_refused_for_a_program_without_libsystemd(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    true = shutil.which("true")
    assert true
    assert _conmon_libs.imported_from_libsystemd(true) is None
    with pytest.raises(_conmon_libs.BuildError, match="does not link libsystemd"):
        _conmon_libs.build(tmp_path, true)
    libs = _conmon_libs.ConmonLibs(tmp_path, conmon=true)
    with caplog.at_level(logging.WARNING, logger="cove.runtime"):
        assert libs.env() == {} and libs.env() == {}
    assert len([r for r in caplog.records if "libsystemd" in r.message]) == 1
    assert list(tmp_path.iterdir()) == []


def test_system_libs_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_CONMON_LIBS", "system")
    assert _conmon_libs.ConmonLibs(tmp_path).env() == {}
    monkeypatch.delenv("COVE_CONMON_LIBS")
    env = _conmon_libs.ConmonLibs(tmp_path).env()
    assert Path(env["LD_LIBRARY_PATH"]).parent == tmp_path
