"""The asyncio driver against coved and LXD: the same flows, awaited."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from lxdhost import IMAGE

from cove.client import CommandNotFound
from cove.client.aio import AsyncRestDriver
from cove.model.errors import NotFound, Timeout


def test_async_driver(rest_endpoint: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    endpoint, options = rest_endpoint
    names = [f"covetest-aio-{secrets.token_hex(3)}" for _ in range(3)]

    async def main() -> None:
        async with AsyncRestDriver(endpoint, **options) as d:
            try:
                # Three at once: the event loop is never blocked by one.
                await asyncio.gather(*(d.create_container(n, alias=IMAGE) for n in names))
                assert [await d.container_status(n) for n in names] == ["running"] * 3
                t = d.transport_for(names[0])
                r = await t.execute(["sh", "-c", "cat; echo err >&2; exit 4"], stdin=b"in")
                assert (r.exit_code, r.stdout, r.stderr) == (4, b"in", b"err\n")
                with pytest.raises(CommandNotFound):
                    await t.execute(["no-such-program"])
                with pytest.raises(Timeout):
                    await t.execute(["sleep", "20"], timeout=1)
                app = await t.user("app")
                assert (await app.execute("id -u; pwd")).stdout == b"1000\n/home/app\n"
                await t.write_file("/tmp/a", "async", mode=0o600)
                assert await t.read_file("/tmp/a") == b"async"
                src = tmp_path / "tree"
                (src / "d").mkdir(parents=True)
                (src / "d" / "f").write_text("f")
                os.symlink("d/f", src / "l")
                await t.upload_folder(src, "/srv")
                await t.download_folder("/srv/tree", tmp_path / "out")
                assert (tmp_path / "out" / "tree" / "d" / "f").read_text() == "f"
                assert os.path.islink(tmp_path / "out" / "tree" / "l")
                await asyncio.gather(*(d.stop_container(n, force=True) for n in names))
            finally:
                await asyncio.gather(*(d.delete_container(n) for n in names))
            with pytest.raises(NotFound):
                await d.container(names[0])

    asyncio.run(main())


def test_async_resources(rest_endpoint: tuple[str, dict[str, Any]], busybox_tar: Path,
                         tmp_path: Path) -> None:
    """The other resources through the asyncio driver: the same flows as the
    sync drivers (test_resources.py), so a sample of each, with the upload
    and the event stream, which are the asyncio driver's own I/O."""
    from test_resources import _free_subnet, _regzipped

    from cove import api
    from cove.host.certs import generate_certificate
    from cove.model import trust

    endpoint, options = rest_endpoint
    tag = secrets.token_hex(3)
    name, net = f"covetest-aio-{tag}", f"covetest{tag}"
    variant = _regzipped(busybox_tar, tmp_path / "variant.tar.gz")
    pem = generate_certificate(tmp_path / "c.crt", tmp_path / "c.key", server=False,
                               common_name=f"covetest-{tag}")
    cert_fp = trust.fingerprint(trust.cert_der(pem))

    async def main() -> None:
        async with AsyncRestDriver(endpoint, **options) as d:
            fp2 = ""
            try:
                seen: list[str] = []
                img = await d.import_image(variant, aliases=[f"covetest-v-{tag}"],
                                           progress=lambda p: seen.append(p.stage))
                fp2 = img.fingerprint
                assert isinstance(img, api.Image) and "upload" in seen
                assert (await d.alias(f"covetest-v-{tag}")).target == fp2
                assert fp2 in [i.fingerprint for i in await d.images()]

                gw = f"{_free_subnet().network_address + 1}"
                made = await d.create_network(net, config={
                    "ipv4.address": f"{gw}/24", "ipv4.nat": "false", "ipv6.address": "none"})
                assert made.name == net
                state = await d.network_state(net)
                assert gw in [a.get("address") for a in state.addresses]

                cert = await d.add_certificate(pem, name=f"covetest-{tag}")
                assert cert.fingerprint == cert_fp
                assert (await d.certificate(cert_fp[:12])).name == f"covetest-{tag}"

                async with d.events(("lifecycle",)) as stream:
                    await d.create_container(name, alias=IMAGE)
                    actions: set[str] = set()
                    while "instance-started" not in actions:
                        event = await stream.get(timeout=30)
                        assert isinstance(event, api.Event)
                        if str(event.metadata.get("source", "")).split("?")[0] == \
                                f"/1.0/instances/{name}":
                            actions.add(str(event.metadata.get("action")))
                assert await stream.get(timeout=1) is None
                assert name in [c.name for c in await d.containers()]
                ops = await d.operations()
                assert all(isinstance(o, api.Operation) for o in ops)
            finally:
                await d.delete_container(name)
                await d.delete_certificate(cert_fp)
                await d.delete_network(net)
                if fp2:
                    await d.delete_image(fp2)
                await d.delete_alias(f"covetest-v-{tag}")
            with pytest.raises(NotFound):
                await d.network(net)

    asyncio.run(main())
