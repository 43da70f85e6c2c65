# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: web
type: notification
short_description: Live web dashboard of the run (embedded server, or reports to a standalone one)
version_added: 0.2.0
description:
  - Sends the events of the migration dashboard (the same events the P(v2kvm.migrate.dashboard#callback)
    callback folds, see C(docs/dashboard.md)) to the web dashboard described in C(docs/web-dashboard.md).
  - Without O(url), starts an embedded dashboard server for this run in a child process and prints its
    address; the page lives as long as the run plus O(linger) seconds.
  - With O(url), POSTs the events to a standalone dashboard server (C(scripts/web_dashboard.py)) with
    O(token); many runs (AWX jobs, CI jobs) can report to one server.
  - Events are sent as they come, batched at most once per flush interval; a heartbeat thread sends a batch
    left waiting (for example the starts of a long task on every VM) without waiting for the next event. It
    never runs while Ansible forks a worker (see C(docs/dashboard.md)). The embedded server never writes to
    the terminal.
  - A backlog (events kept while a standalone server was away, up to 50000) is sent in order, in requests
    within the server's limits (5000 events, 1 MiB); an event too big on its own is dropped and counted in
    a warning at the end of the run.
  - Options with a variable can also be set as a play variable or an extra variable
    (C(-e v2kvm_web_allow_hosts=dash.example.com)); they are read when the first play starts, before the
    embedded server starts or the first event is sent.
  - Without a library it needs, the run goes on without the web dashboard and a warning names the library
    to install.
requirements:
  - aiohttp, prometheus-client and psutil (Python libraries, on the controller, for the embedded server;
    see C(requirements.txt))
  - psutil (Python library, on the controller) for the controller's CPU and memory in the dashboard
options:
  url:
    description: Address of a standalone dashboard server, for example V(https://dash.example.com:8765/).
    type: str
    env:
      - name: V2KVM_WEB_URL
    ini:
      - section: callback_v2kvm_web
        key: url
  token:
    description:
      - Write token of the standalone server; for the embedded server, the read token when O(auth_reads=true).
    type: str
    env:
      - name: V2KVM_WEB_TOKEN
    ini:
      - section: callback_v2kvm_web
        key: token
  host:
    description: Address the embedded server binds. The default serves this machine only.
    type: str
    default: 127.0.0.1
    env:
      - name: V2KVM_WEB_HOST
    ini:
      - section: callback_v2kvm_web
        key: host
  port:
    description: TCP port of the embedded server; V(0) picks a free port.
    type: int
    default: 8765
    env:
      - name: V2KVM_WEB_PORT
    ini:
      - section: callback_v2kvm_web
        key: port
  allow_hosts:
    description:
      - Names besides its address and C(localhost) the embedded server answers for in the C(Host) header
        (the names you open the page by, for example V(dash.example.com)); any other name gets HTTP 421, so a
        page of a foreign name that resolves to this machine cannot read it (DNS rebinding).
      - Only used by the embedded server; a standalone server takes C(--allow-host).
    type: list
    elements: str
    default: []
    env:
      - name: V2KVM_WEB_ALLOW_HOSTS
    vars:
      - name: v2kvm_web_allow_hosts
    ini:
      - section: callback_v2kvm_web
        key: allow_hosts
  auth_reads:
    description: The embedded server requires O(token) to read the API and the WebSocket.
    type: bool
    default: false
    env:
      - name: V2KVM_WEB_AUTH_READS
    ini:
      - section: callback_v2kvm_web
        key: auth_reads
  history:
    description: SQLite file of the run history of the embedded server (default in C(~/.local/state/v2kvm)).
    type: path
    env:
      - name: V2KVM_WEB_HISTORY
    ini:
      - section: callback_v2kvm_web
        key: history
  linger:
    description: Seconds the embedded server keeps serving the page after the run ends.
    type: float
    default: 0
    env:
      - name: V2KVM_WEB_LINGER
    ini:
      - section: callback_v2kvm_web
        key: linger
  log_file:
    description: File receiving the embedded server's own messages (nothing goes to the terminal).
    type: path
    env:
      - name: V2KVM_WEB_LOG_FILE
    ini:
      - section: callback_v2kvm_web
        key: log_file
  run_label:
    description: Free text shown next to the run (for example the CI job); defaults to the AWX job id if any.
    type: str
    env:
      - name: V2KVM_WEB_RUN_LABEL
    ini:
      - section: callback_v2kvm_web
        key: run_label
  validate_certs:
    description: Verify the standalone server's TLS certificate.
    type: bool
    default: true
    env:
      - name: V2KVM_WEB_VALIDATE_CERTS
    ini:
      - section: callback_v2kvm_web
        key: validate_certs
  ca_path:
    description: CA bundle (PEM) that signed the standalone server's certificate.
    type: path
    env:
      - name: V2KVM_WEB_CA_PATH
    ini:
      - section: callback_v2kvm_web
        key: ca_path
"""

import os
import time

from ansible.config.manager import ensure_type

from ansible_collections.v2kvm.migrate.plugins.callback.dashboard import CallbackModule as DashboardCallback
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import neutral, untrusted
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._fork_safe_heartbeat import Heartbeat
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import (
    EmbeddedPublisher, HttpPublisher, PublisherError)
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_sampler import HAS_PSUTIL, missing_library

MAX_WAITING = 1000  # events kept until the first play has set the options (the run's start only, in practice)


def _option_vars():
    """option name -> {var, type} for every option of this callback a play variable may set."""
    import yaml

    options = yaml.safe_load(DOCUMENTATION)["options"]
    return {name: {"var": spec["vars"][0]["name"], "type": spec.get("type", "str")}
            for name, spec in options.items() if spec.get("vars")}


_OPTION_VARS = _option_vars()


def publisher_warnings(publisher) -> list:
    """What the run tells at its end about events the dashboard did not get."""
    warnings = []
    if getattr(publisher, "disabled", ""):
        warnings.append(publisher.disabled)
    elif getattr(publisher, "failures", 0):
        warnings.append("%d sends to the dashboard failed (last: %s)" % (publisher.failures, publisher.last_error))
    oversize = getattr(publisher, "oversize", 0)
    if oversize:
        warnings.append("%d event%s too big for the web dashboard on %s own (over its request size limit): "
                        "dropped" % (oversize, " was" if oversize == 1 else "s were", "its" if oversize == 1
                                     else "their"))
    rejected = getattr(publisher, "rejected", 0)
    if rejected:
        warnings.append("the web dashboard refused %d events as bad input (last: %s)"
                        % (rejected, publisher.last_error))
    dropped = publisher.batcher.dropped
    if dropped:
        warnings.append("%d events were not sent to the web dashboard: more waited than the run keeps for it"
                        % dropped)
    return warnings


class CallbackModule(DashboardCallback):
    """The dashboard callback's event building, with the views replaced by a publisher."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "v2kvm.migrate.web"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None, clock=time.time):
        super().__init__(display=display, options=options, clock=clock)
        self.publisher = None
        self._result = None
        self._opened = False
        self._waiting = []

    def _start(self):
        # The publisher waits for the first play (_options_from_vars): its variables may set the options.
        if self._started:
            return
        self._started = True
        self._register_exit_hook()

    def _options_from_vars(self, play):
        """v2kvm_web_<option> from the play's vars, overridden by extra vars (-e); then the publisher starts."""
        try:
            found = dict(play.get_vars() or {})
            found.update(getattr(play.get_variable_manager(), "extra_vars", None) or {})
        except Exception as exc:  # no variables to read: the configured options stand
            self._display.vvvv("v2kvm.migrate.web: could not read play variables: %s" % exc)
            found = {}
        for option, spec in _OPTION_VARS.items():
            if spec["var"] in found:
                self.set_option(option, ensure_type(found[spec["var"]], spec["type"]))
        self._open()

    def _open(self):
        if self._opened:
            return
        self._opened = True
        with self._lock:
            self._open_publisher()
            waiting, self._waiting = self._waiting, []
            if self.publisher is not None:
                for event in waiting:
                    self.publisher.publish(event)

    def _open_publisher(self):
        label = self.get_option("run_label") or ""
        if not label and os.environ.get("JOB_ID"):
            label = "job %s" % os.environ["JOB_ID"]
        url = self.get_option("url")
        try:
            if url:
                publisher = HttpPublisher(url, self.get_option("token") or "", run_label=label,
                                          validate_certs=self.get_option("validate_certs"),
                                          ca_path=self.get_option("ca_path") or "", clock=self._clock)
            else:
                publisher = EmbeddedPublisher(
                    host=self.get_option("host"), port=self.get_option("port"), history=self.get_option("history"),
                    linger=self.get_option("linger"), log_file=self.get_option("log_file") or "",
                    token=self.get_option("token") or "", auth_reads=self.get_option("auth_reads"),
                    allow_hosts=self.get_option("allow_hosts") or [], run_label=label, clock=self._clock)
            where = publisher.start()
        except PublisherError as exc:
            self._display.warning("v2kvm.migrate.web: %s" % exc)
            return
        if url and not HAS_PSUTIL:
            self._display.warning("v2kvm.migrate.web: %s The run reports to the dashboard without them."
                                  % missing_library("psutil", "the controller's CPU and memory"))
        self.publisher = publisher
        self._display.display("v2kvm.migrate.web: dashboard of this run at %s" % where)
        if self._heartbeat_wanted:
            # Events that arrive in a burst just before a long quiet task (its starts on every VM) would
            # otherwise wait in the batch until that task ends.
            self._heartbeat = Heartbeat(self._send_pending, publisher.batcher.flush_interval)
            self._heartbeat.start()

    def _send_pending(self):
        with self._lock:
            if self.publisher is not None and not self._finished and self.publisher.due():
                self.publisher.flush()

    def emit(self, event: dict) -> None:
        event = neutral(event)
        event.setdefault("ts", self._clock())
        if self._result is not None:
            res = self._result._result
            delegated = res.get("_ansible_delegated_vars") or {}
            target = delegated.get("ansible_delegated_host") or delegated.get("ansible_host")
            if target:
                event["target"] = untrusted(target)
            if event.get("type") == "task_end" and isinstance(res.get("verdict"), dict):
                event["verdict"] = neutral(res["verdict"])
        with self._lock:
            self.board.apply(event)
            if self.publisher is not None:
                self.publisher.publish(event)
            elif not self._opened and len(self._waiting) < MAX_WAITING:
                self._waiting.append(event)

    def _task_event(self, result, status):
        self._result = result
        try:
            super()._task_event(result, status)
        finally:
            self._result = None

    def v2_runner_on_async_poll(self, result):
        self._result = result
        try:
            super().v2_runner_on_async_poll(result)
        finally:
            self._result = None

    def close(self):
        self._stop_heartbeat()
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self.publisher is not None:
                self.publisher.close()
                for warning in publisher_warnings(self.publisher):
                    self._display.warning("v2kvm.migrate.web: %s" % warning)
