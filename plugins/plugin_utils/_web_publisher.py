# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send the run's events (the dashboard's event model) to a web dashboard, with no thread of its own.

- ``EmbeddedPublisher`` starts the server (``_web_server.py --stdin``) as a child process with
  stdout/stderr away from the terminal and writes batches to its stdin through a NON-BLOCKING
  pipe, so a slow child never stalls the run: what does not fit waits for the next event.
- ``HttpPublisher`` POSTs batches to a standalone server's ``/api/ingest`` with the token, at
  most once per ``flush_interval`` (and at the end of the run), with a short timeout and backoff.

Both are called from the callback, in the controller's main thread or in its heartbeat thread, never
both at once (the callback's lock) and never while Ansible forks (see "A fork-safe heartbeat" in
docs/dashboard.md). Each batch carries one controller sample (CPU/memory/threads of this process)
taken at most once a second.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_sampler import ProcessSampler

SERVER_MODULE = "ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_server"
MAX_PENDING_BYTES = 16 << 20
MAX_BUFFERED_EVENTS = 50000
# Events worth sending at once: the page should not wait a flush interval for a failure or the end.
URGENT = ("task_end", "vm_end", "run_end", "run_start", "play_start")


class PublisherError(RuntimeError):
    """The dashboard could not start or be reached; the message says why and what to change."""


def new_run_id(environ=None) -> str:
    environ = os.environ if environ is None else environ
    prefix = "awx-%s-" % environ["JOB_ID"] if environ.get("JOB_ID", "").isdigit() else ""
    return (prefix + uuid.uuid4().hex[:12])[:64]


def collections_root() -> str | None:
    """The directory holding ``ansible_collections`` this code was imported from."""
    parents = [os.path.abspath(__file__)]
    for _level in range(6):
        parents.append(os.path.dirname(parents[-1]))
    # .../<root>/ansible_collections/v2kvm/migrate/plugins/plugin_utils/<this file>
    if os.path.basename(parents[5]) == "ansible_collections":
        return parents[6]
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry or ".", "ansible_collections", "v2kvm", "migrate")):
            return entry
    return None


class _Batcher:
    def __init__(self, run_id, name, label, flush_interval, clock):
        self.run = {"id": run_id, "name": name, "label": label}
        self.flush_interval = flush_interval
        self.events: list = []
        self.dropped = 0
        self._clock = clock
        self._last_flush = 0.0
        self._sampler = ProcessSampler()
        self._sampler.sample()
        self._last_sample = 0.0
        self._controller = None

    def add(self, event) -> bool:
        """Buffer one event; True when it is time to send."""
        if len(self.events) >= MAX_BUFFERED_EVENTS:
            if event.get("type") == "progress":
                self.dropped += 1
                return False
        self.events.append(event)
        now = self._clock()
        return event.get("type") in URGENT or now - self._last_flush >= self.flush_interval

    def due(self) -> bool:
        """Events wait, and the last send is at least one flush interval old."""
        return bool(self.events) and self._clock() - self._last_flush >= self.flush_interval

    def take(self) -> dict:
        now = self._clock()
        self._last_flush = now
        body = {"run": self.run, "events": self.events}
        if now - self._last_sample >= 1.0:
            self._controller = dict(self._sampler.sample(), pid=os.getpid())
            self._last_sample = now
            body["controller"] = self._controller
        self.events = []
        return body


