"""cove-monitor: each container's monitor, in place of conmon.

Design note: of what a container costs beyond runc, its monitor is the part
that is cove's choice (docs/performance.md, "Host memory per container" and
"Own monitor"): conmon is ~200 KiB of private memory per container (glib,
the dynamic loader's relocations) and ~7 ms of CPU per start, half of it
its first process execing, linking and daemonising. cove uses little of
it, so cove builds its own (``monitor.c`` next to this file): a static C
program without glib that takes the part of conmon's command line cove
passes and keeps conmon's files and protocols, so nothing else in cove
changes and containers started under conmon keep working next to those
under it: the monitor pid file (``pids/<id>.conmon``), the JSON line on
``_OCI_SYNCPIPE``, the k8s-file log and its size cap, the attach socket and
the ``ctl`` fifo (see ``_console``), the exit file ``exits/<id>``. It does
not write conmon's ``oom`` marker file, which cove never reads (OOM kills
are counted from the cgroup, ``cgroup_metrics``).

It is built like cove-nsexec (``_nsexec.build``: gcc on first use into
``<cove root>/run/bin/cove-monitor-<digest>``, statically linked when the C
library allows, checked with ``--version``). ``COVE_MONITOR=conmon`` keeps
conmon; without gcc, or when the build fails, cove uses conmon and logs
that once.
"""

from __future__ import annotations

import os
from pathlib import Path

from cove.runtime import _nsexec

__all__ = ["SOURCE", "VERSION", "Monitor", "build"]


SOURCE = Path(__file__).with_name("monitor.c")
VERSION = "cove-monitor 1"


def build(out_dir: Path, *, cc: str = "gcc", strict: bool = False) -> Path:
    """Compile ``monitor.c`` into ``out_dir`` unless there; return its path.

    Raises:
        _nsexec.BuildError: no compiler, it does not compile, or does not run.
    """
    return _nsexec.build(out_dir, cc=cc, strict=strict, source=SOURCE,
                         name="cove-monitor", version=VERSION)


class Monitor:
    """The monitor program of one cove root: built on first use, then cached.

    ``path()`` never raises: the program's path, or None when containers
    are to be monitored by conmon (``COVE_MONITOR=conmon``, or it cannot be
    had: logged once). Thread-safe.
    """

    def __init__(self, bin_dir: Path, cc: str = "gcc") -> None:
        self.bin_dir = Path(bin_dir)
        self.cc = cc
        self._built = _nsexec.BuiltOnce(
            lambda: build(self.bin_dir, cc=self.cc),
            "containers are monitored by conmon (more memory and CPU per container)")

    def path(self) -> str | None:
        if os.environ.get("COVE_MONITOR", "cove") == "conmon":
            return None
        return self._built.path()
