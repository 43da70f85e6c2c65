# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A background heartbeat that may write to the terminal between Ansible's events, never during a fork.

Ansible forks its workers from the controller process. A thread caught writing at that moment leaves
the child with the stream's (and Rich's) locks held for ever, and the worker hangs the first time it
writes. So every beat runs while holding FORK_GUARD, and os.register_at_fork makes each fork of this
process take FORK_GUARD first: a fork waits for a beat in progress (a frame costs milliseconds), and
no beat starts until the fork is done.
"""

from __future__ import annotations

import os
import threading

FORK_GUARD = threading.Lock()


def _release_guard():
    FORK_GUARD.release()


# In the child the guard is a copy held by the forking thread; releasing it there is what unlocks it.
os.register_at_fork(before=FORK_GUARD.acquire, after_in_parent=_release_guard, after_in_child=_release_guard)


class Heartbeat(threading.Thread):
    """Calls ``beat()`` every ``period`` seconds, under FORK_GUARD, until stopped.

    ``beat`` must not fork (it would wait for itself). An exception ends the heartbeat quietly:
    the view then falls back to drawing from events alone.
    """

    def __init__(self, beat, period: float):
        super().__init__(name="v2kvm-dashboard-heartbeat", daemon=True)
        self._beat = beat
        self._period = max(0.05, float(period))
        self._stopping = threading.Event()
        self.beats = 0

    def run(self):
        while not self._stopping.wait(self._period):
            with FORK_GUARD:
                if self._stopping.is_set():
                    return
                try:
                    self._beat()
                except Exception:  # a broken frame must not take the run down with it
                    return
                self.beats += 1

    def stop(self):
        """Stop and wait for a beat in progress; call it without holding any lock the beat takes."""
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(5)
