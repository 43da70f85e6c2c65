# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU, memory and thread count of one process, read with psutil (Linux, macOS, BSD alike).

Without psutil every field of the sample is None (the page shows "-"); the web callback and the
server name the library to install (``missing_library``). Also where the web modules say which
library is missing, in the style of Ansible's ``missing_required_lib``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback

try:
    import psutil
    HAS_PSUTIL = True
    PSUTIL_IMPORT_ERROR = None
except ImportError:
    HAS_PSUTIL = False
    PSUTIL_IMPORT_ERROR = traceback.format_exc()

FIELDS = ("cpu_percent", "rss", "mem_total", "mem_percent", "threads")
# (import name, pip name, what the web dashboard uses it for): the server needs all of them.
SERVER_LIBRARIES = (
    ("aiohttp", "aiohttp", "the web server, its API and WebSocket"),
    ("prometheus_client", "prometheus-client", "the Prometheus /metrics text"),
    ("psutil", "psutil", "CPU and memory of the controller and of the server"),
)


def missing_library(pip_name: str, purpose: str) -> str:
    """The message for a library that cannot be imported, in the style of Ansible's ``missing_required_lib``:
    which library, for what, on which Python, and how to install it."""
    return ("Failed to import the required Python library (%s) on the controller's Python %s: the web dashboard "
            "needs it for %s. Install it there (pip install %s, or pip install -r requirements.txt of "
            "v2kvm.migrate); if it is installed, Ansible runs another Python than the one it is installed for."
            % (pip_name, sys.executable, purpose, pip_name))


def missing_server_libraries() -> list[str]:
    """One message per library the web server needs that this Python cannot import (found without importing)."""
    return [missing_library(pip_name, purpose) for name, pip_name, purpose in SERVER_LIBRARIES
            if importlib.util.find_spec(name) is None]


class ProcessSampler:
    def __init__(self, pid: int | None = None, clock=time.monotonic):
        self.pid = pid or os.getpid()
        self._clock = clock
        self._last: tuple[float, float] | None = None
        self._process = None

    def _proc(self):
        if self._process is None:
            self._process = psutil.Process(self.pid)
        return self._process

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of the process, None when it cannot be read."""
        if not HAS_PSUTIL:
            return None
        try:
            times = self._proc().cpu_times()
        except (psutil.Error, OSError):
            return None
        return times.user + times.system

    def sample(self) -> dict:
        """{cpu_percent (of one core, since the previous sample), rss, mem_total, mem_percent, threads}."""
        data: dict = dict.fromkeys(FIELDS)
        if not HAS_PSUTIL:
            return data
        try:
            process = self._proc()
            with process.oneshot():
                times = process.cpu_times()
                data["rss"] = process.memory_info().rss
                data["threads"] = process.num_threads()
            data["mem_total"] = psutil.virtual_memory().total
        except (psutil.Error, OSError):
            return dict.fromkeys(FIELDS)
        # Our own delta rather than psutil's cpu_percent(): the first sample has none (None, not 0.0),
        # and the clock is the one the caller gives.
        cpu, now = times.user + times.system, self._clock()
        if self._last is not None and now > self._last[0]:
            data["cpu_percent"] = round(100.0 * (cpu - self._last[1]) / (now - self._last[0]), 1)
        self._last = (now, cpu)
        if data["mem_total"]:
            data["mem_percent"] = round(100.0 * data["rss"] / data["mem_total"], 2)
        return data
