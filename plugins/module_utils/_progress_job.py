# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of one long module run that reports progress, in one place.

``with ProgressJob(params["progress_file"]) as job:`` gives every long module the same rules:

- without a progress file (a plain run, check mode) every call is a no-op, so the module's code has no
  ``if progress:`` branches;
- inside the block SIGTERM raises ``Interrupted`` (the progress action stopping a cancelled run, or the
  orphan watchdog a run whose controller went away), so the module's own clean-up runs; SIGTERM's
  previous handler is back when the block ends, however it ends;
- the job's last sample is always a final one: ``done`` when the block ends normally (or by
  ``exit_json``), ``failed`` when it ends by an exception (``fail_json`` too), unless the module wrote
  its own with ``finish()``; readers can then tell a job that ended from one that died.

The SIGTERM handler is installed before the progress writer starts, because the writer's orphan watch
stops the module with SIGTERM.
"""

from __future__ import annotations

import signal

from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_sample import DONE, FAILED
from ansible_collections.v2kvm.migrate.plugins.module_utils._stop_signal import Interrupted, raise_on_sigterm

__all__ = ["Interrupted", "ProgressJob"]


class ProgressJob:
    """A module's progress reporting and SIGTERM handling from ``__enter__`` to ``__exit__``."""

    def __init__(self, path: str | None, *, stop_once: bool = False, writer_factory=ProgressWriter):
        self._path = path
        self._stop_once = stop_once
        self._writer_factory = writer_factory
        self._writer = None
        self._previous = None
        self._last = ("", 0, 0)
        self.finished = False

    @property
    def reporting(self) -> bool:
        """True when samples go to a progress file."""
        return self._writer is not None

    @property
    def stage(self) -> str:
        return self._last[0]

    def __enter__(self):
        self._previous = raise_on_sigterm(once=self._stop_once)
        try:
            self._writer = self._writer_factory(self._path) if self._path else None
        except BaseException:
            signal.signal(signal.SIGTERM, self._previous)
            raise
        return self

    def update(self, stage: str, done: int = 0, total: int = 0) -> None:
        self._last = (stage, int(done), int(total))
        if self._writer is not None and not self.finished:
            self._writer.update(stage, done, total)

    def bytes_of(self, stage: str, size: int):
        """A callback for qemu-img's progress fractions, reporting bytes of ``size`` (starts at 0 now)."""
        self.update(stage, 0, size)
        return lambda fraction: self.update(stage, int(fraction * size), size)

    def finish(self, ok: bool, done: int | None = None, total: int | None = None) -> None:
        """Write the final sample now (later updates are dropped); ``done``/``total`` default to the last
        sample's."""
        if self.finished:
            return
        _stage, last_done, last_total = self._last
        self.update(DONE if ok else FAILED, last_done if done is None else done,
                    last_total if total is None else total)
        self.finished = True

    def ignore_stop(self) -> None:
        """From now on SIGTERM is ignored until the block ends: for the last steps that must not be cut
        (a disk renamed into place gets its sidecar)."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, exc_type, exc, tb):
        try:
            self.finish(exc_type is None or _is_success_exit(exc))
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        finally:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def _is_success_exit(exc) -> bool:
    """``exit_json`` ends the module with SystemExit(0) from inside the block: that is success."""
    return isinstance(exc, SystemExit) and exc.code in (0, None)
