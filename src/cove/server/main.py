"""``coved [--root DIR]``: the daemon.

Order matters: the root is locked and the socket bound (not listening)
before the engine is built, so a second coved on the same root stops before
it touches anything; the socket starts listening only once the engine has
reconciled. SIGTERM and SIGINT stop serving, let running operations finish
for a while, and close the engine; containers keep running (their monitors
hold them), as they do when coved crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from cove.engine import Engine
from cove.engine.surface import EngineAPI
from cove.model.errors import CoveError
from cove.server.app import Runner, make_app, make_metrics_app
from cove.server.listen import SocketInUse, bind_unix
from cove.server.routes_trust import HTTPS, METRICS

__all__ = ["main", "serve"]

log = logging.getLogger("cove.server")

DEFAULT_ROOT = "/var/lib/cove"
SOCKET_NAME = "unix.socket"  # as LXD names it: LXD_DIR=<root> lxc ... finds it


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="coved", description="cove daemon: the LXD REST API "
                                "over a unix socket")
    p.add_argument("--root", type=Path,
                   default=Path(os.environ.get("COVE_DIR") or DEFAULT_ROOT),
                   help="state directory (default: $COVE_DIR or /var/lib/cove)")
    p.add_argument("--socket", type=Path, default=None,
                   help="unix socket path (default: ROOT/unix.socket)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds to let running operations finish at stop (default 30)")
    p.add_argument("--group", metavar="GROUP", default=os.environ.get("COVE_GROUP") or None,
                   help="also let this group use the socket (mode 0660, the root 0710 so "
                        "they can reach it and read nothing else); its members are as trusted "
                        "as root (default: $COVE_GROUP, else root only)")
    p.add_argument("--debug", action="store_true", help="log debug messages and every request")
    return p.parse_args(argv)


def _lock_root(root: Path) -> int:
    """Hold ``root/coved.lock`` for the life of the process (one coved per root)."""
    fd = os.open(root / "coved.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SocketInUse(f"{root}: another coved runs on this root") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def serve(engine: EngineAPI, sock: socket.socket, *, shutdown_timeout: float = 30.0,
                access_log: bool = False) -> None:
    """Serve ``engine`` on the bound ``sock`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = make_app(engine)
    access = logging.getLogger("cove.server.access") if access_log else None
    runner = Runner(app, handle_signals=False, shutdown_timeout=5.0, access_log=access)
    await runner.setup()
    metrics_runner = Runner(make_metrics_app(app), handle_signals=False,
                                   shutdown_timeout=5.0, access_log=access)
    await metrics_runner.setup()
    site = web.SockSite(runner, sock, shutdown_timeout=5.0)
    await site.start()
    log.info("coved listening on %s (root %s)", sock.getsockname(), engine.root)
    await _start_https(engine, runner, metrics_runner)
    await stop.wait()
    log.info("stopping: no new requests; containers keep running")
    await metrics_runner.cleanup()
    await runner.cleanup()
    if not await loop.run_in_executor(None, engine.operations.wait_idle, shutdown_timeout):
        log.warning("operations still running after %.0fs; stopping anyway", shutdown_timeout)


def _group_id(group: str) -> int:
    import grp

    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketInUse(f"no group {group!r} for the socket") from None


def _let_group_traverse(root: Path, sock_path: Path, gid: int) -> None:
    """Let ``gid`` reach the socket and nothing else: the socket 0660 in its
    group, and the root 0710 in its group (traverse, no listing). Everything
    in the root is 0700 or 0600 (the engine, the store and the log make it
    so), so the group can open the socket and read nothing."""
    os.chown(sock_path, -1, gid)
    if sock_path.parent == root:
        os.chown(root, -1, gid)
        os.chmod(root, 0o710)


async def _start_https(engine: EngineAPI, runner: web.AppRunner,
                       metrics_runner: web.AppRunner) -> None:
    """Make the server certificate if this is the first start, and listen on
    ``core.https_address`` and ``core.metrics_address`` if they are set (a
    bad one is logged, not fatal: the unix socket still serves, to fix it)."""
    runner.app[HTTPS].runner = runner
    runner.app[METRICS].runner = metrics_runner
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, engine.trust.server_certificate)
    config = engine.trust.server_config()
    for key, listener in (("core.https_address", runner.app[HTTPS]),
                          ("core.metrics_address", runner.app[METRICS])):
        address = config.get(key, "")
        if address:
            try:
                await listener.apply(address)
            except CoveError as e:
                log.error("not listening on %s: %s", key, e)


def _fewer_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at two (``M_ARENA_MAX``) unless
    ``MALLOC_ARENA_MAX`` says otherwise. glibc gives threads that allocate
    arenas of their own, up to eight per core; coved's worker threads come and
    go, and with every arena fragmenting on its own a steady load crept up
    (bench/soak.py: +2.1% RSS between minutes 5 and 11 with the default, +0.9%
    with two arenas). Never fatal: without glibc nothing changes."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX = -8 in <malloc.h>
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    _fewer_malloc_arenas()  # before the engine starts any thread
    args = _parse(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root: Path = args.root.absolute()
    sock_path: Path = (args.socket or root / SOCKET_NAME).absolute()
    try:
        if not root.exists():
            root.mkdir(mode=0o700, parents=True)
        lock_fd = _lock_root(root)
        gid = _group_id(args.group) if args.group else None
        sock = bind_unix(sock_path, mode=0o660 if args.group else 0o600)
    except (SocketInUse, OSError) as e:
        log.error("cannot start: %s", e)
        return 1
    try:
        engine = Engine(root)  # narrows the root to 0700
        if gid is not None:
            _let_group_traverse(root, sock_path, gid)
        try:
            engine.startup()
            asyncio.run(serve(engine, sock, shutdown_timeout=args.shutdown_timeout,
                              access_log=args.debug))
        finally:
            engine.close()
    except Exception:
        log.exception("coved failed")
        return 1
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)
        os.close(lock_fd)
    log.info("stopped")
    return 0


def _exit(code: int) -> None:
    """Exit with ``code`` once ``main`` returned, skipping the interpreter's
    teardown: by then coved has closed all it owns (engine, socket, lock;
    the threads left are daemons or idle pool workers), and garbage-collecting
    every loaded module took 0.3-1.4 s of each stop on a loaded host, which a
    restart (``cove`` autostarts coved this way) and every test paid."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
