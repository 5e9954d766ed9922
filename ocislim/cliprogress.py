"""The command line's :class:`~ocislim.progress.Progress`: stage lines, a bar or periodic lines.

:class:`StreamProgress` writes only to the text stream it is given (``cli.py``
passes ``sys.stderr``, so ``--json`` output on stdout stays clean):

- every stage and note is one line, ``ocislim: STAGE: DETAIL``;
- on a terminal, counts are a bar redrawn in place (``\\r`` and erase-to-end),
  at most about 5 times a second, plus at each tenth of the way, and erased when
  the count is complete or a line follows;
- otherwise (a pipe, a file, ``TERM=dumb``) they are plain lines with no control
  characters: one every 10 s of a count, and for byte counts of at least
  :data:`STEP_MIN_BYTES` one at each tenth of the way, so short work adds none;
- ``quiet`` writes nothing at all.

Byte counts show percent, bytes done and total, rate and time left once the
rate is known.  Time comes from ``clock`` (monotonic seconds), so tests can
drive it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ocislim.humanize import human_size
from ocislim.progress import BYTES, ITEMS

REDRAW_SECONDS = 0.2
"""Least time between two redraws of the bar (besides tenths and completion)."""

LINE_SECONDS = 10.0
"""Time between two periodic lines when the stream is not a terminal."""

STEP_MIN_BYTES = 16 << 20
"""Byte counts below this total get no per-tenth lines off a terminal (they are quick)."""

RATE_AFTER_SECONDS = 0.5
"""A rate (and time left) is shown once a count has run this long."""

BAR_WIDTH = 24


@dataclass
class _Count:
    """What one ``what`` has shown so far."""

    what: str
    started: float
    first: int
    last_draw: float
    last_line: float
    step: int


class StreamProgress:
    """A :class:`~ocislim.progress.Progress` writing to ``stream`` (see the module doc).

    ``tty=None`` decides from ``stream.isatty()`` and ``TERM``; ``width=None``
    asks the terminal (80 columns when it cannot say).  Safe to call from
    several threads.
    """

    def __init__(
        self,
        stream: TextIO,
        quiet: bool = False,
        *,
        tty: bool | None = None,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self._stream = stream
        self._tty = _is_terminal(stream) if tty is None else tty
        self._width = width
        self._clock = clock
        self._lock = threading.Lock()
        self._count: _Count | None = None
        self._drawn = False

    def stage(self, name: str, detail: str = "") -> None:
        if self.quiet:
            return
        with self._lock:
            self._count = None
            self._line(f"ocislim: {name}{': ' + detail if detail else ''}")

    def note(self, message: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._line(f"ocislim: note: {message}")
            if self._count is not None:
                self._count.last_draw = float("-inf")  # the bar comes back at the next count

    def advance(self, what: str, done: int, total: int | None = None, unit: str = ITEMS) -> None:
        if self.quiet:
            return
        with self._lock:
            now = self._clock()
            count = self._count
            fresh = count is None or count.what != what or done < count.first
            if count is None or fresh:
                count = self._count = _Count(what, now, done, float("-inf"), now, -1)
            step = done * 10 // total if total else -1
            crossed = step > count.step
            count.step = max(step, count.step)
            complete = total is not None and done >= total
            text = _render(count, done, total, unit, now)
            if self._tty:
                if complete:
                    self._erase()
                elif fresh or crossed or now - count.last_draw >= REDRAW_SECONDS:
                    count.last_draw = now
                    self._draw(text)
                return
            big = unit == BYTES and total is not None and total >= STEP_MIN_BYTES
            if (crossed and big and not fresh) or now - count.last_line >= LINE_SECONDS:
                count.last_line = now
                self._stream.write(f"ocislim:   {text}\n")
                self._stream.flush()

    def _line(self, text: str) -> None:
        self._erase()
        self._stream.write(text + "\n")
        self._stream.flush()

    def _draw(self, text: str) -> None:
        limit = max(self._columns() - 1, 10)  # never wrap: a wrapped line cannot be redrawn
        self._stream.write(f"\r  {text}"[: limit + 1] + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    def _columns(self) -> int:
        if self._width is not None:
            return self._width
        try:
            return os.get_terminal_size(self._stream.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            return 80


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (OSError, ValueError, AttributeError):
        return False


def _render(count: _Count, done: int, total: int | None, unit: str, now: float) -> str:
    """``what: ...`` for one count: a bar and rate for bytes, ``done/total`` for items."""
    if unit != BYTES:
        return f"{count.what}: {done}/{total}" if total else f"{count.what}: {done}"
    if not total:
        return f"{count.what}: {human_size(done)}"
    fraction = min(done / total, 1.0)
    filled = int(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [
        f"{count.what}: [{bar}] {fraction * 100:3.0f}%",
        f"{human_size(done)} of {human_size(total)}",
    ]
    elapsed = now - count.started
    if elapsed >= RATE_AFTER_SECONDS and done > count.first:
        rate = (done - count.first) / elapsed
        parts.append(f"{human_size(rate)}/s")
        parts.append(f"{_clock_time((total - done) / rate)} left")
    return ", ".join(parts)


def _clock_time(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
