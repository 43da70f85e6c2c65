# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JSON-lines event log: every event of the run, one per line, appended to a file.

Replaying the lines into a MigrationBoard rebuilds the board the run ended with (docs/dashboard.md).
"""

from __future__ import annotations

import json
import time

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink

# One encoder for every event: json.dumps() with non-default arguments builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
FLUSH_EVERY = 1.0  # seconds: the log is buffered, and flushed at least this often while events come


class EventLogSink(EventSink):
    def __init__(self, path: str, monotonic=time.monotonic):
        self._fh = open(path, "a", encoding="utf-8")
        self._monotonic = monotonic
        self._flushed = 0.0  # the first event is flushed at once: a reader sees the run start

    def event(self, event: dict) -> None:
        self._fh.write(_encode(event) + "\n")
        now = self._monotonic()
        if now - self._flushed >= FLUSH_EVERY:
            self._fh.flush()
            self._flushed = now

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    discard = close  # a log set up again starts a new file handle; what was written stays
