# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""State of the web dashboard: one MigrationBoard per run, fed by the very events the dashboard
callback folds (docs/dashboard.md), plus what only a fleet view needs — jobs across runs, alerts,
time series and the deltas pushed to browsers.

A *job* is one VM of one run (inventory host within a run). ``tick()`` is called once per push
interval and returns the delta since the previous tick (changed jobs only), computed once and sent
to every client; ``snapshot()`` is the full state a new or out-of-step client starts from.

Plain Python; the server (``_web_server.py``) owns the only instance and calls it from its event loop.
"""

from __future__ import annotations

import collections
import hashlib
import sys
import time
import traceback

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import (
    FAILED, PENDING, RUNNING, SUCCEEDED, MigrationBoard)
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_ingest import IngestError, clean_event

_MAX_HOST = 255
MAX_RUN_EVENTS = 200000
MAX_RUN_HOSTS = 10000


def job_id(run_id: str, host: str) -> str:
    """Stable, URL-safe id whatever characters the inventory host name holds."""
    return hashlib.blake2b(("%s\0%s" % (run_id, host)).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class RunFullError(IngestError):
    """A batch would take a run past its caps (HTTP 413): bounded memory and history under a flood."""


class Run:
    def __init__(self, run_id: str, name: str = "", label: str = ""):
        self.id, self.name, self.label = run_id, name, label
        self.board = MigrationBoard(log_size=50)
        self.seq = 0
        self.controller: dict = {}
        self.targets: dict[str, str] = {}
        self.verdicts: dict[str, list] = collections.defaultdict(list)
        self.updated = 0.0

    def info(self) -> dict:
        board = self.board
        return {"id": self.id, "name": self.name or board.playbook, "label": self.label,
                "started": board.run_started, "finished": board.run_finished, "updated": self.updated,
                "events": self.seq, "jobs": len(board.vms)}


class Hub:
    def __init__(self, history=None, *, clock=time.time, series_points=600, keep_live_runs=50, alert_keep=100,
                 max_run_events=MAX_RUN_EVENTS, max_run_hosts=MAX_RUN_HOSTS):
        self.history = history
        self.max_run_events = max_run_events
        self.max_run_hosts = max_run_hosts
        self.apply_errors = 0
        self.runs: dict[str, Run] = {}
        self.index: dict[str, tuple[str, str]] = {}
        self.dirty: set[str] = set()
        self.alerts: collections.deque = collections.deque(maxlen=alert_keep)
        self.new_alerts: list = []
        self.series: collections.deque = collections.deque(maxlen=series_points)
        self.seq = 0
        self.events_total = 0
        self.keep_live_runs = keep_live_runs
        self._alert_seq = 0
        self._clock = clock
        self._controller: dict = {}
        self._metrics_cache = None
        self.started = clock()
        self.last_event = None

    # -- input ------------------------------------------------------------------------------------

    def run(self, run_id: str, name: str = "", label: str = "") -> Run:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = Run(run_id, name, label)
            run.updated = self._clock()  # the newest run: never the one evicted to make room for itself
            self._evict()
        if name:
            run.name = name
        if label:
            run.label = label
        return run

    def check_room(self, run_id: str, events: list, hosts: set) -> None:
        """Refuse (RunFullError) a batch that would take its run past the caps, before anything is applied."""
        run = self.runs.get(run_id)
        held = run.seq if run is not None else self._stored_events(run_id)
        if held + len(events) > self.max_run_events:
            raise RunFullError("run %s holds %d events and this batch brings %d: at most %d per run "
                               "(--max-run-events); start a new run, or restart the server with a higher "
                               "--max-run-events" % (run_id, held, len(events), self.max_run_events))
        known = set(run.board.vms) if run is not None else set()
        if len(known | hosts) > self.max_run_hosts:
            raise RunFullError("run %s would hold %d hosts: at most %d per run; split the inventory into runs "
                               "of fewer hosts" % (run_id, len(known | hosts), self.max_run_hosts))

    def _stored_events(self, run_id: str) -> int:
        info = self.history.run(run_id) if self.history is not None else None
        return info["events"] if info else 0

    def ingest(self, run_id: str, events: list, *, name: str = "", label: str = "", controller=None,
               store: bool = True) -> int:
        """Fold already-validated events of one run; returns how many were applied.

        The history is written first, then the board: a write that fails changes nothing, and the board
        then folds exactly what a restarted server replays (live and history agree)."""
        if store and run_id not in self.runs:
            self._revive(run_id)
        run = self.run(run_id, name, label)
        now = self._clock()
        for event in events:
            event.setdefault("ts", now)
        if store and self.history is not None and events:
            self.history.add_events(run_id, run.name, run.label, run.seq, events, updated=now)
        for event in events:
            try:
                run.board.apply(event)
                self._after(run, event)
            except Exception:  # a bug in folding one event must not drop the rest of a stored batch
                self.apply_errors += 1
                traceback.print_exc()
        run.seq += len(events)
        run.updated = now
        self.events_total += len(events)
        if events:
            self.last_event = now
            self._metrics_cache = None
        if isinstance(controller, dict):
            run.controller = dict(controller, ts=now, run=run_id)
            self._controller = run.controller
        if store and self.history is not None and any(e.get("type") == "run_end" for e in events):
            self.history.set_summary(run_id, run.board.summary())
        return len(events)

    def _revive(self, run_id: str) -> None:
        """A run evicted from memory (or from before a restart) that reports again continues where its
        history stands, so its new events neither overwrite the stored ones nor start a blank board."""
        info = self.history.run(run_id) if self.history is not None else None
        if info:
            self._replay(info)

    def _replay(self, info: dict) -> None:
        events, dropped = [], 0
        for index, stored in enumerate(self.history.all_events(info["id"])):
            try:
                events.append(clean_event(stored, index))
            except IngestError:  # stored by an older server that accepted it: skipped, not shown
                dropped += 1
        if dropped:
            print("web dashboard: run %s: %d stored events skipped (invalid)" % (info["id"], dropped),
                  file=sys.stderr, flush=True)
        self.ingest(info["id"], events, name=info["name"], label=info["label"], store=False)
        run = self.runs[info["id"]]
        run.seq = max(run.seq, info["events"] or 0)
        run.updated = info["updated"] or 0.0

    def _after(self, run: Run, event: dict) -> None:
        kind, host = event.get("type"), event.get("host")
        if kind == "play_start":
            for name in event.get("hosts") or ():
                self._touch(run, name)
            return
        if kind == "run_end":
            metrics = run.board.metrics()
            self._alert("info", "run %s finished: %d succeeded, %d failed" % (
                run.name or run.board.playbook or run.id, metrics["succeeded"], metrics["failed"]), run.id, "")
            return
        if kind == "run_start" or host is None:
            return
        if event.get("target"):
            run.targets[host] = str(event["target"])[:_MAX_HOST]
        if kind == "task_end":
            verdict = event.get("verdict")
            if isinstance(verdict, dict):
                run.verdicts[host].append({"ts": event.get("ts"), "task": event.get("task"),
                                           "verdict": {k: verdict.get(k) for k in ("ok", "reason", "line")}})
            if event.get("status") == "unreachable":
                self._alert("critical", "%s unreachable: %s" % (host, event.get("msg") or ""), run.id, host)
            elif event.get("status") == "failed":
                message = "%s: task %s failed: %s" % (host, event.get("task") or "", event.get("msg") or "")
                self._alert("warning", message, run.id, host)
        elif kind == "vm_end" and event.get("verdict") == FAILED:
            vm = run.board.vms.get(host)
            self._alert("critical", "migration of %s failed: %s" % (vm.name if vm else host, vm.error if vm else ""),
                        run.id, host)
        self._touch(run, host)

    def _touch(self, run: Run, host: str) -> None:
        jid = job_id(run.id, host)
        self.index[jid] = (run.id, host)
        self.dirty.add(jid)

    def _alert(self, severity: str, message: str, run_id: str, host: str) -> None:
        self._alert_seq += 1
        alert = {"id": self._alert_seq, "severity": severity, "message": message[:500], "ts": self._clock(),
                 "run": run_id, "job": job_id(run_id, host) if host else None}
        self.alerts.append(alert)
        self.new_alerts.append(alert)

    def _evict(self) -> None:
        """Keep the newest runs in memory (history keeps the rest); finished runs go first."""
        while len(self.runs) > self.keep_live_runs:
            victim = min(self.runs.values(), key=lambda r: (r.board.run_finished is None, r.updated))
            for host in victim.board.vms:
                self.index.pop(job_id(victim.id, host), None)
            del self.runs[victim.id]

    def set_controller(self, sample: dict) -> None:
        self._controller = dict(sample, ts=self._clock())

    def restore(self, limit: int = 20) -> int:
        """Replay the newest runs of the history into boards (after a server restart)."""
        if self.history is None:
            return 0
        count = 0
        for info in reversed(self.history.runs(limit)):
            self._replay(info)
            count += 1
        self.alerts.clear()
        self.new_alerts = []
        return count

    # -- views ------------------------------------------------------------------------------------

    def job_view(self, run: Run, host: str) -> dict:
        vm = run.board.vm(host) if host in run.board.vms else None
        if vm is None:
            return {"id": job_id(run.id, host), "run": run.id, "host": host, "gone": True}
        return {
            "id": job_id(run.id, host), "run": run.id, "host": vm.host, "name": vm.name,
            "original_name": vm.original_name, "status": vm.status,
            "stage": vm.stage, "task": vm.task, "pct": vm.percent, "done": vm.done, "total": vm.total,
            "rate": vm.rate, "eta": vm.eta, "source": vm.source_type, "target": run.targets.get(host, ""),
            "started": vm.started, "finished": vm.finished, "error": vm.error,
        }

    def all_jobs(self) -> list[dict]:
        return [self.job_view(run, host) for run in self.runs.values() for host in run.board.vms]

    def metrics(self) -> dict:
        if self._metrics_cache is not None:
            return dict(self._metrics_cache)
        counts = {PENDING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0}
        data = busy = 0.0
        durations = []
        for run in self.runs.values():
            for vm in run.board.vms.values():
                counts[vm.status] = counts.get(vm.status, 0) + 1
                if vm.finished and vm.started is not None:
                    durations.append(vm.finished - vm.started)
            run_data, run_busy = run.board.data_moved()
            data += run_data
            busy += run_busy
        finished = counts[SUCCEEDED] + counts[FAILED]
        self._metrics_cache = {
            "active": counts[RUNNING], "completed": counts[SUCCEEDED], "failed": counts[FAILED],
            "queued": counts[PENDING], "total": sum(counts.values()), "data_processed": data,
            "average_throughput": (data / busy) if busy > 0 else None,
            "success_rate": (counts[SUCCEEDED] / finished) if finished else None,
            "average_duration": (sum(durations) / len(durations)) if durations else None,
            "runs": len(self.runs), "runs_active": sum(1 for r in self.runs.values() if r.board.run_finished is None),
        }
        return dict(self._metrics_cache)

    def controller(self) -> dict:
        return dict(self._controller)

    def _point(self, now: float, metrics: dict) -> dict:
        ctl = self._controller
        return {"ts": round(now, 3), "active": metrics["active"], "completed": metrics["completed"],
                "failed": metrics["failed"], "queued": metrics["queued"],
                "cpu": ctl.get("cpu_percent"), "mem": ctl.get("mem_percent"), "rss": ctl.get("rss")}

    def tick(self) -> dict:
        """The delta since the previous tick (one time-series point every tick; changed jobs only)."""
        now = self._clock()
        self.seq += 1
        metrics = self.metrics()
        point = self._point(now, metrics)
        self.series.append(point)
        jobs = []
        for jid in sorted(self.dirty):
            where = self.index.get(jid)
            run = self.runs.get(where[0]) if where else None
            if run is not None:
                jobs.append(self.job_view(run, where[1]))
        self.dirty.clear()
        alerts, self.new_alerts = self.new_alerts, []
        return {"type": "delta", "seq": self.seq, "ts": now, "metrics": metrics, "controller": self.controller(),
                "jobs": jobs, "alerts": alerts, "point": point}

    def snapshot(self) -> dict:
        now = self._clock()
        return {"type": "snapshot", "seq": self.seq, "ts": now, "metrics": self.metrics(),
                "controller": self.controller(), "jobs": self.all_jobs(), "alerts": list(self.alerts)[-10:],
                "series": list(self.series), "runs": [r.info() for r in self.runs.values()]}

    def job_detail(self, jid: str) -> dict | None:
        where = self.index.get(jid)
        run = self.runs.get(where[0]) if where else None
        if run is None:
            return None
        host = where[1]
        events = []
        if self.history is not None:
            events = self.history.events(run.id, host, limit=200, skip_progress=True)
            last_progress = [e for e in self.history.events(run.id, host, limit=1) if e.get("type") == "progress"]
            events.extend(last_progress)
        errors = [{"ts": e.get("ts"), "task": e.get("task"), "msg": e.get("msg")} for e in events
                  if e.get("type") == "task_end" and e.get("status") in ("failed", "unreachable", "ignored")]
        return {"job": self.job_view(run, host), "run": run.info(), "events": events,
                "verdicts": list(run.verdicts.get(host, ())), "errors": errors}
