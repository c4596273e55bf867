"""The SQLite store: rows, uniqueness, aliases, concurrency from threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cove.model.errors import Conflict, NotFound
from cove.model.records import Alias, Image, Instance
from cove.model.states import Status
from cove.store import Store


def _img(fp: str = "ab" * 32) -> Image:
    return Image(fingerprint=fp, size=10, properties={"os": "busybox"}, created_at=1,
                 uploaded_at=2, cmd=["/sbin/init"])


def test_instance_roundtrip_and_conflict(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    inst = s.add_instance(Instance(name="web", image="f", config={"a": "b"}, created_at=1.0))
    assert inst.id > 0
    got = s.get_instance("web")
    assert got.config == {"a": "b"} and got.status is Status.STOPPED
    with pytest.raises(Conflict):
        s.add_instance(Instance(name="web", image="f"))
    got.status = Status.RUNNING
    got.last_exit_code = 3
    s.update_instance(got)
    assert s.get_instance("web").last_exit_code == 3
    s.rename_instance("web", "web2")
    with pytest.raises(NotFound):
        s.get_instance("web")
    s.delete_instance("web2")
    assert s.list_instances() == []


def test_images_aliases_and_prefix(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_image(_img())
    s.add_image(_img("ac" * 32))
    s.add_alias(Alias("bb", "ab" * 32))
    with pytest.raises(Conflict):
        s.add_alias(Alias("bb", "ac" * 32))
    assert [i.fingerprint for i in s.find_images("ab")] == ["ab" * 32]
    assert len(s.find_images("a")) == 2
    assert s.find_images("a%") == [] and s.find_images("_") == []
    assert s.find_images("ab")[0].aliases == [Alias("bb", "ab" * 32, "")]
    s.delete_image("ab" * 32)
    with pytest.raises(NotFound):
        s.get_alias("bb")


def test_threads_share_one_file(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")

    def add(i: int) -> None:
        s.add_instance(Instance(name=f"c{i}", image="f"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s.list_instances()) == 20
    assert (tmp_path / "db-wal").exists()
