"""Progress that is never silent: a tqdm bar on a terminal, timed lines everywhere else.

tqdm disables itself when stdout is not a terminal (a log file, ``nohup``, a notebook's
``!python train.py``), which left minutes of feature extraction or a 60 s training epoch
without a word. Off a terminal we print a line at least every ``interval`` seconds with
the count, the rate and the time left.
"""

import sys
import time

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # off a terminal: the longest silence, in seconds


def say(text):
    """A status line on stderr (stdout may be a result: predict --json)."""
    print(text, file=sys.stderr, flush=True)


def on_terminal():
    return sys.stdout.isatty()


def format_seconds(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """The off-terminal stand-in for a tqdm bar: ``update(n)`` and ``close()``."""

    def __init__(self, total, desc, unit="img", interval=LOG_INTERVAL_S, clock=time.monotonic):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.clock = clock
        self.count = 0
        self.started = self.last_line = clock()

    def update(self, n=1):
        self.count += n
        now = self.clock()
        if now - self.last_line >= self.interval:
            self._line(now)

    def close(self):
        self._line(self.clock(), done=True)

    def _line(self, now, done=False):
        self.last_line = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.desc}: {self.count}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s"
        if done:
            text += f", done in {format_seconds(elapsed)}"
        elif rate > 0:
            text += f", ETA {format_seconds((self.total - self.count) / rate)}"
        print(text, flush=True)


def progress(total, desc, unit="img", interval=None):
    """A progress reporter with ``update(n)`` and ``close()`` (see module docstring)."""
    if on_terminal():
        return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)
    return LogProgress(total, desc, unit, LOG_INTERVAL_S if interval is None else interval)
