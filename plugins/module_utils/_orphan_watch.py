# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module side of the orphan watchdog: a job whose controller stopped polling stops itself.

The progress action (plugins/plugin_utils/_progress_action.py) rewrites ``<progress file>.alive`` at
every poll; the file holds the allowed silence in seconds. A daemon thread here looks at it: once the
file has changed while this module runs (so a leftover of an earlier run never counts) and then stays
unchanged for longer than the allowed silence, the controller is gone (SIGKILL, evicted pod, closed
laptop, a lost network that outlasted the poll loop's retries) and the module sends SIGTERM to its own
main thread. Each module's SIGTERM handling then does what a Ctrl-C on the controller would have done
(disk_convert removes its ``.part``, kvm_migrate aborts the migration, vsphere_export keeps its resumable
``.part``). No heartbeat file, no watchdog: a module run by hand or the plain way is never stopped.

Changes are judged on this host's monotonic clock, not by comparing the file's mtime with the wall
clock, so a clock step on the target neither fires the watchdog nor hides an orphan.

Plain Python, free of Ansible imports.
"""

from __future__ import annotations

import os
import signal
import threading
import time

SUFFIX = ".alive"


def heartbeat_path(progress_file: str) -> str:
    return progress_file + SUFFIX


def _read_silence(path: str) -> float | None:
    try:
        with open(path) as fh:
            text = fh.read(64).strip()
    except OSError:
        return None
    try:
        value = float(text)
    except ValueError:
        return None  # being rewritten this instant, or not ours: keep the silence seen before
    return value if value > 0 else None


def _signature(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _terminate_self():
    # Aimed at the main thread: Python runs signal handlers there, and a main thread blocked in a
    # system call (a read from qemu-img, a lock wait) is woken with EINTR instead of waiting for it.
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)


class OrphanWatch:
    """OrphanWatch(heartbeat).start() ... .stop(); ``fired`` tells whether it sent SIGTERM."""

    def __init__(self, heartbeat: str, clock=time.monotonic, on_orphan=_terminate_self, period: float = 0.5):
        self.heartbeat = heartbeat
        self.fired = False
        self._clock = clock
        self._on_orphan = on_orphan
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orphan-watch", daemon=True)

    def start(self) -> OrphanWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self):
        seen = _signature(self.heartbeat)
        changed_at = None  # monotonic time of the last change seen; None until the first one
        silence = None
        while not self._stop.wait(self._period):
            now = self._clock()
            current = _signature(self.heartbeat)
            if current is not None and current != seen:
                changed_at = now
                silence = _read_silence(self.heartbeat) or silence
            seen = current
            # A heartbeat removed after it beat counts as silence too: the controller removes it only
            # when it stops the job, and a stop whose kill missed the module still ends it here.
            if changed_at is not None and silence is not None and now - changed_at > silence:
                self.fired = True
                try:
                    os.unlink(self.heartbeat)  # nobody polls any more to remove it
                except OSError:
                    pass
                self._on_orphan()
                return
