"""Publish and image export on every driver, cove and a real LXD alike: the
published image launches with the instance's files, its export is LXD's
image file whose SHA-256 is the fingerprint; and an image published on cove
and exported imports into the real LXD and runs there."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from conftest import FEATURE_DRIVERS, Host, make_driver

from cove.model.errors import Conflict, CoveError, NotFound


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)  # see conftest
def test_publish_and_export(host: Host, tmp_path: Path) -> None:
    d = host.driver
    inst, child = host.name("pub"), host.name("pubc")
    alias = f"covetest-pubimg-{inst[-6:]}"
    made: list[str] = []
    try:
        d.create_container(inst, alias=host.image, autostart=False)
        d.start_container(inst)
        d.transport_for(inst).execute("echo pub > /root/covetest; rm -f /bin/true").check()
        # LXD publishes stopped instances only; killed, not halted: busybox's init
        # takes ~3 s to halt, and the files were written before
        d.stop_container(inst, force=True)
        img = d.publish(inst, aliases=[alias], properties={"covetest": "yes"})
        made.append(img.fingerprint)
        assert img.properties.get("covetest") == "yes"
        assert alias in [a.name for a in img.aliases]
        with pytest.raises((Conflict, CoveError)):
            d.publish(inst, aliases=[alias])  # the alias is taken: refused first
        d.create_container(child, alias=alias, autostart=False)
        d.start_container(child)
        t = d.transport_for(child)
        assert t.execute("cat /root/covetest; test -e /bin/true || echo gone").check().stdout \
            == b"pub\ngone\n"
        files = d.export_image(alias, tmp_path)
        assert len(files) == 1 and Path(files[0]).name.startswith(img.fingerprint)
        assert _sha256(files[0]) == img.fingerprint
        with pytest.raises(NotFound):
            d.publish(f"covetest-nope-{inst[-6:]}")
        with pytest.raises(NotFound):
            d.export_image("covetest-no-such-alias", tmp_path)
    finally:
        for n in (child, inst):
            with contextlib.suppress(CoveError):
                d.delete_container(n)
        with contextlib.suppress(CoveError):  # also when the publish failed half-way
            made.append(d.alias(alias).target)
        for fp in made:
            d.delete_image(fp)


def test_cove_export_imports_into_lxd(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lxd_host = request.getfixturevalue("lxd_host")
    if isinstance(lxd_host, str):
        pytest.skip(lxd_host)
    cove = make_driver("rest-coved", request.getfixturevalue("cove_host"), None)
    lxd = make_driver("rest-lxd", None, lxd_host)
    inst = "covetest-pubx-" + tmp_path.name[-6:].replace("_", "x").lower()
    alias = f"{inst}-img"
    fp = ""
    try:
        cove.create_container(inst, alias="covetest-busybox", autostart=False)
        cove.start_container(inst)
        cove.transport_for(inst).execute("echo from-cove > /root/covetest").check()
        img = cove.publish(inst)  # running: frozen for the copy
        fp = img.fingerprint
        (exported,) = cove.export_image(fp, tmp_path)
        got = lxd.import_image(exported, aliases=[alias])
        assert got.fingerprint == fp  # LXD hashes the file: the same bytes
        lxd.create_container(inst, alias=alias, autostart=False)
        lxd.start_container(inst)
        out = lxd.transport_for(inst).execute("cat /root/covetest").check().stdout
        assert out == b"from-cove\n"
    finally:
        for d in (lxd, cove):
            with contextlib.suppress(CoveError):
                d.delete_container(inst)
        with contextlib.suppress(CoveError):
            lxd.delete_image(fp)
        with contextlib.suppress(CoveError):
            cove.delete_image(fp)
        cove.close()
        lxd.close()


def test_async_publish_and_export(rest_endpoint: tuple[str, dict[str, object]],
                                  tmp_path: Path) -> None:
    import asyncio

    from lxdhost import IMAGE

    from cove.client.aio import AsyncRestDriver

    endpoint, options = rest_endpoint
    inst = f"covetest-apub-{tmp_path.name[-6:].replace('_', 'x').lower()}"

    async def main() -> None:
        async with AsyncRestDriver(endpoint, **options) as d:  # type: ignore[arg-type]
            fp = ""
            try:
                await d.create_container(inst, alias=IMAGE, autostart=False)
                img = await d.publish(inst, properties={"covetest": "async"})
                fp = img.fingerprint
                assert img.properties.get("covetest") == "async"
                (path,) = await d.export_image(fp, tmp_path)
                assert _sha256(path) == fp
            finally:
                with contextlib.suppress(CoveError):
                    await d.delete_container(inst)
                if fp:
                    await d.delete_image(fp)

    asyncio.run(main())
