# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration event model shared by the terminal dashboard and the web dashboard.

Everything that happens is an *event*: a flat JSON-able dict with at least ``ts`` (epoch seconds),
``type`` and usually ``host`` (the inventory host, one per VM). ``MigrationBoard.apply(event)``
folds events into per-VM state and run metrics; a JSON-lines log of the same events replays into
the same board, so a web view can be fed from the file the callback writes.

Event types:

- ``run_start`` {playbook}; ``play_start`` {play, hosts: [..]}
- ``task_start`` {host, task, task_uuid, bookkeeping}  (``bookkeeping``: set_fact, includes, argument checks;
  such a task marks the VM running but does not become its stage)
- ``progress`` {host, task, task_uuid, item, stage, done, total, rate, eta, source, sample_ts, target}
- ``task_end`` {host, task, task_uuid, item, status: ok|changed|failed|skipped|unreachable|ignored,
  msg, spec_name, original_name, source_type, phase, target, verdict}  (``phase``: the role's
  ``migrate_vm_phase`` when a task set it; ``original_name``: the source's own name when the domain name was
  derived from it; ``target``: the host a delegated task ran on; ``verdict``: validate's verdict)
- ``vm_end`` {host, verdict: succeeded|failed, msg}
- ``run_end`` {}

Hosts in ``controller_hosts`` (default: localhost) are where playbooks plan and coordinate (the
first play of evacuate.yml, a placement run_once delegated there), never a VM: they get no VM row
and count in no metric, but their failures still reach the event log.

This module is plain Python (no Ansible import) so it is unit-testable and reusable anywhere.
"""

from __future__ import annotations

import collections
import dataclasses
import time

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
CONTROLLER_HOSTS = ("localhost",)
# Modules whose progress is a check reading the disks again (validate's qemu-img compare) or a boot: shown
# like any transfer, but not counted as data migrated nor in the average throughput.
CHECK_SOURCES = ("validate",)


@dataclasses.dataclass
class Transfer:
    """One long operation (one disk conversion), keyed by task uuid + host + item."""

    stage: str = ""
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    finished: bool = False
    moves_data: bool = True  # False for checks that read disks again (validate's compare): not migrated bytes


@dataclasses.dataclass
class VmState:
    host: str
    name: str = ""
    original_name: str = ""  # the source's own name, when ``name`` (the domain's) was derived from it
    source_type: str = ""
    status: str = PENDING
    phase: str = ""
    task: str = ""
    stage: str = ""
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    started: float | None = None
    finished: float | None = None
    error: str = ""
    last_update: float | None = None
    tasks_ok: int = 0
    tasks_changed: int = 0
    tasks_failed: int = 0
    busy: bool = False  # a task that is not bookkeeping runs for this VM now
    before_task: tuple = ("", "")  # (task, stage) shown again if the running task turns out to be skipped

    @property
    def display_name(self) -> str:
        """The VM as people know it: the source's own name, else the domain name."""
        return self.original_name or self.name

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(100.0, 100.0 * self.done / self.total))

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or now) - self.started

    def as_dict(self, now: float) -> dict:
        data = dataclasses.asdict(self)
        del data["before_task"]  # bookkeeping of the board, not part of the report
        data["percent"] = self.percent
        data["elapsed"] = round(self.elapsed(now), 3)
        return data


