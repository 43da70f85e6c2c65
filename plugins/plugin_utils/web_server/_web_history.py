# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run history of the web dashboard in SQLite (WAL): every event of every run, so a restarted
server replays recent runs into the same boards, and a job's detail view reads its events back.

Plain Python (sqlite3 only). One connection, used from the server's event-loop thread only.
"""

from __future__ import annotations

import json
import os
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', label TEXT NOT NULL DEFAULT '',
    started REAL, finished REAL, updated REAL, events INTEGER NOT NULL DEFAULT 0, summary TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL, type TEXT, host TEXT, body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS events_by_host ON events (run_id, host, seq);
"""


def _loads(text: str):
    """Stored JSON; NaN/Infinity that an older server stored read as null, so no answer carries them."""
    return json.loads(text, parse_constant=lambda _name: None)


class History:
    """``path=':memory:'`` keeps history for the life of the process only (tests, ``--no-history``)."""

    def __init__(self, path: str, keep_runs: int = 200):
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        self.path = path
        self.keep_runs = keep_runs
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        if path != ":memory:":
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError("history database %s cannot use WAL journaling (got %s): put it on a local "
                                   "file system" % (path, mode))
        # WAL + NORMAL: a crash may lose the last transaction, never corrupts the file.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def journal_mode(self) -> str:
        return self.db.execute("PRAGMA journal_mode").fetchone()[0]

    def add_events(self, run_id: str, name: str, label: str, first_seq: int, events: list,
                   updated: float | None = None) -> None:
        """``updated``: the server's clock (the events' own ``ts`` come from the run and may be anything)."""
        rows = [(run_id, first_seq + i, e.get("ts"), e.get("type"), e.get("host"),
                 json.dumps(e, default=str, separators=(",", ":"))) for i, e in enumerate(events)]
        started = next((e.get("ts") for e in events if e.get("type") == "run_start"), None)
        finished = next((e.get("ts") for e in events if e.get("type") == "run_end"), None)
        last = updated if updated is not None else (events[-1].get("ts") if events else None)
        new = self.db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is None
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO runs (id, name, label, started, finished, updated, events) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, label=excluded.label, "
                "started=COALESCE(runs.started, excluded.started), "
                "finished=COALESCE(excluded.finished, runs.finished), "
                "updated=excluded.updated, events=runs.events + excluded.events",
                (run_id, name, label, started, finished, last, len(rows)))
            self.db.executemany("INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?)", rows)
        if new:
            # A flood of new runs must not wait for their ends to be trimmed: the file stays within
            # keep_runs runs (each capped by the hub's max_run_events) at all times.
            self._trim()

    def set_summary(self, run_id: str, summary: dict) -> None:
        self.db.execute("UPDATE runs SET summary=? WHERE id=?", (json.dumps(summary, default=str), run_id))
        self._trim()

    def _trim(self) -> None:
        old = [row[0] for row in self.db.execute(
            "SELECT id FROM runs ORDER BY updated DESC, rowid DESC LIMIT -1 OFFSET ?", (self.keep_runs,))]
        for run_id in old:
            self.db.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id=?", (run_id,))

    def runs(self, limit: int = 100) -> list[dict]:
        cur = self.db.execute("SELECT id, name, label, started, finished, updated, events FROM runs "
                              "ORDER BY updated DESC LIMIT ?", (limit,))
        keys = ("id", "name", "label", "started", "finished", "updated", "events")
        return [dict(zip(keys, row)) for row in cur]

    def run(self, run_id: str) -> dict | None:
        row = self.db.execute("SELECT id, name, label, started, finished, updated, events, summary FROM runs "
                              "WHERE id=?", (run_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "name", "label", "started", "finished", "updated", "events")
        data = dict(zip(keys, row[:7]))
        data["summary"] = _loads(row[7]) if row[7] else None
        return data

    def events(self, run_id: str, host: str | None = None, limit: int = 200, skip_progress: bool = False):
        sql = "SELECT body FROM events WHERE run_id=?"
        args: list = [run_id]
        if host is not None:
            sql += " AND host=?"
            args.append(host)
        if skip_progress:
            sql += " AND type != 'progress'"
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [_loads(row[0]) for row in self.db.execute(sql, args)][::-1]

    def all_events(self, run_id: str):
        for (body,) in self.db.execute("SELECT body FROM events WHERE run_id=? ORDER BY seq", (run_id,)):
            yield _loads(body)

    def close(self) -> None:
        self.db.close()
