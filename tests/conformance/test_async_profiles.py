"""Profiles through the asyncio driver, against coved and LXD: the same flows
as the sync drivers (test_profiles.py), awaited."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import pytest

from cove import api
from cove.client.aio import AsyncRestDriver
from cove.model.errors import CoveError, NotFound


def test_async_profiles(rest_endpoint: tuple[str, dict[str, Any]]) -> None:
    endpoint, options = rest_endpoint
    name = f"covetest-aio-{secrets.token_hex(3)}"

    async def main() -> None:
        async with AsyncRestDriver(endpoint, **options) as d:
            try:
                made = await d.create_profile(name, config={"user.a": "1"},
                                              devices={"hide": {"type": "none"}})
                assert isinstance(made, api.Profile) and made.config == {"user.a": "1"}
                assert name in [p.name for p in await d.profiles()]
                await d.update_profile(name, config={"user.a": None, "user.b": "2"},
                                       devices={"hide": None}, description="async")
                got = await d.profile(name)
                assert (got.config, got.devices, got.description) == ({"user.b": "2"}, {},
                                                                       "async")
                await d.rename_profile(name, name + "-r")
                await d.rename_profile(name, name + "-r")  # done already: nothing
                await d.delete_profile(name + "-r")
                await d.delete_profile(name + "-r")  # gone already: nothing
                with pytest.raises(NotFound):
                    await d.profile(name + "-r")
            finally:
                for n in (name, name + "-r"):
                    with contextlib.suppress(CoveError):
                        await d.delete_profile(n)

    asyncio.run(main())
