"""The log writer: a stalled reader costs dropped lines (counted, said once), never a blocked caller.

A pipe stands in for stdout; nothing here sleeps: the writer thread is waited for with
``drain``'s deadline and the reader's ``read`` calls.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import pytest

from bearerd.logwriter import LineWriter


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def notice(count: int) -> str:
    return json.dumps({"event": "log.lines_dropped", "dropped": count}) + "\n"


def read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)
    return b"".join(chunks)


def test_a_stalled_reader_costs_counted_lines_and_the_gap_is_said_once(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    writer = LineWriter(write_end, max_bytes=64 * 1024, notice=notice)
    line = "x" * 1000 + "\n"
    for _ in range(1000):  # ~1 MB into a 64 KiB pipe and a 64 KiB buffer: this returns at once
        writer.write(line)
    assert writer.dropped > 800
    dropped = writer.dropped
    received = b""
    while not writer.idle():  # the reader is back: take everything the writer still has
        received += os.read(read_end, 1 << 16)
    received += read_available(read_end)
    assert received.count(line.encode()) == 1000 - dropped  # whole lines kept, none torn
    writer.write("after the gap\n")
    assert writer.drain(10)
    tail = read_available(read_end).decode()
    assert tail == notice(dropped) + "after the gap\n"  # said once, before the next line
    assert writer.dropped == dropped


def test_a_reader_gone_for_good_makes_writes_free(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    writer = LineWriter(write_end, max_bytes=1024)
    os.close(read_end)
    writer.write("into a closed pipe\n")
    assert writer.drain(10)  # EPIPE: the writer stops writing instead of failing every caller
    for _ in range(100):
        writer.write("still fine\n")
    assert writer.drain(10)


def test_drain_gives_up_at_its_deadline_when_the_reader_stalls(pipe: tuple[int, int]) -> None:
    _, write_end = pipe
    writer = LineWriter(write_end, max_bytes=1 << 20)
    for _ in range(200):
        writer.write("y" * 1000 + "\n")  # more than the pipe holds: the thread blocks in write()
    assert writer.drain(0.2) is False  # exit waits this long at most, never for the reader
