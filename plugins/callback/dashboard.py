# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: dashboard
type: notification
short_description: Live migration dashboard (Rich terminal view or plain progress lines) and run reports
version_added: 0.1.0
description:
  - Shows one row per VM (inventory host) with its stage, a progress bar, throughput, elapsed time, ETA and
    error, run metrics and a scrolling event log, updated from task events and from the live progress that
    long tasks such as M(v2kvm.migrate.disk_convert) send while they run (see C(docs/progress-channel.md)).
  - Draws on the callback's own events, at most once per O(refresh_interval), and from a heartbeat thread
    between events (a pending frame, and at least once a second so elapsed times advance; in line mode a
    line per VM whose task still runs every O(line_interval)). Every fork of the controller waits for a beat
    in progress and no beat starts during a fork, so nothing writes to the terminal while Ansible forks workers.
  - Falls back to plain progress lines, one per active VM every O(line_interval) seconds and no escape codes,
    when stdout is not a terminal, C(TERM=dumb), or C(CI), C(JOB_ID) or any C(AWX_*) variable is set.
  - Writes a JSON-lines event log, a summary JSON and a JUnit XML report (one testcase per VM) when asked.
  - Works as the stdout callback (C(stdout_callback=v2kvm.migrate.dashboard)) or, enabled next to another
    stdout callback, as a notification callback that only writes reports unless O(mode=line).
  - Every option can also be set as a play variable or an extra variable (C(-e v2kvm_dashboard_mode=line));
    they are read when the first play starts, before anything is drawn.
  - Keys in the terminal view, read from the terminal and applied at the next redraw (at least once a
    second while a transfer runs), C(q) stop the run cleanly (like Ctrl-C), C(r) redraw now,
    C(l) focus the log, C(m) focus the migrations, C(d) toggle dark/light.
requirements:
  - rich (Python library, on the controller)
options:
  mode:
    description:
      - V(auto) picks V(terminal) for an interactive stdout callback, V(line) otherwise, and V(off) (reports
        only) when another callback owns stdout.
    type: str
    choices: [auto, terminal, line, 'off']
    default: auto
    env:
      - name: V2KVM_DASHBOARD_MODE
    vars:
      - name: v2kvm_dashboard_mode
    ini:
      - section: callback_v2kvm_dashboard
        key: mode
  line_interval:
    description:
      - Seconds between two progress lines of one VM in line mode, also while its task runs without reporting
        progress (a line then says the task still runs and for how long).
    type: float
    default: 10
    env:
      - name: V2KVM_DASHBOARD_LINE_INTERVAL
    vars:
      - name: v2kvm_dashboard_line_interval
    ini:
      - section: callback_v2kvm_dashboard
        key: line_interval
  refresh_interval:
    description: Smallest number of seconds between two redraws of the terminal view.
    type: float
    default: 0.5
    env:
      - name: V2KVM_DASHBOARD_REFRESH_INTERVAL
    vars:
      - name: v2kvm_dashboard_refresh_interval
    ini:
      - section: callback_v2kvm_dashboard
        key: refresh_interval
  events_file:
    description: Path of a JSON-lines file receiving every event (appended).
    type: path
    env:
      - name: V2KVM_DASHBOARD_EVENTS_FILE
    vars:
      - name: v2kvm_dashboard_events_file
    ini:
      - section: callback_v2kvm_dashboard
        key: events_file
  summary_file:
    description: Path of a JSON file written at the end of the run with per-VM results and metrics.
    type: path
    env:
      - name: V2KVM_DASHBOARD_SUMMARY_FILE
    vars:
      - name: v2kvm_dashboard_summary_file
    ini:
      - section: callback_v2kvm_dashboard
        key: summary_file
  junit_file:
    description: Path of a JUnit XML file written at the end of the run, one testcase per VM.
    type: path
    env:
      - name: V2KVM_DASHBOARD_JUNIT_FILE
    vars:
      - name: v2kvm_dashboard_junit_file
    ini:
      - section: callback_v2kvm_dashboard
        key: junit_file
  keys:
    description: Read single keys from the terminal in the terminal view.
    type: bool
    default: true
    env:
      - name: V2KVM_DASHBOARD_KEYS
    vars:
      - name: v2kvm_dashboard_keys
    ini:
      - section: callback_v2kvm_dashboard
        key: keys
  theme:
    description: Colours of the terminal view at start (the C(d) key toggles).
    type: str
    choices: [dark, light]
    default: dark
    env:
      - name: V2KVM_DASHBOARD_THEME
    vars:
      - name: v2kvm_dashboard_theme
    ini:
      - section: callback_v2kvm_dashboard
        key: theme
