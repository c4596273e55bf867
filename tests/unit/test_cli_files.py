"""``cove file push/pull/delete`` against an in-memory file tree in the fake server."""

from __future__ import annotations

import io
import os
import stat

import pytest
from test_client_fakelxd import (
    FakeLXD,
    Reply,
    Request,
    error,
    sync,
)

from cove.cli.main import main

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)


class Node:
    def __init__(self, type: str, mode: int, content: bytes = b"", uid: int = 0,
                 gid: int = 0) -> None:
        self.type, self.mode, self.content, self.uid, self.gid = type, mode, content, uid, gid


class Tree:
    """The instance's files, served as LXD does."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {"/": Node("directory", 0o755),
                                       "/etc": Node("directory", 0o755),
                                       "/etc/hosts": Node("file", 0o644, b"127.0.0.1 lo\n")}

    def _headers(self, n: Node) -> dict[str, str]:
        return {"X-LXD-type": n.type, "X-LXD-uid": str(n.uid), "X-LXD-gid": str(n.gid),
                "X-LXD-mode": f"{n.mode:04o}"}

    def get(self, req: Request) -> Reply:
        path = req.query["path"].rstrip("/") or "/"
        n = self.nodes.get(path)
        if n is None:
            return error(404, "Not found")
        if n.type == "directory":
            prefix = path.rstrip("/") + "/"
            names = sorted(p[len(prefix):] for p in self.nodes
                           if p.startswith(prefix) and "/" not in p[len(prefix):] and p != "/")
            return sync(names, headers=self._headers(n))
        return Reply(200, n.content, {"Content-Type": "application/octet-stream",
                                      **self._headers(n)})

    def post(self, req: Request) -> Reply:
        path = req.query["path"]
        parent = os.path.dirname(path)
        if parent not in self.nodes:
            return error(404, f"parent of {path} missing")
        h = req.headers
        old = self.nodes.get(path)
        self.nodes[path] = Node(h.get("x-lxd-type", "file"),
                                int(h.get("x-lxd-mode", "0644"), 8), req.body,
                                int(h.get("x-lxd-uid", old.uid if old else 0)),
                                int(h.get("x-lxd-gid", old.gid if old else 0)))
        return sync({})

    def delete(self, req: Request) -> Reply:
        if self.nodes.pop(req.query["path"], None) is None:
            return error(404, "Not found")
        return sync({})


@pytest.fixture
def tree(fake: FakeLXD) -> Tree:
    t = Tree()
    fake.route("GET", "/1.0/instances/c1/files")(t.get)
    fake.route("POST", "/1.0/instances/c1/files")(t.post)
    fake.route("DELETE", "/1.0/instances/c1/files")(t.delete)
    return t


@pytest.fixture
def run(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
        capsysbinary: pytest.CaptureFixture[bytes]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")

    def go(*argv: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(argv))
        out, err = capsysbinary.readouterr()
        return code, out, err

    return go


@pytest.fixture
def local(cove_dir: str) -> str:
    d = os.path.join(cove_dir, "local")
    os.makedirs(os.path.join(d, "site", "css"))
    with open(os.path.join(d, "site", "index.html"), "wb") as f:
        f.write(b"<h1>hi</h1>")
    with open(os.path.join(d, "site", "css", "a.css"), "wb") as f:
        f.write(b"body{}")
    os.chmod(os.path.join(d, "site", "css"), 0o750)
    os.symlink("index.html", os.path.join(d, "site", "home.html"))
    with open(os.path.join(d, "run.sh"), "wb") as f:
        f.write(b"#!/bin/sh\n")
    os.chmod(os.path.join(d, "run.sh"), 0o755)
    return d


def test_push_file_keeps_mode_and_sets_owner(tree: Tree, run, local: str) -> None:
    code, _, err = run("file", "push", os.path.join(local, "run.sh"), "c1/etc/run.sh",
                       "--uid", "1000", "--gid", "1001")
    assert (code, err) == (0, b"")
    n = tree.nodes["/etc/run.sh"]
    assert (n.type, n.mode, n.content, n.uid, n.gid) == ("file", 0o755, b"#!/bin/sh\n",
                                                         1000, 1001)


def test_push_into_directory_and_mode_override(tree: Tree, run, local: str) -> None:
    code, _, _ = run("file", "push", os.path.join(local, "run.sh"),
                     os.path.join(local, "site", "index.html"), "c1/etc/", "--mode", "0600")
    assert code == 0
    assert tree.nodes["/etc/run.sh"].mode == 0o600
    assert tree.nodes["/etc/index.html"].content == b"<h1>hi</h1>"


def test_push_create_dirs_probes_and_makes_parents(tree: Tree, run, fake: FakeLXD,
                                                   local: str) -> None:
    code, _, err = run("file", "push", "-p", os.path.join(local, "run.sh"),
                       "c1/opt/app/bin/run.sh")
    assert (code, err) == (0, b"")
    assert tree.nodes["/opt"].type == "directory" and tree.nodes["/opt/app/bin"].mode == 0o755
    made = [r.query["path"] for r in fake.find("POST", "/1.0/instances/c1/files")]
    assert made == ["/opt", "/opt/app", "/opt/app/bin", "/opt/app/bin/run.sh"]


def test_push_recursive_keeps_modes_and_symlinks(tree: Tree, run, local: str) -> None:
    code, _, err = run("file", "push", "-r", os.path.join(local, "site"), "c1/etc")
    assert (code, err) == (0, b"")
    assert tree.nodes["/etc/site"].type == "directory"
    assert tree.nodes["/etc/site/css"].mode == 0o750
    assert tree.nodes["/etc/site/css/a.css"].content == b"body{}"
    link = tree.nodes["/etc/site/home.html"]
    assert (link.type, link.content) == ("symlink", b"index.html")


def test_push_directory_without_r_is_usage_error(tree: Tree, run, local: str) -> None:
    code, _, err = run("file", "push", os.path.join(local, "site"), "c1/etc/")
    assert code == 2 and b"is a directory (use -r)" in err


def test_push_from_stdin(tree: Tree, run) -> None:
    assert run("file", "push", "-", "c1/etc/motd", stdin=b"welcome\n")[0] == 0
    assert tree.nodes["/etc/motd"].content == b"welcome\n"
    assert tree.nodes["/etc/motd"].mode == 0o644


def test_push_missing_local_file_is_error_line(tree: Tree, run, local: str) -> None:
    code, _, err = run("file", "push", os.path.join(local, "nope"), "c1/etc/x")
    assert code == 1 and err.startswith(b"Error: No such file or directory")


def test_bad_target_is_usage_error(tree: Tree, run, local: str) -> None:
    code, _, err = run("file", "push", os.path.join(local, "run.sh"), "c1")
    assert code == 2 and b"NAME/PATH" in err


def test_pull_file_to_path_dir_and_stdout(tree: Tree, run, cove_dir: str) -> None:
    dest = os.path.join(cove_dir, "hosts.copy")
    assert run("file", "pull", "c1/etc/hosts", dest)[0] == 0
    with open(dest, "rb") as f:
        assert f.read() == b"127.0.0.1 lo\n"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o644
    assert run("file", "pull", "c1/etc/hosts", cove_dir)[0] == 0
    assert os.path.exists(os.path.join(cove_dir, "hosts"))
    assert run("file", "pull", "c1/etc/hosts", "-") == (0, b"127.0.0.1 lo\n", b"")


def test_pull_recursive_round_trip(tree: Tree, run, local: str, cove_dir: str) -> None:
    assert run("file", "push", "-r", os.path.join(local, "site"), "c1/etc/")[0] == 0
    back = os.path.join(cove_dir, "back")
    os.mkdir(back)
    code, _, err = run("file", "pull", "-r", "c1/etc/site", back)
    assert (code, err) == (0, b"")
    with open(os.path.join(back, "site", "css", "a.css"), "rb") as f:
        assert f.read() == b"body{}"
    assert stat.S_IMODE(os.stat(os.path.join(back, "site", "css")).st_mode) == 0o750
    assert os.readlink(os.path.join(back, "site", "home.html")) == "index.html"


def test_pull_directory_without_r(tree: Tree, run, cove_dir: str) -> None:
    code, _, err = run("file", "pull", "c1/etc", cove_dir)
    assert code == 2 and b"use -r" in err


def test_pull_missing_is_error_line(tree: Tree, run, cove_dir: str) -> None:
    assert run("file", "pull", "c1/nope", cove_dir) == (1, b"", b"Error: Not found\n")


def test_delete(tree: Tree, run) -> None:
    assert run("file", "delete", "c1/etc/hosts")[0] == 0
    assert "/etc/hosts" not in tree.nodes
    assert run("file", "rm", "c1/etc/hosts")[0] == 1
