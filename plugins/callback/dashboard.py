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

import os
import sys
import signal
import time

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._ansible_events import AnsibleEventSource, ForwardsToSource
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._callback_options import option_vars, options_from_play
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._dashboard_view import CLOCK_REDRAW, LineView, TerminalView
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_log_sink import EventLogSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._report_sink import ReportSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._run_end_hook import register_end_hook

_CI_VARS = ("CI", "JOB_ID", "BUILD_ID", "TF_BUILD")
_OPTION_VARS = option_vars(DOCUMENTATION)


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


class CallbackModule(ForwardsToSource, CallbackBase):
    """The event source with the terminal or line view, the event log and the reports as its sinks."""

    CALLBACK_VERSION = 2.0
    # 'notification' so it can also be enabled beside another stdout callback; as stdout callback
    # ansible-core loads it by name whatever its type.
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "v2kvm.migrate.dashboard"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None, stream=None, clock=time.time, live=True):
        super().__init__(display=display, options=options)
        self.source = AnsibleEventSource(clock=clock, display=self._display, name="dashboard")
        self._clock = clock
        self._stream = stream
        self._view = None
        self._events_log = None
        self._started = False
        self._vars_read = False
        self._run_start = None
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

    def _make_view(self, mode):
        stream = self._stream or sys.stdout
        if mode == "terminal":
            return TerminalView(self.source.board, stream=stream, refresh_interval=self.get_option("refresh_interval"),
                                theme=self.get_option("theme"), keys=self.get_option("keys"), on_quit=self._quit,
                                clock=self._clock)
        if mode == "line":
            return LineView(self.source.board, stream=stream, interval=self.get_option("line_interval"),
                            clock=self._clock)
        return None

    def _start(self):
        if self._started:
            return
        self._started = True
        if self._exit_hook_wanted:
            self._exit_hook_wanted = False  # once, even if the options set the sinks up again
            register_end_hook(self._at_exit)
        mode = self._choose_mode()
        self._view = self._make_view(mode)
        path = self.get_option("events_file")
        self._events_log = EventLogSink(path) if path else None
        reports = ReportSink(self.source.board, summary_path=self.get_option("summary_file") or "",
                             junit_path=self.get_option("junit_file") or "")
        self.source.set_sinks(sink for sink in (self._events_log, self._view, reports) if sink is not None)
        if self._view is not None and self._heartbeat_wanted:
            self.source.start_heartbeat(min(self.get_option("refresh_interval"), CLOCK_REDRAW)
                                        if mode == "terminal" else 1.0)

    def _restart(self):
        """Only the run_start event has happened: set the view, the event log and the reports up again."""
        self.source.stop_heartbeat()
        with self.source.lock:
            for sink in self.source.sinks:
                sink.discard()
            self.source.set_sinks(())
        self._started = False
        self._start()
        if self._events_log is not None and self._run_start is not None:
            # The new event log must hold the whole run, run_start included.
            self._events_log.event(self._run_start)

    @staticmethod
    def _quit():
        # Exactly what Ctrl-C does: the controller forwards SIGINT to its workers, and a worker following
        # a background job stops it on the target before exiting (see docs/dashboard.md).
        os.kill(os.getpid(), signal.SIGINT)

    # -- callback methods -----------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._start()
        self._run_start = self.source.playbook_start(playbook)

    def v2_playbook_on_play_start(self, play):
        if not self._vars_read:
            self._vars_read = True
            if options_from_play(self, play, _OPTION_VARS, "dashboard") and self._started:
                self._restart()
        self._start()
        self.source.play_start(play)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.source.tick()

    def v2_playbook_on_handler_task_start(self, task):
        self.source.tick()
