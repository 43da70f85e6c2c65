# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Append-only JSON-lines progress file that dashboards can tail.

Each line is one sample (``_progress_sample``).

update() records the latest state and writes a line at most every ``interval`` seconds
(a change of stage, and the sample that completes a stage's bytes, are written at once). A
heartbeat thread repeats the latest state when the producer goes quiet, so readers see at least
one line per ``interval`` while work is under way and can tell a stall (rate decaying towards 0)
from a dead writer (no lines).
Each line goes out with a single write() on an O_APPEND descriptor, so a reader never
sees half a line from this writer.

The writer also starts the orphan watchdog (``_orphan_watch``) on ``<path>.alive``, so every module that
reports progress through the progress channel stops itself (SIGTERM) when its controller stops polling.
"""

from __future__ import annotations

import math
import os
import threading
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._orphan_watch import OrphanWatch, heartbeat_path
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_sample import DONE, encode_sample, make_sample


class ProgressWriter:
    """ProgressWriter(path).update(stage, done, total) ... .close()."""

    def __init__(self, path: str, interval: float = 0.5, smoothing_seconds: float = 3.0,
                 clock=time.time):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._interval = interval
        self._tau = smoothing_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = None  # (stage, done, total)
        self._last_write = 0.0
        self._rate = None
        self._rate_sample = None  # (ts, done) the rate was last updated from
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        self._heartbeat.start()
        self._orphan_watch = OrphanWatch(heartbeat_path(path)).start()

    def update(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            if self._fd is None:
                return
            new_stage = self._state is None or self._state[0] != stage
            # The sample that completes a stage's bytes is written at once too: the next stage would
            # otherwise replace it unseen, and a bar would jump from part-way to the next stage.
            completes = 0 < int(total) <= int(done) and (new_stage or self._state[1] < self._state[2])
            self._state = (stage, int(done), int(total))
            if new_stage or completes or self._clock() - self._last_write >= self._interval:
                self._write_locked()

    def close(self) -> None:
        """Stop the heartbeat and close the file (the caller writes its final stage first)."""
        self._stop.set()
        self._heartbeat.join()
        self._orphan_watch.stop()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _beat(self):
        while not self._stop.wait(self._interval / 2):
            with self._lock:
                if (self._fd is not None and self._state is not None
                        and self._clock() - self._last_write >= self._interval):
                    self._write_locked()

    def _smoothed_rate(self, now, done):
        if self._rate_sample is None or done < self._rate_sample[1]:
            self._rate_sample = (now, done)
            return self._rate
        then, before = self._rate_sample
        elapsed = now - then
        if elapsed <= 0:
            return self._rate
        instant = (done - before) / elapsed
        # Exponential smoothing weighted by elapsed time, so irregular updates average fairly.
        weight = 1.0 - math.exp(-elapsed / self._tau)
        self._rate = instant if self._rate is None else self._rate + weight * (instant - self._rate)
        self._rate_sample = (now, done)
        return self._rate

    def _write_locked(self):
        stage, done, total = self._state
        now = self._clock()
        if total <= 0:
            # A stage without a byte count (a boot being watched): no rate, and none carried into the next one.
            self._rate = self._rate_sample = None
            rate = eta = None
        else:
            rate = self._smoothed_rate(now, done)
            if stage == DONE:
                eta = 0.0
            elif rate and rate > 0 and total >= done:
                eta = round((total - done) / rate, 1)
            else:
                eta = None
        os.write(self._fd, encode_sample(make_sample(round(now, 3), stage, done, total,
                                                     int(rate) if rate is not None else 0, eta)))
        self._last_write = now