"""

import atexit
import json
import os
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET

from ansible import constants as C
from ansible.config.manager import ensure_type
from ansible.plugins.callback import CallbackBase

from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_sample import FORWARDED_FIELDS, PROGRESS_KEY
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import neutral, untrusted
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import (
    FAILED, RUNNING, SUCCEEDED, MigrationBoard)
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._dashboard_view import CLOCK_REDRAW, LineView, TerminalView
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._fork_safe_heartbeat import Heartbeat

_CI_VARS = ("CI", "JOB_ID", "BUILD_ID", "TF_BUILD")
# One encoder for every event: json.dumps() with non-default arguments builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_FLUSH_EVERY = 1.0  # seconds: the event log is buffered, and flushed at least this often while events come


def _raw_result(result):
    """The result dict as the worker sent it. ``result._result`` makes (and caches) a deep native copy
    for each callback that asks; the few top-level keys read here do not need it."""
    raw = getattr(result, "_return_data", None)
    return raw if isinstance(raw, dict) else result._result


def plain_output_wanted(environ=None, stream=None) -> bool:
    """True when escape codes would end up in a log: not a TTY, TERM=dumb, CI or AWX."""
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    if environ.get("TERM", "") == "dumb":
        return True
    if any(environ.get(name) for name in _CI_VARS):
        return True
    if any(name.startswith(("AWX_", "TOWER_")) for name in environ):
        return True
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _text_or_none(value):
    return None if value is None else str(value)


def _option_vars():
    """option name -> {var, type} for every option a play variable may set (from DOCUMENTATION)."""
    import yaml

    options = yaml.safe_load(DOCUMENTATION)["options"]
    return {name: {"var": spec["vars"][0]["name"], "type": spec.get("type", "str")}
            for name, spec in options.items() if spec.get("vars")}


_OPTION_VARS = _option_vars()


# Tasks that only keep the play's books (facts, includes, argument checks): they never are what a VM is
# doing, so they do not take its stage column or a progress line.
_BOOKKEEPING_ACTIONS = frozenset(("set_fact", "validate_argument_spec", "include_tasks", "import_tasks",
                                  "include_role", "import_role", "include_vars", "meta"))


def _action_name(task):
    """The task's module without its collection (set_fact for ansible.builtin.set_fact)."""
    action = getattr(task, "action", None)
    return action.rsplit(".", 1)[-1] if isinstance(action, str) else ""


def _is_bookkeeping(task):
    return _action_name(task) in _BOOKKEEPING_ACTIONS


