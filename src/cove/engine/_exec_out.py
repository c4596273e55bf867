"""Commands run without websockets, and the log files of an instance:
``console.log`` (the instance's own output, from conmon's k8s-file log)
and the outputs ``exec`` records (``record-output``) as
``logs/exec_<operation>.stdout|stderr`` in the instance's directory.

Design note: a detached command gets an empty stdin; its outputs are read
to EOF (a few seconds at most after it exits, in case a daemonised child
keeps them open) into the log files, or nowhere; the operation's metadata
then gets ``return`` and, when recorded, ``output`` (the log paths), as
LXD gives them.
"""

from __future__ import annotations

import errno
import os
import selectors
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cove.engine.operations import Operation
from cove.engine.types import ExecSession
from cove.model.errors import BadRequest
from cove.model.projects import instance_url

__all__ = ["CONSOLE_LOG", "CONSOLE_NAMES", "Reader", "check_log_name", "close_stdin",
           "file_reader", "parse_k8s_log", "run_detached"]

CONSOLE_LOG = "console.log"
# ``lxc info --show-log`` asks for ``lxc.log``: the same log.
CONSOLE_NAMES = (CONSOLE_LOG, "lxc.log")
DRAIN_GRACE = 5.0  # after exit, for the outputs to reach EOF
_READ = 1 << 16

# Reads a log from a byte offset: (data, offset to read on from).
Reader = Callable[[int], tuple[bytes, int]]


def check_log_name(file: str) -> str:
    """Raises BadRequest for a name that is not one plain file name."""
    if not file or "/" in file or file in (".", "..") or ".." in file or file.startswith("."):
        raise BadRequest(f"Invalid log file name {file!r}")
    return file


def file_reader(path: Path) -> Reader:
    """A reader of ``path`` in chunks (a missing file reads as empty)."""
    def read(offset: int) -> tuple[bytes, int]:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(_READ)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)
    return read


def parse_k8s_log(data: bytes) -> bytes:
    """Turn conmon's k8s-file lines (``TIME STREAM P|F TEXT``) into plain output."""
    out = bytearray()
    for line in data.splitlines():
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else b""
        out += text
        if parts[2] == b"F":
            out += b"\n"
    return bytes(out)


def close_stdin(session: ExecSession) -> None:
    """End the command's input. The fd belongs to the session (it closes it),
    so rather than closing it, point it at /dev/null: the pipe's write end
    goes away (the command reads EOF) and the number stays valid."""
    fd = session.stdin_fd
    if fd is None:
        return
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


def run_detached(session: ExecSession, log_dir: Path | None, name: str, op: Operation) -> None:
    """Operation body: stdin empty, outputs to files (or nowhere), then the code."""
    files: dict[int, IO[bytes] | None] = {}
    output: dict[str, str] = {}
    try:
        close_stdin(session)
        streams = ([("1", session.pty_fd)] if session.pty_fd is not None
                   else [("1", session.stdout_fd), ("2", session.stderr_fd)])
        if log_dir is not None:
            log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stream, fd in streams:
            if fd is None:
                continue
            f: IO[bytes] | None = None
            if log_dir is not None:
                ext = "stdout" if stream == "1" else "stderr"
                fname = f"exec_{op.id}.{ext}"
                f = open(log_dir / fname, "wb")  # noqa: SIM115 - closed in finally
                output[stream] = instance_url(name, f"/logs/{fname}")
            files[fd] = f
        code = _drain(session, files)
    finally:
        for f in files.values():
            if f is not None:
                f.close()
        session.close()
    metadata: dict[str, Any] = {"return": code}
    if log_dir is not None:
        metadata["output"] = output
    op.update(**metadata)


def _drain(session: ExecSession, files: dict[int, IO[bytes] | None]) -> int:
    sel = selectors.PollSelector()  # poll, unlike epoll, also takes regular files
    for fd in files:
        sel.register(fd, selectors.EVENT_READ)
    exited_at: float | None = None
    code: int | None = None
    while sel.get_map():
        for key, _ in sel.select(timeout=0.2):
            fd = int(key.fd)
            try:
                data = os.read(fd, _READ)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                sel.unregister(fd)
            elif (f := files[fd]) is not None:
                f.write(data)
        if code is None:
            code = session.wait(timeout=0)
            if code is not None:
                exited_at = time.monotonic()
        elif exited_at is not None and time.monotonic() - exited_at > DRAIN_GRACE:
            break
    sel.close()
    if code is None:
        code = session.wait()
    return code if code is not None else -1
