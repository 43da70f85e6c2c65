# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SIGTERM as an exception in a module's main thread.

The progress action (the run was stopped on the controller) and the orphan watchdog (the controller is
gone) stop a module with SIGTERM. Raised where the module waits (on qemu-img, a download, a migration
job, a console), the exception lets its own clean-up run: kill the child, remove or keep the partial
file, abort the job, stop the guest it started.
"""

from __future__ import annotations

import signal


class Interrupted(Exception):
    """The module was stopped by a signal (``signum``)."""

    def __init__(self, signum: int):
        super().__init__("interrupted by signal %d" % signum)
        self.signum = signum


def raise_on_sigterm(*, once: bool = False):
    """Make SIGTERM raise Interrupted in the main thread; returns the previous handler. With ``once``,
    later SIGTERMs are ignored, so the clean-up the first one starts runs to its end."""

    def handler(signum, frame):
        if once:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)

    return signal.signal(signal.SIGTERM, handler)
