"""Exit watcher: one thread, one epoll, a pidfd per running container.

A pidfd becomes readable when its process exits, whoever its parent is, so
coved learns of a container's end at once without polling and without
being the container's parent (conmon is).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable

__all__ = ["ExitWatcher"]


class ExitWatcher:
    def __init__(self, on_exit: Callable[[str, int], None]) -> None:
        self._on_exit = on_exit
        self._ep = select.epoll()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self._r, select.EPOLLIN)
        self._by_fd: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="exit-watcher", daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        """Watch ``pid``; call ``on_exit(name, pid)`` (in a new thread) when it ends."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            threading.Thread(target=self._on_exit, args=(name, pid), daemon=True).start()
            return
        with self._lock:
            self._by_fd[fd] = (name, pid)
        self._ep.register(fd, select.EPOLLIN)

    def _loop(self) -> None:
        while not self._stop:
            try:
                events = self._ep.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self._r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._r, 4096)
                    continue
                with self._lock:
                    item = self._by_fd.pop(fd, None)
                with contextlib.suppress(OSError):
                    self._ep.unregister(fd)
                os.close(fd)
                if item is not None:
                    threading.Thread(target=self._on_exit, args=item, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        os.write(self._w, b"x")
        self._thread.join(timeout=2)
        with self._lock:
            for fd in self._by_fd:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._by_fd.clear()
        self._ep.close()
        os.close(self._r)
        os.close(self._w)