class EmbeddedPublisher:
    def __init__(self, *, host="127.0.0.1", port=8765, history="", linger=0.0, log_file="", token="",
                 auth_reads=False, max_clients=100, run_name="", run_label="", flush_interval=0.25,
                 clock=time.time, start_timeout=20.0):
        self.batcher = _Batcher(new_run_id(), run_name, run_label, flush_interval, clock)
        self.url = ""
        self._pending = bytearray()
        self._proc = None
        self._fd = None
        self._args = {"host": host, "port": port, "history": history, "linger": linger, "log_file": log_file,
                      "token": token, "auth_reads": auth_reads, "max_clients": max_clients}
        self._start_timeout = start_timeout

    def start(self) -> str:
        a = self._args
        root = collections_root()
        if root is None:
            raise PublisherError("cannot find the ansible_collections directory of v2kvm.migrate to start the web "
                                 "dashboard server; install the collection or set ANSIBLE_COLLECTIONS_PATH")
        workdir = tempfile.mkdtemp(prefix="v2kvm-web-")
        ready = os.path.join(workdir, "ready.json")
        cmd = [sys.executable, "-m", SERVER_MODULE, "--stdin", "--host", a["host"], "--port", str(a["port"]),
               "--ready-file", ready, "--linger", str(a["linger"]), "--max-clients", str(a["max_clients"]),
               "--sample-pid", str(os.getpid()), "--restore-runs", "0"]
        cmd += ["--history", a["history"]] if a["history"] else []
        cmd += ["--auth-reads"] if a["auth_reads"] else []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        if a["token"]:
            env["V2KVM_WEB_TOKEN"] = a["token"]  # not in argv: other users can read argv in ps
        log = open(a["log_file"] or os.devnull, "ab")
        try:
            # stdin is the event pipe; the child never writes where Ansible draws the screen.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env,
                                          close_fds=True, cwd=workdir)
        finally:
            log.close()
        self._fd = self._proc.stdin.fileno()
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if os.path.exists(ready):
                with open(ready) as fh:
                    self.url = json.load(fh)["url"]
                os.unlink(ready)
                os.rmdir(workdir)
                return self.url
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self._abandon()
        raise PublisherError("the embedded web dashboard did not start on %s:%s (port in use? set port 0 for any "
                             "free port; log_file shows the server's error)" % (a["host"], a["port"]))

    def _abandon(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)
        self._proc = None

    def publish(self, event: dict) -> None:
        if self._proc is None:
            return
        if self.batcher.add(event):
            self.flush()

    def flush(self) -> None:
        if self._proc is None:
            return
        if self.batcher.events or not self._pending:
            line = json.dumps(self.batcher.take(), default=str, separators=(",", ":")) + "\n"
            if len(self._pending) > MAX_PENDING_BYTES:
                self.batcher.dropped += line.count('"type":"progress"')
            else:
                self._pending += line.encode("utf-8", "surrogateescape")
        self._drain()

    def _drain(self) -> None:
        while self._pending:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                return  # the child is busy: the rest goes with the next event
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    self._proc = None  # the server went away; the run goes on without it
                    return
                raise
            del self._pending[:written]

    def close(self) -> None:
        if self._proc is None:
            return
        self.flush()
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        try:
            if self._pending:
                os.write(self._fd, bytes(self._pending))
            self._proc.stdin.close()
        except OSError:
            pass
        # The child lingers on its own (option linger) so the page can be read after the run.
        self._proc = None


class HttpPublisher:
    def __init__(self, url: str, token: str, *, run_name="", run_label="", flush_interval=0.5, timeout=3.0,
                 validate_certs=True, ca_path="", clock=time.time, opener=None):
        if not token:
            raise PublisherError("a standalone web dashboard needs its token: set the callback's token option "
                                 "(V2KVM_WEB_TOKEN)")
        if not url.startswith(("http://", "https://")):
            raise PublisherError("the web dashboard url must start with http:// or https:// (got %r)" % url[:100])
        self.url = url.rstrip("/") + "/api/ingest"
        self.token = token
        self.timeout = timeout
        self.batcher = _Batcher(new_run_id(), run_name, run_label, flush_interval, clock)
        self._clock = clock
        self._retry_at = 0.0
        self._backoff = 0.0
        self.failures = 0
        self.last_error = ""
        self.disabled = ""
        self._tls = {"validate_certs": validate_certs, "ca_path": ca_path or None}
        self._opener = opener or open_url

    def start(self) -> str:
        return self.url[: -len("/api/ingest")] + "/"

    def publish(self, event: dict) -> None:
        if self.disabled:
            return
        if self.batcher.add(event) and self._clock() >= self._retry_at:
            self.flush()

    def flush(self) -> bool:
        if self.disabled or not self.batcher.events:
            return True
        events = self.batcher.events
        body = self.batcher.take()
        data = json.dumps(body, default=str, separators=(",", ":")).encode("utf-8", "surrogateescape")
        headers = {"Content-Type": "application/json", "Authorization": "Bearer %s" % self.token}
        try:
            # Proxies from the environment apply, as for any Ansible HTTP call; never a netrc login.
            with self._opener(self.url, data=data, headers=headers, method="POST", timeout=self.timeout,
                              use_netrc=False, **self._tls) as response:
                response.read()
            self._backoff = 0.0
            return True
        except urllib.error.HTTPError as exc:
            self.last_error = "HTTP %s: %s" % (exc.code, exc.read()[:300].decode("utf-8", "replace"))
            if exc.code in (401, 403):
                self.disabled = "the web dashboard refused the token (%s); this run stops reporting to it" % exc.code
                return False
            if exc.code == 400:
                return False  # the batch itself is bad: retrying would not help
            retry = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(retry) if retry and retry.isdigit() else None
        except (OSError, ValueError, UrlsConnectionError) as exc:
            self.last_error = str(exc)
            wait = None
        self.failures += 1
        # Keep the events for the next try (bounded by the batcher), waiting longer each time.
        self.batcher.events = (events + self.batcher.events)[-MAX_BUFFERED_EVENTS:]
        self._backoff = min(60.0, max(1.0, self._backoff * 2))
        self._retry_at = self._clock() + (wait if wait is not None else self._backoff)
        return False

    def close(self) -> None:
        # The end of the run: one last try now, whatever the backoff says.
        self._retry_at = 0.0
        self.flush()
