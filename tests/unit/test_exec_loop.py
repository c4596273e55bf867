"""The exec session's poll loop (``cove.client._exec_loop``) against a fake
LXD: what a loop without threads could get wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from typing import Any

from test_client_fakelxd import FakeLXD, FakeOp, Request, ServerWebSocket, async_

from cove.client import Client

pytest_plugins = ("test_client_fakelxd",)


def _exec_route(fake: FakeLXD, handlers: dict[str, Any], code: int = 0) -> FakeOp:
    """A POST exec whose streams are ``handlers``; the operation ends with
    ``code`` once the handlers of 1 and 2 have returned."""
    secrets = {n: uuid.uuid4().hex for n in ("0", "1", "2", "control")}
    op = fake.add_op(FakeOp("websocket", {"fds": secrets}))
    left = threading.Semaphore(0)

    def output(fn: Any) -> Any:
        def run(req: Request, ws: ServerWebSocket) -> None:
            try:
                fn(req, ws)
            finally:
                left.release()
        return run

    def finish() -> None:
        left.acquire()
        left.acquire()
        op.finish(**{"return": code})

    threading.Thread(target=finish, daemon=True).start()
    wrapped = {n: output(fn) if n in ("1", "2") else fn for n, fn in handlers.items()}
    for n, secret in secrets.items():
        fake.websockets[secret] = wrapped[n]
    fake.route("POST", "/1.0/instances/c1/exec")(lambda req: async_(op))
    return op


def _control(req: Request, ws: ServerWebSocket) -> None:
    while ws.recv()[0] != 8:
        pass
    ws.close()


def _closed(req: Request, ws: ServerWebSocket) -> None:
    ws.close()
    ws.recv()


def test_output_flows_while_stdin_is_not_read(fake: FakeLXD) -> None:
    """The command never reads stdin and writes more than every buffer
    holds: the loop must keep reading output while stdin waits (a blocking
    send of stdin would hang here)."""
    release = threading.Event()
    stuck: list[str] = []
    got_stdin = bytearray()
    out = b"x" * (4 << 20)

    def fd0(req: Request, ws: ServerWebSocket) -> None:
        if not release.wait(10):  # stdin unread until all the output is out
            stuck.append("the output never got out while stdin was unread")
        while True:
            opcode, data = ws.recv()
            if opcode != 2:
                return
            got_stdin.extend(data)

    def fd1(req: Request, ws: ServerWebSocket) -> None:
        for i in range(0, len(out), 1 << 16):
            ws.send(2, out[i:i + (1 << 16)])
        release.set()
        ws.send(1, b"")
        ws.close()
        ws.recv()

    _exec_route(fake, {"0": fd0, "1": fd1, "2": _closed, "control": _control}, code=4)
    stdin = b"y" * (8 << 20)
    with Client(fake.socket_path) as client:
        result = client.exec("c1", ["cmd"], stdin=stdin)
    assert stuck == []
    assert (result.exit_code, len(result.stdout)) == (4, len(out))
    assert result.stdout == out
    assert bytes(got_stdin) == stdin[:len(got_stdin)]  # in order, whatever got through


def test_output_sent_with_the_upgrade_reply_is_not_lost(fake: FakeLXD) -> None:
    """Output and close sent at once, read by the client together with the
    upgrade's reply: poll never sees it, the loop must take it from the
    buffer first."""
    def fd0(req: Request, ws: ServerWebSocket) -> None:
        while ws.recv()[0] == 2:
            pass

    def fd2(req: Request, ws: ServerWebSocket) -> None:
        ws.send(2, b"err\n")
        ws.close()
        ws.recv()

    def fd1(req: Request, ws: ServerWebSocket) -> None:
        ws.send(2, b"out\n")
        ws.close()
        ws.recv()

    _exec_route(fake, {"0": fd0, "1": fd1, "2": fd2, "control": _control})
    with Client(fake.socket_path) as client:
        for _ in range(5):
            result = client.exec("c1", ["cmd"])
            assert (result.exit_code, result.stdout, result.stderr) == (0, b"out\n", b"err\n")
            _exec_route(fake, {"0": fd0, "1": fd1, "2": fd2, "control": _control})


def test_cli_exec_imports_no_thread_machinery(fake: FakeLXD) -> None:
    """``cove exec`` (in a process of its own) runs without ``threading``,
    ``socket``, ``signal`` or ``enum``: what its start used to pay for."""
    def fd0(req: Request, ws: ServerWebSocket) -> None:
        while ws.recv()[0] == 2:
            pass

    def fd1(req: Request, ws: ServerWebSocket) -> None:
        ws.send(2, b"out\n")
        ws.close()
        ws.recv()

    _exec_route(fake, {"0": fd0, "1": fd1, "2": _closed, "control": _control}, code=3)
    code = ("import sys; from cove.cli.main import main; c = main(['exec', 'c1', '--', 'x']); "
            "sys.stderr.write(repr(sorted(m for m in ('threading', 'socket', 'signal', "
            "'enum', 'struct') if m in sys.modules)) + ' ' + str(c))")
    env = dict(os.environ, COVE_DIR=os.path.dirname(fake.socket_path), COVE_NO_AUTOSTART="1")
    proc = subprocess.run([sys.executable, "-c", code], input=b"in", capture_output=True,
                          env=env, timeout=60, check=True)
    assert (proc.stdout, proc.stderr.decode()) == (b"out\n", "[] 3")
