"""Whole lines to stdout, knowing exactly how many reached it: what `streamhouse consume`
commits is what this module reports written, so a Ctrl-C or a closed pipe never commits a
record the reader did not get, and never leaves half a line behind.

Ctrl-C while consuming asks for a stop (`StopFlag`): the line being written is finished, the
loop ends, the group commits what was printed. A second Ctrl-C stops at once (KeyboardInterrupt),
for a reader that stopped reading; then the line being written may be cut.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import numpy as np


class StopFlag:
    """Set by the first Ctrl-C; the consume loop checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


@contextmanager
def sigint_stops() -> Iterator[StopFlag]:
    """Within the block, the first SIGINT sets the flag instead of raising."""
    stop = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers live on the main thread; elsewhere Ctrl-C is not ours
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class LineWriter:
    """Writes groups of lines to stdout with os.write, counting the whole ones written."""

    def __init__(self) -> None:
        self.closed = False  # the reader went away (EPIPE) or a second Ctrl-C: write no more
        self.forced = False  # that second Ctrl-C: the line under way may be cut
        self.written = 0  # lines written whole so far
        self._fd: int | None
        try:
            sys.stdout.flush()
            self._fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            # A replaced stdout without a descriptor (tests, embedding): its own writes.
            self._fd = None

    def write(self, lines: Sequence[bytes], stop: StopFlag) -> int:
        """Writes `lines` (each ending in a newline) and returns how many were written
        whole. Stops early at a line boundary once `stop` is set, or when the pipe closes."""
        if not lines or self.closed:
            return 0
        if self._fd is None:
            return self._write_stream(lines)
        data = memoryview(b"".join(lines))
        ends = np.cumsum([len(line) for line in lines])
        pos = 0
        while pos < len(data):
            target = len(data)
            if stop:
                # Finish the line under way, if any, and no more.
                done = int(np.searchsorted(ends, pos, side="right"))
                if done and int(ends[done - 1]) == pos:
                    break
                target = int(ends[done])
            try:
                pos += os.write(self._fd, data[pos:target])
            except BrokenPipeError:
                self.closed = True
                silence_stdout()
                break
            except KeyboardInterrupt:
                # Caught here, not above, so the lines already written still count.
                self.closed = self.forced = True
                break
        done = int(np.searchsorted(ends, pos, side="right"))
        self.written += done
        return done

    def _write_stream(self, lines: Sequence[bytes]) -> int:
        data = b"".join(lines)
        buffer = getattr(sys.stdout, "buffer", None)
        try:
            if buffer is None:
                sys.stdout.write(data.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            else:
                buffer.write(data)
                buffer.flush()
        except BrokenPipeError:
            self.closed = True
            silence_stdout()
            return 0
        self.written += len(lines)
        return len(lines)


def silence_stdout() -> None:
    """After the reader went away (`| head`), point stdout at /dev/null so the interpreter's
    final flush does not print a BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
