# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The event source of the dashboard and web callbacks: Ansible's callback calls in, migration events out.

``AnsibleEventSource`` gets the calls a callback receives (playbook, play and task starts, task results,
async polls carrying a ``v2kvm_progress`` sample, the stats), turns each into a migration event (the
types of _migration_events.py), escapes it (``neutral``: messages, items and names come from sources and
hosts), stamps it, folds it into its ``board`` and hands it to each of its sinks (_event_sink.EventSink),
in order, under one lock. The board is a pure fold of the events, so the sinks that read it (the views,
the reports) share this one.

Results are read as the worker sent them (``_return_data``): ``result._result`` makes a deep native copy
for every callback that asks, and the few top-level keys read here do not need one.
"""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_sample import FORWARDED_FIELDS, PROGRESS_KEY
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import neutral
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._fork_safe_heartbeat import Heartbeat
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import (
    FAILED, RUNNING, SUCCEEDED, MigrationBoard)

# Tasks that only keep the play's books (facts, includes, argument checks): they never are what a VM is
# doing, so they do not take its stage column or a progress line.
_BOOKKEEPING_ACTIONS = frozenset(("set_fact", "validate_argument_spec", "include_tasks", "import_tasks",
                                  "include_role", "import_role", "include_vars", "meta"))


def raw_result(result) -> dict:
    """The result dict as the worker sent it, without the deep copy ``result._result`` makes."""
    raw = getattr(result, "_return_data", None)
    return raw if isinstance(raw, dict) else result._result


def _text_or_none(value):
    return None if value is None else str(value)


def action_name(task) -> str:
    """The task's module without its collection (set_fact for ansible.builtin.set_fact)."""
    action = getattr(task, "action", None)
    return action.rsplit(".", 1)[-1] if isinstance(action, str) else ""


def task_label(task) -> str:
    """The task's own name: a role prefix (v2kvm.migrate.migrate_vm : ...) only eats the stage column."""
    return task.name or task.get_name()


def delegated_target(res: dict):
    """The host a delegated task ran on (a placement's KVM host), or None."""
    delegated = res.get("_ansible_delegated_vars")
    if not isinstance(delegated, dict):
        return None
    return delegated.get("ansible_delegated_host") or delegated.get("ansible_host") or None


def _spec_fields(res: dict, facts: dict, task) -> dict:
    """spec_name, original_name and source_type a result tells about its VM."""
    spec = res.get("spec") or facts.get("migrate_vm_spec")
    if isinstance(spec, dict):
        source = spec.get("source")
        return {"spec_name": _text_or_none(spec.get("name")), "original_name": _text_or_none(spec.get("original_name")),
                "source_type": _text_or_none(source.get("type")) if isinstance(source, dict) else None}
    if action_name(task) == "migration_state":
        # A re-run reads no source: the recorded migration says what kind it was. The role asks every
        # candidate host in a loop, so the answer is in one of the items.
        items = res.get("results") if isinstance(res.get("results"), list) else [res]
        found = [item.get("source_type") for item in items if isinstance(item, dict) and item.get("source_type")]
        return {"source_type": _text_or_none(found[0]) if found else None}
    return {}


def task_end_event(result, status: str) -> dict:
    """The task_end event of one task result on one host."""
    res = raw_result(result)
    task = result._task
    event = {"type": "task_end", "host": result._host.get_name(), "task": task_label(task),
             "task_uuid": task._uuid, "status": status}
    if status in ("failed", "unreachable"):
        event["msg"] = str(res.get("msg") or res.get("reason") or res.get("stderr") or "")[:2000]
    facts = res.get("ansible_facts")
    facts = facts if isinstance(facts, dict) else {}
    event.update(_spec_fields(res, facts, task))
    if facts.get("migrate_vm_phase"):
        # The role marks each phase (source, place, convert, define, validate): a failed VM then
        # shows where it failed, not the name of the rescue task that reported it.
        event["phase"] = str(facts["migrate_vm_phase"])
    target = delegated_target(res)
    if target:
        event["target"] = str(target)
    if isinstance(res.get("verdict"), dict):
        event["verdict"] = res["verdict"]  # validate's boot verdict (escaped with the rest of the event)
    return event


def progress_event(result):
    """The progress event of an async poll carrying a progress sample, or None for an ordinary poll."""
    res = raw_result(result)
    sample = res.get(PROGRESS_KEY)
    if not isinstance(sample, dict):
        return None
    task = result._task
    event = {"type": "progress", "host": result._host.get_name(), "task": task_label(task),
             "task_uuid": task._uuid, "item": res.get("_ansible_item_label")}
    event.update({key: sample.get(key) for key in FORWARDED_FIELDS})
    event["sample_ts"] = sample.get("ts")
    target = delegated_target(res)
    if target:
        event["target"] = str(target)
    return event