def _task_label(task):
    """The task's own name: a role prefix (v2kvm.migrate.migrate_vm : ...) only eats the stage column."""
    return task.name or task.get_name()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    # 'notification' so it can also be enabled beside another stdout callback; as stdout callback
    # ansible-core loads it by name whatever its type.
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "v2kvm.migrate.dashboard"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None, stream=None, clock=time.time, live=True):
        super().__init__(display=display, options=options)
        self.board = MigrationBoard()
        self._clock = clock
        self._stream = stream
        self._view = None
        self._events_fh = None
        self._events_flushed = 0.0
        self._lock = threading.RLock()
        self._started = False
        self._vars_read = False
        self._early_events = []
        self._finished = False
        self._heartbeat = None
        # live=False (tests driving a fake clock): no heartbeat thread and no exit hook; they call both.
        self._heartbeat_wanted = live
        self._exit_hook_wanted = live

    # -- setup ----------------------------------------------------------------------------------

    def _is_stdout_callback(self) -> bool:
        names = ("v2kvm.migrate.dashboard", "dashboard")
        # ansible-runner (navigator, AWX) puts its own stdout callback in place and keeps the one asked for
        # here: the user asked for the dashboard's output, so it is given (in line mode: no TTY there).
        if os.environ.get("ORIGINAL_STDOUT_CALLBACK") in names:
            return True
        try:
            configured = C.config.get_config_value("DEFAULT_STDOUT_CALLBACK")
        except Exception:  # unusual config: behave like a notification callback
            return False
        return configured in names

    def _choose_mode(self) -> str:
        mode = self.get_option("mode")
        stream = self._stream or sys.stdout
        if mode == "auto":
            if not self._is_stdout_callback() and self._stream is None:
                return "off"
            return "line" if plain_output_wanted(stream=stream) else "terminal"
        if mode == "terminal" and plain_output_wanted(stream=stream):
            return "line"
        return mode

    def _start(self):
        if self._started:
            return
        self._started = True
        self._register_exit_hook()
        mode = self._choose_mode()
        stream = self._stream or sys.stdout
        if mode == "terminal":
            self._view = TerminalView(self.board, stream=stream, refresh_interval=self.get_option("refresh_interval"),
                                      theme=self.get_option("theme"), keys=self.get_option("keys"),
                                      on_quit=self._quit, clock=self._clock)
        elif mode == "line":
            self._view = LineView(self.board, stream=stream, interval=self.get_option("line_interval"),
                                  clock=self._clock)
        if self._view is not None and self._heartbeat_wanted:
            period = min(self.get_option("refresh_interval"), CLOCK_REDRAW) if mode == "terminal" else 1.0
            self._heartbeat = Heartbeat(self._beat, period)
            self._heartbeat.start()
        path = self.get_option("events_file")
        if path:
            self._events_fh = open(path, "a", encoding="utf-8")

    def _beat(self):
        with self._lock:
            if self._view is not None and not self._finished:
                self._view.heartbeat()

    def _stop_heartbeat(self):
        # Outside self._lock: a beat waiting for it holds the fork guard, and stop() waits for the beat.
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    @staticmethod
    def _quit():
        # Exactly what Ctrl-C does: the controller forwards SIGINT to its workers, and a worker following
        # a background job stops it on the target before exiting (see docs/dashboard.md).
        os.kill(os.getpid(), signal.SIGINT)

    # -- event plumbing -------------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        # Messages, task items and names come from sources and hosts: escaped once here, for every view.
        event = neutral(event)
        event.setdefault("ts", self._clock())
        with self._lock:
            self.board.apply(event)
            if self._events_fh is not None:
                self._events_fh.write(_encode(event) + "\n")
                now = time.monotonic()
                if now - self._events_flushed >= _FLUSH_EVERY:
                    self._events_fh.flush()
                    self._events_flushed = now
            if self._view is not None:
                self._view.on_event(event)

    def _tick(self):
        """An Ansible event that changes nothing on the board: draw a frame left pending by the rate limit."""
        with self._lock:
            if self._view is not None:
                self._view.tick()

    def _task_event(self, result, status):
        res = _raw_result(result)
        task = result._task
        event = {"type": "task_end", "host": result._host.get_name(), "task": _task_label(task),
                 "task_uuid": task._uuid, "status": status}
        if status in ("failed", "unreachable"):
            event["msg"] = str(res.get("msg") or res.get("reason") or res.get("stderr") or "")[:2000]
        facts = res.get("ansible_facts")
        facts = facts if isinstance(facts, dict) else {}
        spec = res.get("spec") or facts.get("migrate_vm_spec")
        if isinstance(spec, dict):
            event["spec_name"] = _text_or_none(spec.get("name"))
            event["original_name"] = _text_or_none(spec.get("original_name"))
            source = spec.get("source")
            event["source_type"] = _text_or_none(source.get("type")) if isinstance(source, dict) else None
        elif _action_name(task) == "migration_state":
            # A re-run reads no source: the recorded migration says what kind it was. The role asks every
            # candidate host in a loop, so the answer is in one of the items.
            items = res.get("results") if isinstance(res.get("results"), list) else [res]
            found = [item.get("source_type") for item in items if isinstance(item, dict) and item.get("source_type")]
            event["source_type"] = _text_or_none(found[0]) if found else None
        if facts.get("migrate_vm_phase"):
            # The role marks each phase (source, place, convert, define, validate): a failed VM then
            # shows where it failed, not the name of the rescue task that reported it.
            event["phase"] = str(facts["migrate_vm_phase"])
        self.emit(event)

    # -- callback methods -----------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._start()
        event = {"type": "run_start", "playbook": os.path.basename(getattr(playbook, "_file_name", "") or "")}
        self.emit(event)
        self._early_events = [event]

    def _options_from_vars(self, play):
        """v2kvm_dashboard_<option> from the play's vars, overridden by extra vars (-e)."""
        try:
            found = dict(play.get_vars() or {})
            found.update(getattr(play.get_variable_manager(), "extra_vars", None) or {})
        except Exception as exc:  # no variables to read: the configured options stand
            self._display.vvvv("dashboard: could not read play variables: %s" % exc)
            return
        changed = False
        for option, spec in _OPTION_VARS.items():
            if spec["var"] in found:
                value = ensure_type(found[spec["var"]], spec["type"])
                changed = changed or value != self.get_option(option)
                self.set_option(option, value)
        if changed and self._started:
            # Only the run_start event has happened: set the view and the event log up again.
            self._restart()

    def _restart(self):
        self._stop_heartbeat()
        if self._view is not None:
            self._view.discard()
            self._view = None
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None
        self._started = False
        self._start()
        if self._events_fh is not None:
            # The new event log must hold the whole run, run_start included.
            for event in self._early_events:
                self._events_fh.write(_encode(event) + "\n")

    def v2_playbook_on_play_start(self, play):
        if not self._vars_read:
            self._vars_read = True
            self._options_from_vars(play)
        self._start()
        hosts = []
        try:
            inventory = play.get_variable_manager()._inventory
            hosts = [host.name for host in inventory.get_hosts(play.hosts)]
        except Exception as exc:  # hosts then appear as their tasks start
            self._display.vvvv("dashboard: could not list the play's hosts: %s" % exc)
        self.emit({"type": "play_start", "play": play.get_name(), "hosts": hosts})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._tick()

    def v2_playbook_on_handler_task_start(self, task):
        self._tick()

    def v2_runner_on_start(self, host, task):
        event = {"type": "task_start", "host": host.get_name(), "task": _task_label(task), "task_uuid": task._uuid}
        if _is_bookkeeping(task):
            event["bookkeeping"] = True
        self.emit(event)

    def v2_runner_on_async_poll(self, result):
        res = _raw_result(result)
        sample = res.get(PROGRESS_KEY)
        if not isinstance(sample, dict):
            self._tick()  # an ordinary async task polled: still a moment to draw a pending frame
            return
        event = {"type": "progress", "host": result._host.get_name(), "task": _task_label(result._task),
                 "task_uuid": result._task._uuid, "item": res.get("_ansible_item_label")}
        event.update({key: sample.get(key) for key in FORWARDED_FIELDS})
        event["sample_ts"] = sample.get("ts")
        self.emit(event)

    def v2_runner_on_ok(self, result):
        self._task_event(result, "changed" if _raw_result(result).get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_event(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._task_event(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._task_event(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        for host in sorted(stats.processed):
            counts = stats.summarize(host)
            failed = counts.get("failures", 0) or counts.get("unreachable", 0)
            vm = self.board.vm(host)
            self.emit({"type": "vm_end", "host": host, "verdict": FAILED if failed else SUCCEEDED,
                       "msg": vm.error if failed else ""})
        self.emit({"type": "run_end"})
        self.close()

    # -- end of run -----------------------------------------------------------------------------

    def _register_exit_hook(self):
        if not self._exit_hook_wanted:
            return
        self._exit_hook_wanted = False  # once, even if the options restart the view
        atexit.register(self._at_exit)
        # SIGTERM (ansible-playbook re-raises it with the default action) and SIGHUP (the terminal or SSH
        # session of the run closed) end the process without atexit: end the run first, then let the
        # handler that was there do what it did.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                previous = signal.getsignal(signum)
                if previous == signal.SIG_IGN:
                    # Ignored on purpose (nohup ignores SIGHUP): the run goes on, so it is no end of the run.
                    continue
                signal.signal(signum, lambda number, frame, previous=previous: self._on_fatal_signal(
                    number, frame, previous))
            except (ValueError, OSError):  # not the main thread: atexit alone
                return

    def _on_fatal_signal(self, signum, frame, previous):
        try:
            self._at_exit()
        finally:
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

    def _at_exit(self):
        """ansible-playbook stopped early (Ctrl-C, q, a fatal error) and sent no stats: end the run here.
        VMs still running end as failed ("interrupted"), the reports are written and the terminal is given
        back (cursor, key mode) instead of being left as the last frame found it."""
        if self._finished or not self._started:
            return
        for host, vm in list(self.board.vms.items()):
            if vm.status == RUNNING:
                self.emit({"type": "vm_end", "host": host, "verdict": FAILED,
                           "msg": "interrupted: the run stopped during %s" % (vm.stage or "its first task")})
        self.emit({"type": "run_end", "interrupted": True})
        self.close()

    def close(self):
        self._stop_heartbeat()
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._view is not None:
                self._view.close()
            if self._events_fh is not None:
                self._events_fh.close()
                self._events_fh = None
            summary_path = self.get_option("summary_file")
            if summary_path:
                write_json_atomic(summary_path, self.board.summary())
            junit_path = self.get_option("junit_file")
            if junit_path:
                write_junit(junit_path, self.board)


def write_json_atomic(path, data):
    tmp = "%s.tmp" % path
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_junit(path, board: MigrationBoard):
    """One testsuite, one testcase per VM; a failed VM carries a <failure> with its error."""
    now = board.run_finished or board.last_update or time.time()
    vms = [board.vms[h] for h in sorted(board.vms)]
    failures = sum(1 for vm in vms if vm.status == FAILED)
    skipped = sum(1 for vm in vms if vm.status not in (FAILED, SUCCEEDED))
    suite = ET.Element("testsuite", {
        "name": "v2kvm.migrate", "tests": str(len(vms)), "failures": str(failures), "errors": "0",
        "skipped": str(skipped), "time": "%.3f" % ((now - board.run_started) if board.run_started else 0.0),
    })
    for vm in vms:
        case = ET.SubElement(suite, "testcase", {
            "name": untrusted(vm.host), "classname": "v2kvm.migrate.%s" % untrusted(vm.source_type or "vm"),
            "time": "%.3f" % vm.elapsed(now),
        })
        props = ET.SubElement(case, "properties")
        for key, value in (("vm_name", vm.name), ("source_name", vm.original_name), ("bytes", vm.total),
                           ("stage", vm.stage)):
            ET.SubElement(props, "property", {"name": key, "value": untrusted(value)})
        if vm.status == FAILED:
            # XML 1.0 cannot hold most control characters: escaped, the report always parses.
            error = untrusted(vm.error or "failed")
            failure = ET.SubElement(case, "failure", {"message": error[:500]})
            failure.text = error
        elif vm.status != SUCCEEDED:
            ET.SubElement(case, "skipped", {"message": "not finished (%s)" % vm.status})
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    tmp = "%s.tmp" % path
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
