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

import time

from ansible.plugins.callback import CallbackBase

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._ansible_events import AnsibleEventSource, ForwardsToSource
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._callback_options import option_vars, options_from_play
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._run_end_hook import register_end_hook
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import PublisherError
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_sink import WebSink, make_publisher
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_sampler import HAS_PSUTIL, missing_library

_NAME = "v2kvm.migrate.web"
_OPTION_VARS = option_vars(DOCUMENTATION)
_PUBLISHER_OPTIONS = ("url", "token", "host", "port", "allow_hosts", "auth_reads", "history", "linger", "log_file",
                      "run_label", "validate_certs", "ca_path")


class CallbackModule(ForwardsToSource, CallbackBase):
    """The event source with one sink: the publisher to the web dashboard."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = _NAME
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None, clock=time.time, live=True):
        super().__init__(display=display, options=options)
        self.source = AnsibleEventSource(clock=clock, display=self._display, name=_NAME)
        self.web = WebSink(warn=lambda text: self._display.warning("%s: %s" % (_NAME, text)))
        self.source.set_sinks([self.web])
        self._clock = clock
        self._started = False
        self._vars_read = False
        # live=False (tests): no heartbeat thread and no exit hook.
        self._heartbeat_wanted = live
        self._exit_hook_wanted = live

    def _start(self):
        # The publisher waits for the first play (_open): its variables may set the options.
        if self._started:
            return
        self._started = True
        if self._exit_hook_wanted:
            self._exit_hook_wanted = False
            register_end_hook(self._at_exit)

    def _open(self):
        """v2kvm_web_<option> read from the first play: the publisher starts and gets what waited."""
        with self.source.lock:
            self.web.open(self._start_publisher())
        if self.web.publisher is not None and self._heartbeat_wanted:
            # A batch left waiting goes from the heartbeat, without waiting for the next event.
            self.source.start_heartbeat(self.web.publisher.batcher.flush_interval)

    def _start_publisher(self):
        options = {name: self.get_option(name) for name in _PUBLISHER_OPTIONS}
        try:
            publisher = make_publisher(options, self._clock)
            where = publisher.start()
        except PublisherError as exc:
            self._display.warning("%s: %s" % (_NAME, exc))
            return None
        if options["url"] and not HAS_PSUTIL:
            self._display.warning("%s: %s The run reports to the dashboard without them."
                                  % (_NAME, missing_library("psutil", "the controller's CPU and memory")))
        self._display.display("%s: dashboard of this run at %s" % (_NAME, where))
        return publisher

    # -- callback methods -----------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        self._start()
        self.source.playbook_start(playbook)

    def v2_playbook_on_play_start(self, play):
        if not self._vars_read:
            self._vars_read = True
            options_from_play(self, play, _OPTION_VARS, _NAME)
            self._open()
        self._start()
        self.source.play_start(play)
