"""The archive endpoint's body is read to its end: `StreamReader.read(n)` alone returns
whatever has arrived, and CI once parsed half an archive ("unexpected end of data")."""

from __future__ import annotations

import asyncio
import unittest.mock

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from supervisor.engine import _read_up_to

pytestmark = pytest.mark.anyio


def _arriving(*chunks: bytes) -> aiohttp.StreamReader:
    """The first chunk there now, each later one a loop pass later, then the end."""
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(unittest.mock.Mock(spec=asyncio.Transport))  # "connected"
    stream = aiohttp.StreamReader(protocol, 2**16, loop=loop)
    stream.feed_data(chunks[0])

    def rest(index: int) -> None:
        if index < len(chunks):
            stream.feed_data(chunks[index])
            loop.call_soon(rest, index + 1)
        else:
            stream.feed_eof()

    loop.call_soon(rest, 1)
    return stream


async def test_a_body_that_arrives_in_pieces_is_read_whole() -> None:
    pieces = (b"a" * 700, b"b" * 300, b"c" * 24)
    assert await _arriving(*pieces).read(2048) == pieces[0]  # what read(n) alone gives
    assert await _read_up_to(_arriving(*pieces), 2048) == b"".join(pieces)


async def test_a_body_past_the_cap_stops_one_byte_after_it() -> None:
    got = await _read_up_to(_arriving(b"x" * 600, b"y" * 600), 1000)
    assert got == b"x" * 600 + b"y" * 401