class MigrationBoard:
    """State of a run, built only from events. ``log`` keeps the last ``log_size`` human lines."""

    def __init__(self, log_size: int = 500, clock=time.time, controller_hosts=CONTROLLER_HOSTS):
        self.controller_hosts = frozenset(controller_hosts or ())
        self.vms: dict[str, VmState] = {}
        self.transfers: dict[tuple, Transfer] = {}
        self.log: collections.deque = collections.deque(maxlen=log_size)
        self.events_applied = 0
        self.progress_events = 0
        self.run_started: float | None = None
        self.run_finished: float | None = None
        self.interrupted = False  # the run ended early (Ctrl-C, q): its running VMs were stopped
        self.last_update: float | None = None
        self.playbook = ""
        self._clock = clock

    # -- folding ---------------------------------------------------------------------------------

    def vm(self, host: str) -> VmState:
        state = self.vms.get(host)
        if state is None:
            state = self.vms[host] = VmState(host=host, name=host)
        return state

    def apply(self, event: dict) -> None:
        handler = getattr(self, "_on_" + str(event.get("type")), None)
        ts = event.get("ts") or self._clock()
        self.events_applied += 1
        self.last_update = ts
        if event.get("host") in self.controller_hosts:
            self._on_controller_event(event, ts)
        elif handler is not None:
            handler(event, ts)

    def _on_controller_event(self, event, ts):
        if event.get("type") == "task_end" and event.get("status") in ("failed", "unreachable"):
            reason = str(event.get("msg") or event["status"])[:500]
            self._note(ts, event["host"], "FAILED %s: %s" % (event.get("task") or "", reason))

    def _on_run_start(self, event, ts):
        self.run_started = ts
        self.playbook = event.get("playbook") or ""
        self._note(ts, "", "run started %s" % self.playbook)

    def _on_play_start(self, event, ts):
        if self.run_started is None:
            self.run_started = ts
        for host in event.get("hosts") or ():
            if host not in self.controller_hosts:
                self.vm(host)
        self._note(ts, "", "play: %s" % (event.get("play") or ""))

    def _on_task_start(self, event, ts):
        vm = self.vm(event["host"])
        if vm.status in (PENDING,):
            vm.status = RUNNING
            vm.started = ts
        if vm.status == RUNNING and not event.get("bookkeeping"):
            vm.busy = True
            vm.before_task = (vm.task, vm.stage)
            vm.task = event.get("task") or ""
            vm.stage = vm.task
            # The bar belongs to the task that reported it; a new task starts without one.
            vm.done, vm.total, vm.rate, vm.eta = 0, 0, 0.0, None
        vm.last_update = ts

    def _on_progress(self, event, ts):
        self.progress_events += 1
        vm = self.vm(event["host"])
        if vm.status == PENDING:
            vm.status, vm.started = RUNNING, ts
        key = (event.get("task_uuid"), event["host"], event.get("item"))
        transfer = self.transfers.get(key)
        # The module's own clock says how long the work took: samples of a short task often arrive in
        # one poll, and their arrival times would make its rate look enormous.
        span_ts = float(event.get("sample_ts") or ts)
        if transfer is None:
            transfer = self.transfers[key] = Transfer(first_ts=span_ts,
                                                      moves_data=event.get("source") not in CHECK_SOURCES)
        transfer.stage = event.get("stage") or ""
        transfer.done = int(event.get("done") or 0)
        transfer.total = int(event.get("total") or 0)
        transfer.rate = float(event.get("rate") or 0)
        transfer.eta = event.get("eta")
        transfer.last_ts = span_ts
        transfer.finished = transfer.stage in ("done", "failed")
        stage = transfer.stage
        if event.get("item") not in (None, ""):
            stage = "%s %s" % (stage, event["item"])
        vm.stage, vm.done, vm.total, vm.rate, vm.eta = stage, transfer.done, transfer.total, transfer.rate, transfer.eta
        vm.last_update = ts

    def _on_task_end(self, event, ts):
        vm = self.vm(event["host"])
        status = event.get("status")
        if status == "skipped" and vm.busy and vm.status == RUNNING:
            # Ansible announces a task before it evaluates `when`: a skipped one was never the VM's stage.
            vm.task, vm.stage = vm.before_task
        vm.busy = False
        if vm.started is None:
            vm.started = ts
        if event.get("spec_name"):
            vm.name = event["spec_name"]
        if event.get("original_name"):
            vm.original_name = event["original_name"]
        if event.get("source_type"):
            vm.source_type = event["source_type"]
        if event.get("phase"):
            vm.phase = event["phase"]
        for key, transfer in self.transfers.items():
            if key[0] == event.get("task_uuid") and key[1] == event["host"] and not transfer.finished:
                transfer.finished = True
                if status in ("ok", "changed"):
                    transfer.done = transfer.total
        if status in ("failed", "unreachable"):
            vm.tasks_failed += 1
            vm.error = str(event.get("msg") or status)[:500]
            self._note(ts, event["host"], "FAILED %s: %s" % (event.get("task") or "", vm.error))
        else:
            vm.tasks_ok += 1
            if status == "changed":
                vm.tasks_changed += 1
                self._note(ts, event["host"], "changed: %s" % (event.get("task") or ""))
        vm.last_update = ts

    def _on_vm_end(self, event, ts):
        vm = self.vm(event["host"])
        vm.status = SUCCEEDED if event.get("verdict") == SUCCEEDED else FAILED
        if vm.started is None:
            vm.started = ts
        vm.finished = ts
        vm.busy = False
        vm.rate, vm.eta = 0.0, None
        if vm.status == SUCCEEDED:
            # A re-run of a finished migration changes nothing: say so rather than look like a new one.
            vm.stage = "done" if vm.tasks_changed else "up to date (nothing changed)"
        else:
            # The last task of a failed role run is its rescue's report: the phase says more.
            vm.stage = "failed in %s" % vm.phase if vm.phase else "failed: %s" % vm.stage
        if vm.status == FAILED and event.get("msg"):
            vm.error = str(event["msg"])[:500]
        # The log shows the host already; the VM's own name only when it differs.
        shown = vm.display_name
        self._note(ts, event["host"], vm.status if shown in ("", vm.host) else "%s %s" % (shown, vm.status))

    def _on_run_end(self, event, ts):
        self.run_finished = ts
        self.interrupted = bool(event.get("interrupted"))
        self._note(ts, "", "run interrupted" if self.interrupted else "run finished")

    def _note(self, ts, host, text):
        self.log.append((ts, host, text))

    # -- reading ---------------------------------------------------------------------------------

    def data_moved(self) -> tuple[int, float]:
        """(bytes migrated, seconds the transfers that moved them were busy); checks do not count."""
        moved = [t for t in self.transfers.values() if t.moves_data]
        return (sum(t.done for t in moved),
                sum(max(0.0, (t.last_ts or 0) - (t.first_ts or 0)) for t in moved))

    def metrics(self, now: float | None = None) -> dict:
        now = self.last_update if now is None else now
        now = now or self._clock()
        vms = self.vms.values()
        succeeded = sum(1 for vm in vms if vm.status == SUCCEEDED)
        failed = sum(1 for vm in vms if vm.status == FAILED)
        finished = succeeded + failed
        data, busy = self.data_moved()
        durations = [vm.finished - vm.started for vm in vms if vm.finished and vm.started is not None]
        return {
            "active": sum(1 for vm in vms if vm.status == RUNNING),
            "pending": sum(1 for vm in vms if vm.status == PENDING),
            "total": len(self.vms),
            "succeeded": succeeded,
            "failed": failed,
            "success_rate": (succeeded / finished) if finished else None,
            "error_rate": (failed / finished) if finished else None,
            "average_throughput": (data / busy) if busy > 0 else None,
            "data_processed": data,
            "average_duration": (sum(durations) / len(durations)) if durations else None,
            "elapsed": (now - self.run_started) if self.run_started else 0.0,
        }

    def summary(self) -> dict:
        now = self.run_finished or self.last_update or self._clock()
        return {
            "playbook": self.playbook,
            "started": self.run_started,
            "finished": self.run_finished,
            "interrupted": self.interrupted,
            "metrics": self.metrics(now),
            "vms": [self.vms[h].as_dict(now) for h in sorted(self.vms)],
            "events": self.events_applied,
            "progress_events": self.progress_events,
        }


def human_bytes(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%.1f TiB" % value


def human_seconds(value) -> str:
    if value is None:
        return "-"
    value = int(round(float(value)))
    hours, rest = divmod(value, 3600)
    minutes, seconds = divmod(rest, 60)
    return "%d:%02d:%02d" % (hours, minutes, seconds) if hours else "%d:%02d" % (minutes, seconds)


def mb_per_s(rate) -> str:
    return "-" if not rate else "%.1f MB/s" % (float(rate) / 1e6)
