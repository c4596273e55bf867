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
