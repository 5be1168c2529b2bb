"""Keras callbacks of the full phase: its plan and, off a terminal, timed progress lines."""

import time

import keras

from . import progress as progress_module
from .progress import format_seconds, on_terminal


class FitProgress(keras.callbacks.Callback):
    """The plan of a long ``fit`` and, off a terminal, a line every ``interval`` seconds.

    After ``plan_after`` batches (the first batch also traces the graph, so it is not
    timed) it prints "<name>: 433 images x 10 epochs, ~11 min at 6.8 img/s".
    """

    def __init__(
        self,
        name,
        images_per_epoch,
        batch_size,
        epochs,
        *,
        interval=None,
        plan_after=3,
        log_lines=None,
        clock=time.monotonic,
    ):
        super().__init__()
        self.name, self.images, self.batch_size = name, images_per_epoch, batch_size
        self.epochs, self.plan_after = epochs, plan_after
        self.interval = progress_module.LOG_INTERVAL_S if interval is None else interval
        self.log_lines = (not on_terminal()) if log_lines is None else log_lines
        self.clock = clock
        self.planned = False
        self.steps = -(-images_per_epoch // batch_size)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_started = epoch, self.clock()
        self.last_line, self.timed_from = self.epoch_started, None

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if batch == 0:
            self.timed_from = now  # batch 0 includes tracing; rates count from its end
            return
        timed_batches = batch
        rate = timed_batches * self.batch_size / max(now - self.timed_from, 1e-9)
        if not self.planned and timed_batches >= self.plan_after:
            self.planned = True
            left_epochs = self.epochs - self.epoch
            total = left_epochs * self.images / rate
            print(
                f"{self.name}: {self.images} images x {left_epochs} epochs"
                f"{'' if left_epochs == self.epochs else ' left'}, "
                f"~{format_seconds(total)} at {rate:.1f} img/s (plus validation)",
                flush=True,
            )
        if self.log_lines and now - self.last_line >= self.interval:
            self.last_line = now
            done = batch + 1
            eta = (self.steps - done) * self.batch_size / rate
            print(
                f"{self.name} epoch {self.epoch + 1}/{self.epochs}: batch {done}/{self.steps}, "
                f"{rate:.1f} img/s, epoch ETA {format_seconds(eta)}",
                flush=True,
            )
