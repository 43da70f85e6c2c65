# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU, memory and thread count of one process, read from /proc: two small file reads per
sample and no third-party library, so sampling the Ansible controller once a second costs
microseconds. Elsewhere than Linux the sample is empty and the page shows "-"."""

from __future__ import annotations

import os
import time

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessSampler:
    def __init__(self, pid: int | None = None, clock=time.monotonic):
        self.pid = pid or os.getpid()
        self._clock = clock
        self._last: tuple[float, float] | None = None

    def cpu_seconds(self) -> float | None:
        try:
            with open("/proc/%d/stat" % self.pid, "rb") as fh:
                # Fields after the command name, which may itself hold spaces and parentheses.
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def sample(self) -> dict:
        """{cpu_percent (of one core, since the previous sample), rss, mem_total, mem_percent, threads}."""
        data: dict = {"cpu_percent": None, "rss": None, "mem_total": None, "mem_percent": None, "threads": None}
        cpu = self.cpu_seconds()
        now = self._clock()
        if cpu is not None:
            if self._last is not None and now > self._last[0]:
                data["cpu_percent"] = round(100.0 * (cpu - self._last[1]) / (now - self._last[0]), 1)
            self._last = (now, cpu)
        try:
            with open("/proc/%d/status" % self.pid, "rb") as fh:
                for line in fh:
                    if line.startswith(b"VmRSS:"):
                        data["rss"] = int(line.split()[1]) * 1024
                    elif line.startswith(b"Threads:"):
                        data["threads"] = int(line.split()[1])
            with open("/proc/meminfo", "rb") as fh:
                data["mem_total"] = int(fh.readline().split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            return data
        if data["rss"] is not None and data["mem_total"]:
            data["mem_percent"] = round(100.0 * data["rss"] / data["mem_total"], 2)
        return data
