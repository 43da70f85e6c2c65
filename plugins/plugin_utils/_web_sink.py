# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web dashboard's sink: the run's events to a publisher (_web_publisher.py), embedded server or remote one.

The publisher starts when the first play has set the options (play variables may set them): events
before that wait here (the run's start, in practice). A batch left waiting is sent from the heartbeat,
and at the end of the run the publisher tells what the dashboard did not get.
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import EmbeddedPublisher, HttpPublisher

MAX_WAITING = 1000  # events kept until the first play has set the options (the run's start only, in practice)


def run_label(option: str, environ=None) -> str:
    """The run's label: the option, else the AWX job."""
    environ = os.environ if environ is None else environ
    if not option and environ.get("JOB_ID"):
        return "job %s" % environ["JOB_ID"]
    return option or ""


def make_publisher(options: dict, clock):
    """The publisher the options ask for (not started): HTTP to ``url``, else an embedded server."""
    label = run_label(options.get("run_label") or "")
    if options.get("url"):
        return HttpPublisher(options["url"], options.get("token") or "", run_label=label,
                             validate_certs=options.get("validate_certs"), ca_path=options.get("ca_path") or "",
                             clock=clock)
    return EmbeddedPublisher(
        host=options.get("host"), port=options.get("port"), history=options.get("history"),
        linger=options.get("linger"), log_file=options.get("log_file") or "", token=options.get("token") or "",
        auth_reads=options.get("auth_reads"), allow_hosts=options.get("allow_hosts") or [], run_label=label,
        clock=clock)


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


class WebSink(EventSink):
    """Publishes events once ``open()`` got a publisher; ``warn(text)`` tells the end-of-run warnings."""

    def __init__(self, warn):
        self.publisher = None
        self.opened = False
        self._waiting: list = []
        self._warn = warn

    def open(self, publisher) -> None:
        """The publisher (started), or None when it could not start: the run then goes on without it."""
        self.opened = True
        self.publisher = publisher
        waiting, self._waiting = self._waiting, []
        if publisher is not None:
            for event in waiting:
                publisher.publish(event)

    def event(self, event: dict) -> None:
        if self.publisher is not None:
            self.publisher.publish(event)
        elif not self.opened and len(self._waiting) < MAX_WAITING:
            self._waiting.append(event)

    def beat(self) -> None:
        # Events that arrive in a burst just before a long quiet task (its starts on every VM) would
        # otherwise wait in the batch until that task ends.
        if self.publisher is not None and self.publisher.due():
            self.publisher.flush()

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            for warning in publisher_warnings(self.publisher):
                self._warn(warning)
