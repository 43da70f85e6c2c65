# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ends a run that ansible-playbook left without its stats: at exit, and on SIGTERM or SIGHUP.

SIGTERM (ansible-playbook re-raises it with the default action) and SIGHUP (the terminal or SSH
session of the run closed) end the process without atexit: the hook ends the run first, then lets the
handler that was there do what it did. A signal ignored on purpose (nohup ignores SIGHUP) is left alone:
the run goes on, so it is no end of the run.
"""

from __future__ import annotations

import atexit
import os
import signal


def register_end_hook(end) -> None:
    """Call ``end()`` at exit and before SIGTERM/SIGHUP end the process; ``end`` must be safe to call twice."""
    atexit.register(end)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            signal.signal(signum, lambda number, frame, previous=previous: _on_fatal_signal(
                end, number, frame, previous))
        except (ValueError, OSError):  # not the main thread: atexit alone
            return


def _on_fatal_signal(end, signum, frame, previous):
    try:
        end()
    finally:
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
