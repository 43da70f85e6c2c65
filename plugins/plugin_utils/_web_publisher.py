# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send the run's events (the dashboard's event model) to a web dashboard, with no thread of its own.

- ``EmbeddedPublisher`` starts the server (``_web_server.py --stdin``) as a child process with
  stdout/stderr away from the terminal and writes batches to its stdin through a NON-BLOCKING
  pipe, so a slow child never stalls the run: what does not fit waits for the next event or the
  callback's heartbeat (``due()``). Lines are cut to the limits the server parses at once.
- ``HttpPublisher`` POSTs batches to a standalone server's ``/api/ingest`` with the token, at
  most once per ``flush_interval`` (and at the end of the run), with a short timeout and backoff.
  What waits (up to ``MAX_BUFFERED_EVENTS`` after an outage) goes in order, in requests within the
  server's limits (``MAX_BATCH_EVENTS`` events, ``MAX_BATCH_BYTES`` bytes); a 413 for a too-big
  request cuts it (and what follows) to the limit the server names, or to half its size, and only an
  event too big on its own is dropped (counted in ``oversize``).

Both are called from the callback, in the controller's main thread or in its heartbeat thread, never
both at once (the callback's lock) and never while Ansible forks (see "A fork-safe heartbeat" in
docs/dashboard.md). A controller sample (CPU/memory/threads of this process, psutil) goes with a
batch at most once a second.
"""

from __future__ import annotations

import collections
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

from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_sampler import (
    ProcessSampler, missing_server_libraries)

SERVER_MODULE = "ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_server"
MAX_PENDING_BYTES = 16 << 20
MAX_BUFFERED_EVENTS = 50000
# The server's limits for one request (_web_ingest.MAX_EVENTS, _web_server.MAX_BODY) and one --stdin line
# (its reader's limit); a test checks they agree.
MAX_BATCH_EVENTS = 5000
MAX_BATCH_BYTES = 1 << 20
MAX_LINE_BYTES = 4 << 20
FLUSH_SECONDS = 2.0  # a backlog is sent for at most this long per flush during the run (the rest: next flush)
# Events worth sending at once: the page should not wait a flush interval for a failure or the end.
URGENT = ("task_end", "vm_end", "run_end", "run_start", "play_start")


class PublisherError(RuntimeError):
    """The dashboard could not start or be reached; the message says why and what to change."""


def new_run_id(environ=None) -> str:
    environ = os.environ if environ is None else environ
    prefix = "awx-%s-" % environ["JOB_ID"] if environ.get("JOB_ID", "").isdigit() else ""
    return (prefix + uuid.uuid4().hex[:12])[:64]


def encode(value) -> bytes:
    return json.dumps(value, default=str, separators=(",", ":")).encode("utf-8", "surrogateescape")


def envelope(run: dict, controller) -> tuple[bytes, bytes]:
    """The bytes before and after the comma-separated events of one batch ``{run, events, controller}``."""
    head = b'{"run":' + encode(run) + b',"events":['
    tail = b'],"controller":' + encode(controller) + b"}" if controller is not None else b"]}"
    return head, tail


def pack(items: list, max_events: int, max_bytes: int, overhead: int) -> list[list]:
    """Consecutive ``(event, encoded)`` items cut into batches of at most ``max_events`` items whose body
    (``overhead`` + the encoded events and their commas) is at most ``max_bytes``, in order. An item too big
    on its own gets a batch of its own."""
    batches, current, size = [], [], overhead
    for item in items:
        cost = len(item[1]) + (1 if current else 0)
        if current and (len(current) >= max_events or size + cost > max_bytes):
            batches.append(current)
            current, size, cost = [], overhead, len(item[1])
        current.append(item)
        size += cost
    if current:
        batches.append(current)
    return batches


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

    def take(self) -> tuple[list, dict | None]:
        """The waiting events and, at most once a second, a controller sample to send with them."""
        now = self._clock()
        self._last_flush = now
        controller = None
        if now - self._last_sample >= 1.0:
            self._controller = controller = dict(self._sampler.sample(), pid=os.getpid())
            self._last_sample = now
        events, self.events = self.events, []
        return events, controller

    def put_back(self, events: list) -> None:
        """Events not sent go before the newer ones, within the bound (the oldest beyond it are dropped, counted)."""
        events = events + self.events
        over = len(events) - MAX_BUFFERED_EVENTS
        if over > 0:
            self.dropped += over
            events = events[over:]
        self.events = events


class EmbeddedPublisher:
    def __init__(self, *, host="127.0.0.1", port=8765, history="", linger=0.0, log_file="", token="",
                 auth_reads=False, max_clients=100, run_name="", run_label="", flush_interval=0.25,
                 clock=time.time, start_timeout=20.0, allow_hosts=()):
        self.batcher = _Batcher(new_run_id(), run_name, run_label, flush_interval, clock)
        self.url = ""
        self._pending = bytearray()
        self._proc = None
        self._fd = None
        self._args = {"host": host, "port": port, "history": history, "linger": linger, "log_file": log_file,
                      "token": token, "auth_reads": auth_reads, "max_clients": max_clients,
                      "allow_hosts": [str(name).strip() for name in allow_hosts if str(name).strip()]}
        self._start_timeout = start_timeout
        self.oversize = 0

    def start(self) -> str:
        a = self._args
        missing = missing_server_libraries()
        if missing:
            raise PublisherError("the embedded web dashboard cannot start: %s" % " ".join(missing))
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
        for name in a["allow_hosts"]:
            cmd.append("--allow-host=%s" % name)  # one argument: a name cannot pass for an option
        env = dict(os.environ)
        # The option (from env, ini or a variable) is the whole list: the server must not add the variable's.
        env.pop("V2KVM_WEB_ALLOW_HOSTS", None)
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

    def due(self) -> bool:
        """Something to send now: events that waited a flush interval, or bytes the pipe did not take yet."""
        return self._proc is not None and (self.batcher.due() or bool(self._pending))

    def publish(self, event: dict) -> None:
        if self._proc is None:
            return
        if self.batcher.add(event):
            self.flush()

    def flush(self) -> None:
        if self._proc is None:
            return
        if self.batcher.events or not self._pending:
            events, controller = self.batcher.take()
            head, tail = envelope(self.batcher.run, controller)
            items = [(event, encode(event)) for event in events]
            # Lines within what the server parses at once (the same limits as over HTTP).
            for batch in pack(items, MAX_BATCH_EVENTS, MAX_BATCH_BYTES, len(head) + len(tail)):
                line = head + b",".join(data for _event, data in batch) + tail + b"\n"
                if len(line) > MAX_LINE_BYTES:
                    self.oversize += len(batch)  # one event too big for the server's reader
                elif len(self._pending) > MAX_PENDING_BYTES:
                    self.batcher.dropped += len(batch)  # the child does not keep up: counted, warned at the end
                else:
                    self._pending += line
        self._drain()

    def _drain(self) -> None:
        while self._pending:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                return  # the child is busy: the rest goes with the next event or heartbeat (due())
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
                 validate_certs=True, ca_path="", clock=time.time, opener=None, max_batch_bytes=MAX_BATCH_BYTES,
                 max_batch_events=MAX_BATCH_EVENTS):
        if not token:
            raise PublisherError("a standalone web dashboard needs its token: set the callback's token option "
                                 "(V2KVM_WEB_TOKEN)")
        if not url.startswith(("http://", "https://")):
            raise PublisherError("the web dashboard url must start with http:// or https:// (got %r)" % url[:100])
        self.url = url.rstrip("/") + "/api/ingest"
        self.token = token
        self.timeout = timeout
        self.batcher = _Batcher(new_run_id(), run_name, run_label, flush_interval, clock)
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_events = max_batch_events
        self._clock = clock
        self._retry_at = 0.0
        self._backoff = 0.0
        self.failures = 0
        self.requests = 0
        self.oversize = 0  # events too big for the server on their own (413 alone): dropped
        self.rejected = 0  # events of batches the server refused as bad input (400): dropped
        self.last_error = ""
        self.disabled = ""
        self._tls = {"validate_certs": validate_certs, "ca_path": ca_path or None}
        self._opener = opener or open_url

    def start(self) -> str:
        return self.url[: -len("/api/ingest")] + "/"

    def due(self) -> bool:
        """Events that waited a flush interval, and no backoff in the way."""
        return not self.disabled and self.batcher.due() and self._clock() >= self._retry_at

    def publish(self, event: dict) -> None:
        if self.disabled:
            return
        if self.batcher.add(event):
            self.flush()

    def flush(self, budget: float | None = FLUSH_SECONDS) -> bool:
        """Send what waits, in order, in batches within the server's limits; False when some of it must wait
        (the server is away: backoff; or the ``budget`` of seconds is spent: the next flush goes on)."""
        if self.disabled or not self.batcher.events:
            return True
        if self._clock() < self._retry_at:
            return False
        events, controller = self.batcher.take()
        head, tail = envelope(self.batcher.run, controller)
        items = [(event, encode(event)) for event in events]
        queue = collections.deque(pack(items, self.max_batch_events, self.max_batch_bytes, len(head) + len(tail)))
        started = time.monotonic()
        while queue:
            if budget is not None and time.monotonic() - started > budget:
                self.batcher.put_back([event for batch in queue for event, _data in batch])
                return False
            batch = queue.popleft()
            data = head + b",".join(encoded for _event, encoded in batch) + tail
            outcome, wait = self._post(data)
            if outcome == "sent":
                if controller is not None:  # the sample went with the first batch
                    controller = None
                    head, tail = envelope(self.batcher.run, None)
            elif outcome == "too_big":
                if len(batch) == 1:
                    self.oversize += 1
                    continue
                # _post lowered the limits: this batch and the rest again, cut to them.
                rest = batch + [item for later in queue for item in later]
                queue = collections.deque(pack(rest, self.max_batch_events, self.max_batch_bytes,
                                               len(head) + len(tail)))
            elif outcome == "bad":
                self.rejected += len(batch)  # the batch itself is bad: retrying would not help
            elif outcome == "stop":
                return False
            else:
                # Keep the events for the next try (bounded by the batcher), waiting longer each time.
                self.failures += 1
                self.batcher.put_back([event for event, _data in batch] +
                                      [event for rest in queue for event, _data in rest])
                self._backoff = min(60.0, max(1.0, self._backoff * 2))
                self._retry_at = self._clock() + (wait if wait is not None else self._backoff)
                return False
        self._backoff = 0.0
        return True

    def _post(self, data: bytes) -> tuple[str, float | None]:
        """(sent | too_big | bad | stop | retry, seconds the server asks to wait)."""
        headers = {"Content-Type": "application/json", "Authorization": "Bearer %s" % self.token}
        self.requests += 1
        try:
            # Proxies from the environment apply, as for any Ansible HTTP call; never a netrc login.
            with self._opener(self.url, data=data, headers=headers, method="POST", timeout=self.timeout,
                              use_netrc=False, **self._tls) as response:
                response.read()
            return "sent", None
        except urllib.error.HTTPError as exc:
            text = exc.read()[:2000].decode("utf-8", "replace")
            self.last_error = "HTTP %s: %s" % (exc.code, text[:300])
            if exc.code in (401, 403):
                self.disabled = "the web dashboard refused the token (%s); this run stops reporting to it" % exc.code
                return "stop", None
            if exc.code == 400:
                return "bad", None
            if exc.code == 413:
                return self._too_big(len(data), text)
            retry = exc.headers.get("Retry-After") if exc.headers else None
            return "retry", float(retry) if retry and retry.isdigit() else None
        except (OSError, ValueError, UrlsConnectionError) as exc:
            self.last_error = str(exc)
            return "retry", None

    def _too_big(self, size: int, text: str) -> tuple[str, None]:
        try:
            answer = json.loads(text)
        except ValueError:  # a proxy's own page: its limit is below this request
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if answer.get("reason") == "run_full" or str(answer.get("error", "")).startswith("run full"):
            self.disabled = ("the web dashboard holds no more events for this run (%s); this run stops reporting "
                             "to it" % str(answer.get("error", ""))[:300])
            return "stop", None
        # From now on batches are cut to the limit the server names, or else (a proxy's limit) to half of what
        # it refused: a few requests find the limit, and a batch is never refused twice at the same size.
        limit = answer.get("max_bytes")
        if not (isinstance(limit, int) and 0 < limit < size):
            limit = size // 2
        self.max_batch_bytes = min(self.max_batch_bytes, limit)
        limit = answer.get("max_events")
        if isinstance(limit, int) and limit > 0:
            self.max_batch_events = min(self.max_batch_events, limit)
        return "too_big", None

    def close(self) -> None:
        # The end of the run: everything left, now, whatever the backoff says.
        self._retry_at = 0.0
        self.flush(budget=None)
