"""``cove image import/list/delete/alias`` against the fake server."""

from __future__ import annotations

import io
import json
import os

import pytest
from test_client_fakelxd import (
    FakeLXD,
    error,
    sync,
)

from cove.cli.images import Progress
from cove.cli.main import main

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)

FP = "3f2a9c81d0e4" + "ab" * 26
FP2 = "77aa00bb11cc" + "cd" * 26
IMG = {"fingerprint": FP, "size": 2_129_920, "architecture": "x86_64", "public": False,
       "aliases": [{"name": "busybox", "description": ""}, {"name": "bb", "description": ""}],
       "properties": {"description": "busybox 1.36"}, "uploaded_at": "2024-05-01T10:20:30Z"}
IMG2 = {"fingerprint": FP2, "size": 512, "architecture": "x86_64", "public": True,
        "aliases": [], "properties": {}, "uploaded_at": "2024-05-02T00:00:00Z"}


@pytest.fixture
def cli(fake: FakeLXD, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("COVE_DIR", os.path.dirname(fake.socket_path))
    monkeypatch.setenv("COVE_NO_AUTOSTART", "1")
    fake.route("GET", "/1.0/images")(lambda req: sync([IMG2, IMG]))
    fake.route("GET", "/1.0/images/aliases")(lambda req: sync(
        [{"name": "busybox", "target": FP, "description": "the box"}]))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


LIST = """\
+---------+--------------+--------+--------------+--------------+---------+----------------------+
|  ALIAS  | FINGERPRINT  | PUBLIC | DESCRIPTION  | ARCHITECTURE |  SIZE   |     UPLOAD DATE      |
+---------+--------------+--------+--------------+--------------+---------+----------------------+
| busybox | 3f2a9c81d0e4 | no     | busybox 1.36 | x86_64       | 2.03MiB | 2024/05/01 10:20 UTC |
| bb      |              |        |              |              |         |                      |
+---------+--------------+--------+--------------+--------------+---------+----------------------+
|         | 77aa00bb11cc | yes    |              | x86_64       | 512B    | 2024/05/02 00:00 UTC |
+---------+--------------+--------+--------------+--------------+---------+----------------------+
"""


def test_image_list_table_and_formats(cli) -> None:
    code, out, err = cli("image", "list")
    assert (code, err) == (0, "")
    assert out == LIST
    code, out, _ = cli("image", "ls", "--format", "csv", "77")
    assert out == f"{''},77aa00bb11cc,yes,,x86_64,512B,2024/05/02 00:00 UTC\n"
    code, out, _ = cli("image", "list", "-f", "json", "bus")
    assert [i["fingerprint"] for i in json.loads(out)] == [FP]


def test_import_prints_fingerprint_and_aliases(fake: FakeLXD, cli,
                                               cove_dir: str) -> None:
    tarball = os.path.join(cove_dir, "bb.tar")
    with open(tarball, "wb") as f:
        f.write(b"x" * 1000)
    fake.route("POST", "/1.0/images")(lambda req: fake.finished(fingerprint=FP))
    fake.route("POST", "/1.0/images/aliases")(lambda req: sync({}))
    code, out, err = cli("image", "import", tarball, "--alias", "busybox", "--alias", "bb",
                         "--public")
    assert (code, err) == (0, "")  # no progress bar: stderr is not a terminal here
    assert out == f"Image imported with fingerprint: {FP}\n"
    up = fake.find("POST", "/1.0/images")[0]
    assert up.headers["x-lxd-public"] == "1" and up.headers["x-lxd-filename"] == "bb.tar"
    assert [r.json()["name"] for r in fake.find("POST", "/1.0/images/aliases")] == [
        "busybox", "bb"]


def test_import_missing_file(cli, cove_dir: str) -> None:
    code, _, err = cli("image", "import", os.path.join(cove_dir, "nope.tar"))
    assert code == 1 and err.startswith("Error: No such file or directory")


def test_progress_bar_draws_and_clears() -> None:
    buf = io.StringIO()
    bar = Progress(buf, "Uploading image")
    bar(50, 100)
    bar(100, 100)
    bar.done()
    text = buf.getvalue()
    assert "Uploading image: 50% (" in text and "Uploading image: 100% (" in text
    assert text.endswith("\r\033[K")


def test_delete_by_alias_and_by_fingerprint(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/images/aliases/busybox")(lambda req: sync(
        {"name": "busybox", "target": FP}))
    fake.route("GET", "/1.0/images/aliases/77aa00bb11cc")(lambda req: error(404, "nope"))
    fake.route("DELETE", f"/1.0/images/{FP}")(lambda req: fake.finished())
    fake.route("DELETE", "/1.0/images/77aa00bb11cc")(lambda req: fake.finished())
    assert cli("image", "delete", "busybox", "77aa00bb11cc") == (0, "", "")
    assert fake.find("DELETE", f"/1.0/images/{FP}")
    assert fake.find("DELETE", "/1.0/images/77aa00bb11cc")


def test_delete_reports_failures_per_image(fake: FakeLXD, cli) -> None:
    code, _, err = cli("image", "rm", "ghost", "other")
    assert code == 1
    assert err == "Error: ghost: not found\nError: other: not found\n"


def test_alias_commands(fake: FakeLXD, cli) -> None:
    fake.route("GET", "/1.0/images/3f2a9c81d0e4")(lambda req: sync(IMG))
    fake.route("POST", "/1.0/images/aliases")(lambda req: sync({}))
    fake.route("POST", "/1.0/images/aliases/busybox")(lambda req: sync({}))
    fake.route("DELETE", "/1.0/images/aliases/bb")(lambda req: sync({}))
    assert cli("image", "alias", "create", "box", "3f2a9c81d0e4", "--description", "d")[0] == 0
    assert fake.find("POST", "/1.0/images/aliases")[0].json() == {
        "name": "box", "target": FP, "description": "d"}
    assert cli("image", "alias", "rename", "busybox", "bb")[0] == 0
    assert fake.find("POST", "/1.0/images/aliases/busybox")[0].json() == {"name": "bb"}
    assert cli("image", "alias", "delete", "bb")[0] == 0
    _, out, _ = cli("image", "alias", "list", "--format", "csv")
    assert out == "busybox,3f2a9c81d0e4,the box\n"
    _, out, _ = cli("image", "alias", "ls")
    assert "| busybox | 3f2a9c81d0e4 | the box     |" in out