class AnsibleEventSource:
    """Turns a callback's calls into migration events and fans them out to ``sinks``."""

    def __init__(self, clock=time.time, display=None, name="v2kvm.migrate"):
        self.board = MigrationBoard()
        self._sinks: tuple = ()
        self._event_handlers: tuple = ()
        self.clock = clock
        self.lock = threading.RLock()
        self.finished = False
        self._display = display
        self._name = name
        self._heartbeat = None

    # -- fan-out -----------------------------------------------------------------------------------

    @property
    def sinks(self) -> tuple:
        return self._sinks

    def set_sinks(self, sinks) -> None:
        """The sinks every event goes to, in this order (call it under ``lock`` once the run goes on)."""
        self._sinks = tuple(sinks)
        # Bound once: a sink that takes no events (the reports) costs nothing per event.
        self._event_handlers = tuple(sink.event for sink in self._sinks if type(sink).event is not EventSink.event)

    def emit(self, event: dict) -> dict:
        """Escape, stamp, fold and hand one event to every sink; returns the event as the sinks got it."""
        event = neutral(event)
        event.setdefault("ts", self.clock())
        with self.lock:
            self.board.apply(event)
            for handle in self._event_handlers:
                handle(event)
        return event

    def tick(self) -> None:
        with self.lock:
            for sink in self.sinks:
                sink.tick()

    def beat(self) -> None:
        with self.lock:
            if not self.finished:
                for sink in self.sinks:
                    sink.beat()

    def start_heartbeat(self, period: float) -> None:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.beat, period)
            self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        # Outside self.lock: a beat waiting for it holds the fork guard, and stop() waits for the beat.
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    # -- what Ansible calls ------------------------------------------------------------------------

    def playbook_start(self, playbook) -> dict:
        return self.emit({"type": "run_start", "playbook": os.path.basename(getattr(playbook, "_file_name", "") or "")})

    def play_start(self, play) -> None:
        hosts = []
        try:
            inventory = play.get_variable_manager()._inventory
            hosts = [host.name for host in inventory.get_hosts(play.hosts)]
        except Exception as exc:  # hosts then appear as their tasks start
            if self._display is not None:
                self._display.vvvv("%s: could not list the play's hosts: %s" % (self._name, exc))
        self.emit({"type": "play_start", "play": play.get_name(), "hosts": hosts})

    def runner_start(self, host, task) -> None:
        event = {"type": "task_start", "host": host.get_name(), "task": task_label(task), "task_uuid": task._uuid}
        if action_name(task) in _BOOKKEEPING_ACTIONS:
            event["bookkeeping"] = True
        self.emit(event)

    def async_poll(self, result) -> None:
        event = progress_event(result)
        if event is None:
            self.tick()  # an ordinary async task polled: still a moment to draw a pending frame
        else:
            self.emit(event)

    def runner_ok(self, result) -> None:
        self.emit(task_end_event(result, "changed" if raw_result(result).get("changed") else "ok"))

    def runner_failed(self, result, ignore_errors=False) -> None:
        self.emit(task_end_event(result, "ignored" if ignore_errors else "failed"))

    def runner_skipped(self, result) -> None:
        self.emit(task_end_event(result, "skipped"))

    def runner_unreachable(self, result) -> None:
        self.emit(task_end_event(result, "unreachable"))

    def stats(self, stats) -> None:
        """The end of the run: a verdict per VM from Ansible's counts, run_end, then the sinks close."""
        for host in sorted(stats.processed):
            counts = stats.summarize(host)
            failed = counts.get("failures", 0) or counts.get("unreachable", 0)
            vm = self.board.vm(host)
            self.emit({"type": "vm_end", "host": host, "verdict": FAILED if failed else SUCCEEDED,
                       "msg": vm.error if failed else ""})
        self.emit({"type": "run_end"})
        self.close()

    # -- end of run --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """ansible-playbook stopped early (Ctrl-C, q, a fatal error) and sent no stats: end the run here.
        VMs still running end as failed ("interrupted"), then the sinks close (reports written, terminal
        given back)."""
        if self.finished:
            return
        for host, vm in list(self.board.vms.items()):
            if vm.status == RUNNING:
                self.emit({"type": "vm_end", "host": host, "verdict": FAILED,
                           "msg": "interrupted: the run stopped during %s" % (vm.stage or "its first task")})
        self.emit({"type": "run_end", "interrupted": True})
        self.close()

    def close(self) -> None:
        """The one end of every run, normal or not: the heartbeat stops, each sink closes once."""
        self.stop_heartbeat()
        with self.lock:
            if self.finished:
                return
            self.finished = True
            for sink in self.sinks:
                sink.close()


class ForwardsToSource:
    """The callback methods that only hand Ansible's call to the callback's ``source`` (an
    AnsibleEventSource), shared by the dashboard and web callbacks.

    ansible-core dispatches callbacks by method name, so the methods must be on the callback class; this
    mixin holds them once. It adds no state: the callback composes its source and sinks itself.
    """

    source: AnsibleEventSource
    _started: bool

    def _at_exit(self):
        """ansible-playbook stopped early (Ctrl-C, q, a fatal error) and sent no stats: end the run here."""
        if self._started:
            self.source.interrupt()

    def v2_runner_on_start(self, host, task):
        self.source.runner_start(host, task)

    def v2_runner_on_async_poll(self, result):
        self.source.async_poll(result)

    def v2_runner_on_ok(self, result):
        self.source.runner_ok(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self.source.runner_failed(result, ignore_errors)

    def v2_runner_on_skipped(self, result):
        self.source.runner_skipped(result)

    def v2_runner_on_unreachable(self, result):
        self.source.runner_unreachable(result)

    def v2_playbook_on_stats(self, stats):
        self.source.stats(stats)
