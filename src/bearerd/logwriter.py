"""The one writer every log line goes through: bounded, never blocking its caller.

A log reader that stops (``bearerd run … | head``, a stuck log shipper, a full pipe to journald)
must never freeze the daemon: with plain ``write()`` calls to stdout, the event loop blocked in
the write, stopped serving and never saw SIGTERM again. Here a caller only appends the line to a
bounded in-memory buffer; a thread of its own writes the buffer to the file descriptor. When the
buffer is full, new lines are dropped and counted (``bearerd_log_lines_dropped_total``), and
once the reader takes lines again one line says how many were lost.

Why a thread rather than a non-blocking stdout: ``O_NONBLOCK`` belongs to the open file
description, which a pipe or terminal shares with the parent shell and with every other
process writing to it — setting it would make *their* writes fail with ``EAGAIN`` (a shell left
with a non-blocking terminal breaks). A thread leaves the descriptor as it was, serves the MSAL
worker threads' lines the same way as the event loop's, and needs no running loop (start-up,
CLI commands). It writes with ``os.write`` on the raw descriptor, never through ``sys.stdout``,
so a write blocked at exit holds no lock the interpreter needs to shut down.

The thread is woken only when it sleeps with nothing to write, and once woken it lingers
``LINGER_S`` before taking the buffer: under load it writes hundreds of lines per system call and
the request path pays an append, not a thread switch per line (waking the thread for every access
line cost ~35 µs of CPU per request in ``bench/overhead.py``). A line is out within ``LINGER_S``.

Shutdown waits for the buffer at most ``EXIT_DRAIN_S``: a stalled reader costs the last lines,
never the exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Callable

# Lines waiting for a slow reader: about 14,000 access lines, several seconds of a busy daemon.
DEFAULT_BUFFER_BYTES = 4 << 20
# How long the process waits at exit for its last lines to be taken.
EXIT_DRAIN_S = 1.0
# How long the woken thread waits for more lines before writing what it has.
LINGER_S = 0.01


class LineWriter:
    """Lines to one file descriptor, written by a thread of its own from a bounded buffer."""

    def __init__(
        self,
        fd: int,
        max_bytes: int = DEFAULT_BUFFER_BYTES,
        notice: Callable[[int], str] | None = None,
    ) -> None:
        self._fd = fd
        self._max_bytes = max_bytes
        self.notice = notice  # the line saying how many were dropped, put before the first line after a gap
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # the writer thread waits here for lines
        self._written = threading.Condition(lock)  # drain() waits here for the buffer to empty
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._writing = False  # the thread holds a batch it has not finished writing
        self._asleep = False  # the thread waits for lines: the next one must wake it
        self._unreported = 0  # dropped since the last notice
        self.dropped = 0  # dropped since the start (the metric)
        self._broken = False  # the reader is gone for good (EPIPE, EBADF): drop everything, quietly
        self._thread = threading.Thread(target=self._run, name=f"log-writer-fd{fd}", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        """Queue ``text`` (whole lines) for writing, or drop it when the buffer is full. Never blocks."""
        data = text.encode("utf-8", "replace")
        with self._cond:
            if self._broken:
                return
            if self._pending_bytes + len(data) > self._max_bytes:
                self.dropped += 1
                self._unreported += 1
                return
            if self._unreported:
                # The first line after a gap: the notice goes exactly where the lines went missing.
                if self.notice is not None:
                    self._pending.append(self.notice(self._unreported).encode("utf-8", "replace"))
                self._unreported = 0
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._asleep:
                self._asleep = False
                self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._writing

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for everything queued to be written; whether it was."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._pending or self._writing) and not self._broken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._written.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._writing = False
                    self._written.notify_all()
                    while not self._pending:
                        self._asleep = True
                        self._cond.wait()
                    self._writing = True
            time.sleep(LINGER_S)  # let lines gather: one write for all of them
            with self._cond:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                self._writing = True
            if not self._write_all(b"".join(batch)):
                with self._cond:
                    self._broken = True
                    self._pending, self._pending_bytes, self._writing = [], 0, False
                    self._written.notify_all()
                return

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:  # pragma: no cover - os.write retries EINTR itself
                continue
            except BlockingIOError:
                # Someone made the descriptor non-blocking after all: wait for it instead of spinning.
                time.sleep(0.01)
                continue
            except OSError:
                return False
            view = view[written:]
        return True


_WRITERS: dict[int, LineWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer_for(fd: int, notice: Callable[[int], str] | None = None) -> LineWriter:
    """The process's one writer for ``fd`` (every stream on the same descriptor shares it, so
    lines keep their order)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(fd)
        if writer is None:
            writer = _WRITERS[fd] = LineWriter(fd, notice=notice)
        elif notice is not None:
            writer.notice = notice
        return writer


def dropped_lines() -> int:
    """Log lines dropped so far because a reader could not keep up (all descriptors)."""
    with _WRITERS_LOCK:
        return sum(w.dropped for w in _WRITERS.values())


@atexit.register
def _drain_at_exit() -> None:
    deadline = time.monotonic() + EXIT_DRAIN_S
    with _WRITERS_LOCK:
        writers = list(_WRITERS.values())
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.drain(max(0.0, deadline - time.monotonic()))


class LogStream:
    """A text stream over a ``LineWriter``, for structlog's and ``logging``'s handlers.

    ``flush()`` does nothing on purpose: the writer thread writes as soon as it can, and a caller
    must never wait for the reader.
    """

    def __init__(self, writer: LineWriter, tty: bool) -> None:
        self._writer = writer
        self._tty = tty

    def write(self, text: str) -> int:
        self._writer.write(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return self._tty
