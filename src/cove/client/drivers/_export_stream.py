"""The REST drivers' image export, streamed: the answer is written into its
file(s) as it arrives (``_wire_publish.write_export``), never held whole.

Design note: the step flows of ``_rest_steps`` see whole responses, which an
image is too large to be; so ``RestDriver`` and ``AsyncRestDriver`` perform
``ExportImage`` here instead (one line of dispatch in each), and the flow in
``_rest_steps`` stays as the whole-answer form of the same step.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from cove.client import _wire_publish as wpub
from cove.client._http import Response, parse_envelope
from cove.client.drivers._steps_publish import ExportImage
from cove.model.errors import InternalError

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from cove.client._http import ConnectionFailed
    from cove.client._rest import Client

__all__ = ["export_async", "export_sync"]

_CHUNK = 1 << 20
_END = object()


class AioHost(Protocol):
    """What of ``AsyncRestDriver`` the async export uses."""

    def session(self) -> aiohttp.ClientSession: ...
    def url(self, path: str) -> URL: ...
    def _failed(self, e: Exception) -> ConnectionFailed: ...


def _refuse(status: int, headers: dict[str, str], body: bytes) -> None:
    parse_envelope(Response(status, headers, body))  # raises the server's error
    raise InternalError(f"image export: HTTP {status}")


def export_sync(client: Client, step: ExportImage) -> list[str]:
    req = wpub.export_image(step.fingerprint)
    with client.transport.stream(req.method, req.path) as resp:
        if resp.status != 200:
            _refuse(resp.status, resp.headers, resp.read())
        return wpub.write_export(resp, resp.headers, step.fingerprint, step.directory)


async def export_async(driver: AioHost, step: ExportImage) -> list[str]:
    """The files are written by a thread fed chunk by chunk from the loop
    (a bounded queue: the download waits for the disk, never piles up)."""
    import aiohttp

    req = wpub.export_image(step.fingerprint)
    chunks: queue.Queue[Any] = queue.Queue(maxsize=8)

    def feed() -> Iterator[bytes]:
        while (item := chunks.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        async with driver.session().get(driver.url(req.path),
                                        timeout=aiohttp.ClientTimeout(total=None)) as r:
            headers = {k.lower(): v for k, v in r.headers.items()}
            if r.status != 200:
                _refuse(r.status, headers, await r.read())
            writer = asyncio.ensure_future(asyncio.to_thread(
                wpub.write_export, feed(), headers, step.fingerprint, step.directory))
            try:
                async for chunk in r.content.iter_chunked(_CHUNK):
                    await asyncio.to_thread(chunks.put, chunk)
            except BaseException as e:
                await asyncio.to_thread(chunks.put, InternalError(f"image export: {e}"))
                await asyncio.gather(writer, return_exceptions=True)
                raise
            await asyncio.to_thread(chunks.put, _END)
            return await writer
    except (TimeoutError, aiohttp.ClientError) as e:
        raise driver._failed(e) from None
