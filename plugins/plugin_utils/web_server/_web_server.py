# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The web dashboard server (aiohttp): the page, a REST API, WebSocket deltas, Prometheus metrics.

Two modes, same code (docs/web-dashboard.md):

- standalone: ``scripts/web_dashboard.py`` (or ``python -m`` this module); runs POST their events
  to ``/api/ingest`` with the write token.
- embedded: the ``v2kvm.migrate.web`` callback starts this module in a child process with
  ``--stdin``; events arrive as JSON lines on stdin and the process ends (after ``--linger``) when
  the run closes the pipe. The child never shares the terminal with Ansible.

Secure by default: binds 127.0.0.1, writes always need the token, reads need it with
``--auth-reads``, WebSocket Origin must be this server (or ``--allow-origin``), at most
``--max-clients`` WebSocket clients, ingest is rate limited, TLS with ``--tls-cert``/``--tls-key``,
a ``Host`` other than its address, localhost or ``--allow-host`` gets 421 (DNS rebinding). What ingest
accepts (strict JSON, a typed schema, whole batches) is ``_web_ingest.py``; the per-run caps are the hub's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hmac
import ipaddress
import json
import os
import secrets
import signal
import ssl
import sys
import time
import traceback
import urllib.parse

from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_history import History
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_hub import MAX_RUN_EVENTS, Hub, RunFullError
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_ingest import (
    MAX_EVENTS, IngestError, loads, parse_batch, show)
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import RUNNING
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_sampler import (
    ProcessSampler, missing_server_libraries)

try:
    from aiohttp import WSMsgType, web
    HAS_AIOHTTP = True
except ImportError:  # main() and the callback name what to install; the server cannot start without it
    HAS_AIOHTTP = False

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
    HAS_PROMETHEUS = True
except ImportError:  # as for aiohttp
    HAS_PROMETHEUS = False
    Collector = object

_middleware = web.middleware if HAS_AIOHTTP else (lambda func: func)


MAX_BODY = 1 << 20  # bytes of one ingest request (the publisher splits its backlog to fit, _web_publisher.py)
MAX_LINE = 4 << 20  # bytes of one --stdin line (embedded mode); the publisher cuts its lines to fit
MAX_JOB_SERIES = 1000  # running jobs with series of their own in /metrics: bounded, whatever a publisher sends
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_static")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_RATE_KEYS = 4096
REFUSED_CLOSE_CODE = 4429  # private range: "too many clients", the page shows the reason and backs off
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def default_history_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "v2kvm", "web-history.sqlite3")


class Config:
    def __init__(self, **kwargs):
        self.host = "127.0.0.1"
        self.port = 8765
        self.token = ""
        self.auth_reads = False
        self.allow_origins: list[str] = []
        self.max_clients = 100
        self.interval = 1.0
        self.heartbeat = 10.0
        self.history = default_history_path()
        self.keep_runs = 200
        self.tls_cert = ""
        self.tls_key = ""
        self.ingest = True
        self.ingest_rate = 20.0  # requests per second per client address
        self.ingest_burst = 40
        self.stdin = False
        self.linger = 0.0
        self.ready_file = ""
        self.sample_pid = 0
        self.restore_runs = 20
        self.allow_hosts: list[str] = []
        self.max_run_events = MAX_RUN_EVENTS
        for key, value in kwargs.items():
            if not hasattr(self, key):
                raise TypeError("unknown web dashboard setting %r" % key)
            setattr(self, key, value)

    def validate(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together: give both (PEM files) or neither")
        if self.auth_reads and not self.token:
            raise SystemExit("--auth-reads needs a token: pass --token-file or set V2KVM_WEB_TOKEN")
        if self.max_clients < 1:
            raise SystemExit("--max-clients must be at least 1")
        if self.interval <= 0:
            raise SystemExit("--interval must be a positive number of seconds")
        if self.max_run_events < 1:
            raise SystemExit("--max-run-events must be at least 1")


class TokenBucket:
    """Per-address buckets, at most ``max_keys`` of them: one per address ever seen would grow without end.
    A bucket idle long enough to be full again is the same as none and goes first; past the cap the
    least recently used goes (that address starts again with a full burst)."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic, max_keys: int = MAX_RATE_KEYS):
        self.rate, self.burst, self._clock, self.max_keys = rate, burst, clock, max_keys
        self.buckets: collections.OrderedDict = collections.OrderedDict()

    def allow(self, key: str) -> float:
        """0 when allowed, else the seconds to wait before the next try."""
        now = self._clock()
        tokens, last = self.buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate if self.rate > 0 else 60.0
        self.buckets[key] = (tokens, now)  # at the end: the order is least recently used first
        if len(self.buckets) > self.max_keys:
            self._prune(now)
        return wait

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate if self.rate > 0 else float("inf")
        while self.buckets:
            oldest_key, (_tokens, last) = next(iter(self.buckets.items()))
            if now - last < refill and len(self.buckets) <= self.max_keys // 2:
                break
            del self.buckets[oldest_key]


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header  # a bare name, or a bare IPv6 address (several colons)


def _ip(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _binds_all(host: str) -> bool:
    address = _ip(host)
    return not host or (address is not None and address.is_unspecified)


class Stats:
    def __init__(self):
        self.ingest_requests = 0
        self.ingest_rejected = 0
        self.ws_refused = 0
        self.ws_messages = 0
        self.auth_failures = 0
        self.host_refused = 0


class DashboardServer:
    def __init__(self, config: Config, history: History | None = None, clock=time.time):
        self.config = config
        self.history = history if history is not None else (History(config.history, config.keep_runs)
                                                            if config.history else None)
        self.hub = Hub(self.history, clock=clock, max_run_events=config.max_run_events)
        self.clients: set = set()
        self.stats = Stats()
        self.limiter = TokenBucket(config.ingest_rate, config.ingest_burst)
        self.allowed_hosts = {host_name(name) for name in (config.host, *LOCAL_NAMES, *config.allow_hosts)}
        self.sampler = ProcessSampler(config.sample_pid) if config.sample_pid else None
        # One registry per server (never the process-wide default one): the hub's metrics and this process's.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HubCollector(self))
        ProcessCollector(registry=self.registry)
        self.started = time.time()
        self._tasks: list = []

    # -- app --------------------------------------------------------------------------------------

    def make_app(self):
        app = web.Application(middlewares=[self._headers, self._host_check, self._auth], client_max_size=MAX_BODY)
        app.router.add_get("/", self.page)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/api/metrics", self.api_metrics)
        app.router.add_get("/api/jobs", self.api_jobs)
        app.router.add_get("/api/jobs/{id}", self.api_job)
        app.router.add_get("/api/runs", self.api_runs)
        app.router.add_get("/api/runs/{id}", self.api_run)
        app.router.add_post("/api/ingest", self.api_ingest)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app):
        self.hub.restore(self.config.restore_runs)
        self._tasks.append(asyncio.ensure_future(self._ticker()))

    async def _on_shutdown(self, app):
        for ws in list(self.clients):
            await ws.close(code=1001, message=b"server shutting down")

    async def _on_cleanup(self, app):
        for task in self._tasks:
            task.cancel()
        if self.history is not None:
            self.history.close()

    # -- middlewares ------------------------------------------------------------------------------

    @_middleware
    async def _headers(self, request, handler):
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _host_ok(self, request) -> bool:
        header = request.headers.get("Host")
        if header is None:
            return True  # HTTP/1.0 without Host: not a browser, so not DNS rebinding
        name = host_name(header)
        if name in self.allowed_hosts:
            return True
        # Bound to every address: the machine's own addresses are not known here, and an IP literal
        # cannot be a DNS-rebinding name (the attack needs a name the attacker's DNS answers for).
        return _binds_all(self.config.host) and _ip(name) is not None

    @_middleware
    async def _host_check(self, request, handler):
        if not self._host_ok(request):
            self.stats.host_refused += 1
            return web.json_response(
                {"error": "this server does not answer for the name %s (Host header): open it by its address or "
                          "localhost, or start it with --allow-host NAME for the name you use"
                          % show(request.headers.get("Host", ""))}, status=421)
        return await handler(request)

    def _token_ok(self, request) -> bool:
        if not self.config.token:
            return False
        given = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].strip()
        elif request.path == "/ws":
            # Browsers cannot set headers on a WebSocket: the page passes the token as a query parameter.
            given = request.query.get("token", "")
        try:
            # Header bytes that are not UTF-8 arrive as surrogates: they cannot be the token.
            given_bytes = given.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(given_bytes, self.config.token.encode("utf-8", "surrogateescape"))

    @_middleware
    async def _auth(self, request, handler):
        path = request.path
        public = path in ("/", "/healthz") or path.startswith("/static/")
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if write or (self.config.auth_reads and not public):
            if not self._token_ok(request):
                self.stats.auth_failures += 1
                why = ("this server accepts no writes over HTTP (embedded mode)" if write and not self.config.token
                       else "missing or wrong token: send 'Authorization: Bearer <token>' (the page: add "
                            "#token=<token> to its address)")
                return web.json_response({"error": why}, status=401, headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    # -- pages and REST ---------------------------------------------------------------------------

    async def page(self, request):
        return web.FileResponse(os.path.join(STATIC, "index.html"), headers={"Cache-Control": "no-store"})

    def _history_kind(self) -> str:
        if self.history is None:
            return "off"
        if self.history.path == ":memory:":
            return "memory"
        return "sqlite-" + self.history.journal_mode()

    def _health(self) -> dict:
        return {"status": "ok", "pid": os.getpid(), "uptime": round(time.time() - self.started, 1),
                "clients": len(self.clients),
                "max_clients": self.config.max_clients, "runs": len(self.hub.runs),
                "last_event": self.hub.last_event, "events": self.hub.events_total,
                "history": self._history_kind(),
                "auth_reads": self.config.auth_reads, "interval": self.config.interval}

    async def healthz(self, request):
        return web.json_response({"status": "ok", "uptime": round(time.time() - self.started, 1)})

    async def api_metrics(self, request):
        return web.json_response({"metrics": self.hub.metrics(), "controller": self.hub.controller(),
                                  "health": self._health()})

    async def api_jobs(self, request):
        jobs = self.hub.all_jobs()
        status, text, run = request.query.get("status"), request.query.get("q", "").lower(), request.query.get("run")
        if status:
            jobs = [j for j in jobs if j.get("status") == status]
        if run:
            jobs = [j for j in jobs if j["run"] == run]
        if text:
            jobs = [j for j in jobs if text in (j.get("host", "") + " " + j.get("name", "")).lower()]
        return web.json_response({"jobs": jobs, "count": len(jobs)})

    async def api_job(self, request):
        detail = self.hub.job_detail(request.match_info["id"])
        if detail is None:
            return web.json_response({"error": "no job with id %s" % request.match_info["id"]}, status=404)
        return web.json_response(detail, dumps=_dumps)

    async def api_runs(self, request):
        live = {r.id: r.info() for r in self.hub.runs.values()}
        stored = self.history.runs(200) if self.history is not None else []
        runs = [dict(info, live=info["id"] in live) for info in stored]
        runs += [dict(info, live=True) for rid, info in live.items() if rid not in {r["id"] for r in stored}]
        return web.json_response({"runs": runs})

    async def api_run(self, request):
        run_id = request.match_info["id"]
        live = self.hub.runs.get(run_id)
        stored = self.history.run(run_id) if self.history is not None else None
        if live is None and stored is None:
            return web.json_response({"error": "no run with id %s" % run_id}, status=404)
        data = dict(stored or {}, **(live.info() if live else {}))
        data["summary"] = live.board.summary() if live else stored.get("summary")
        return web.json_response(data, dumps=_dumps)

    def ingest_batch(self, data) -> int:
        """Validate one batch (bytes of ``{run, events, controller}``) whole, check the run's room, then fold it."""
        batch = parse_batch(data)
        self.hub.check_room(batch.run_id, batch.events, batch.hosts())
        return self.hub.ingest(batch.run_id, batch.events, name=batch.name, label=batch.label,
                               controller=batch.controller)

    async def api_ingest(self, request):
        self.stats.ingest_requests += 1
        if not self.config.ingest:
            return web.json_response({"error": "ingest is off on this server"}, status=403)
        wait = self.limiter.allow(request.remote or "?")
        if wait:
            self.stats.ingest_rejected += 1
            return web.json_response({"error": "rate limit: at most %g requests/s, retry in %.1f s"
                                      % (self.config.ingest_rate, wait)}, status=429,
                                     headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        if (request.content_length or 0) > MAX_BODY:
            return self._too_big(request.content_length)
        try:
            count = self.ingest_batch(await request.read())
        except web.HTTPRequestEntityTooLarge:  # a body without Content-Length that grew past the limit
            return self._too_big(None)
        except RunFullError as exc:
            self.stats.ingest_rejected += 1
            # "reason" tells the publisher that smaller batches would not help (unlike "too_big").
            return web.json_response({"error": "run full: %s" % exc, "reason": "run_full"}, status=413)
        except IngestError as exc:
            self.stats.ingest_rejected += 1
            return web.json_response({"error": "bad ingest request: %s" % exc}, status=400)
        return web.json_response({"accepted": count}, status=202)

    def _too_big(self, size):
        self.stats.ingest_rejected += 1
        return web.json_response(
            {"error": "batch too big (%s bytes): at most %d bytes and %d events per request; send the events in "
                      "smaller batches (the publisher of v2kvm.migrate splits its own)"
                      % (size if size is not None else "more than %d" % MAX_BODY, MAX_BODY, MAX_EVENTS),
             "reason": "too_big", "max_bytes": MAX_BODY, "max_events": MAX_EVENTS}, status=413)

    # -- WebSocket --------------------------------------------------------------------------------

    def _origin_ok(self, request) -> bool:
        origin = request.headers.get("Origin")
        if not origin:
            return True  # not a browser: a browser always sends Origin on a WebSocket handshake
        if origin in self.config.allow_origins:
            return True
        parsed = urllib.parse.urlsplit(origin)
        scheme = "https" if request.secure else "http"
        return parsed.scheme == scheme and parsed.netloc.lower() == (request.host or "").lower()

    async def websocket(self, request):
        if not self._origin_ok(request):
            self.stats.ws_refused += 1
            return web.json_response({"error": "WebSocket from origin %s refused: open the page from this server "
                                      "or start it with --allow-origin" % request.headers.get("Origin")},
                                     status=403)
        ws = web.WebSocketResponse(heartbeat=self.config.heartbeat, compress=False, max_msg_size=4096)
        await ws.prepare(request)
        if len(self.clients) >= self.config.max_clients:
            self.stats.ws_refused += 1
            await ws.send_str(json.dumps({"type": "refused", "reason": "too many clients: this server serves at "
                                          "most %d at once (--max-clients)" % self.config.max_clients}))
            await ws.close(code=REFUSED_CLOSE_CODE, message=b"too many clients")
            return ws
        self.clients.add(ws)
        try:
            await ws.send_str(_dumps(self._snapshot()))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self.stats.ws_messages += 1
                try:
                    kind = loads(msg.data, max_depth=2).get("type")
                except (IngestError, AttributeError):
                    continue
                if kind == "snapshot":
                    await ws.send_str(_dumps(self._snapshot()))
                elif kind == "ping":
                    await ws.send_str('{"type":"pong"}')
        finally:
            self.clients.discard(ws)
        return ws

    def _snapshot(self) -> dict:
        snap = self.hub.snapshot()
        snap["health"] = self._health()
        return snap

    async def _ticker(self):
        while True:
            await asyncio.sleep(self.config.interval)
            try:
                await self.broadcast_tick()
            except Exception:  # a bad tick must not stop the pushes; the traceback goes to the log
                traceback.print_exc()

    async def broadcast_tick(self):
        if self.sampler is not None:
            self.hub.set_controller(self.sampler.sample())
        delta = self.hub.tick()
        delta["health"] = self._health()
        if not self.clients:
            return
        data = _dumps(delta)
        await asyncio.gather(*(self._send(ws, data) for ws in list(self.clients)))

    async def _send(self, ws, data):
        try:
            await asyncio.wait_for(ws.send_str(data), timeout=5)
        except Exception:  # a client that cannot keep up is dropped; it reconnects and gets a snapshot
            self.clients.discard(ws)
            await ws.close(code=1011, message=b"too slow")

    # -- Prometheus -------------------------------------------------------------------------------

    async def prometheus(self, request):
        return web.Response(body=generate_latest(self.registry), headers={
            "Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    # -- embedded feed ----------------------------------------------------------------------------

    async def read_stdin(self, stop: asyncio.Event):
        """JSON lines (same body as /api/ingest) from the run; EOF means the run is over."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line past the reader's limit: dropped, the next line is read
                print("web dashboard: dropped a batch from the run longer than %d bytes" % MAX_LINE,
                      file=sys.stderr, flush=True)
                continue
            if not line:
                break
            try:
                self.ingest_batch(line)
            except IngestError as exc:
                print("web dashboard: dropped a bad batch from the run: %s" % exc, file=sys.stderr, flush=True)
            except Exception:  # a bug must not stop the feed: log it and read on
                traceback.print_exc()
                sys.stderr.flush()
        await self.broadcast_tick()
        await asyncio.sleep(self.config.linger)
        stop.set()


class HubCollector(Collector):
    """The dashboard's state as Prometheus metric families, read from the hub at each scrape.

    Label values (run names and labels, host names) come from publishers: prometheus_client escapes them."""

    def __init__(self, server: DashboardServer):
        self.server = server

    def collect(self):
        server, hub = self.server, self.server.hub
        m = hub.metrics()
        jobs = GaugeMetricFamily("v2kvm_jobs", "Migration jobs (VMs) known to this dashboard, by status.",
                                 labels=["status"])
        for status, key in (("running", "active"), ("succeeded", "completed"), ("failed", "failed"),
                            ("pending", "queued")):
            jobs.add_metric([status], m[key])
        yield jobs
        gauges = (
            ("v2kvm_data_processed_bytes", "Bytes converted so far by the runs in view.", m["data_processed"]),
            ("v2kvm_average_throughput_bytes_per_second", "Bytes moved / time spent moving them.",
             m["average_throughput"] or 0),
            ("v2kvm_runs", "Runs in view.", m["runs"]),
            ("v2kvm_websocket_clients", "Connected WebSocket clients.", len(server.clients)),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(name, text, value=value)
        stats = server.stats
        counters = (
            ("v2kvm_events_ingested_total", "Events folded since start.", hub.events_total),
            ("v2kvm_ingest_requests_total", "Ingest requests received.", stats.ingest_requests),
            ("v2kvm_ingest_rejected_total", "Ingest requests refused (rate, bad input, too big, run full).",
             stats.ingest_rejected),
            ("v2kvm_websocket_refused_total", "WebSocket clients refused (cap, origin).", stats.ws_refused),
            ("v2kvm_auth_failures_total", "Requests refused for a missing or wrong token.", stats.auth_failures),
            ("v2kvm_host_refused_total", "Requests refused for a Host name not allowed (421).", stats.host_refused),
        )
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=value)
        ctl = hub.controller()
        if ctl.get("cpu_percent") is not None:
            yield GaugeMetricFamily("v2kvm_controller_cpu_usage_ratio",
                                    "Ansible controller CPU time per second (1 = one core busy).",
                                    value=ctl["cpu_percent"] / 100.0)
        if ctl.get("rss") is not None:
            yield GaugeMetricFamily("v2kvm_controller_resident_memory_bytes", "Ansible controller RSS.",
                                    value=ctl["rss"])
        yield from self._runs_and_jobs(hub)

    @staticmethod
    def _runs_and_jobs(hub):
        info = GaugeMetricFamily("v2kvm_run_info", "Runs in view (always 1): their name and label.",
                                 labels=["run", "name", "label"])
        done = GaugeMetricFamily("v2kvm_job_processed_bytes", "Bytes converted so far by a running job.",
                                 labels=["run", "host"])
        size = GaugeMetricFamily("v2kvm_job_size_bytes", "Bytes a running job's current transfer has to move.",
                                 labels=["run", "host"])
        rate = GaugeMetricFamily("v2kvm_job_throughput_bytes_per_second", "Current throughput of a running job.",
                                 labels=["run", "host"])
        series = 0
        for run in hub.runs.values():
            info.add_metric([run.id, run.name or run.board.playbook, run.label], 1)
            for host, vm in run.board.vms.items():
                if vm.status != RUNNING or series >= MAX_JOB_SERIES:
                    continue
                series += 1
                done.add_metric([run.id, host], vm.done)
                size.add_metric([run.id, host], vm.total)
                rate.add_metric([run.id, host], vm.rate or 0)
        yield from (info, done, size, rate)


def _dumps(data) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def ssl_context(config: Config):
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit("cannot load TLS certificate %s / key %s: %s"
                         % (config.tls_cert, config.tls_key, exc)) from None
    return context


async def serve(config: Config, server: DashboardServer | None = None) -> None:
    server = server or DashboardServer(config)
    app = server.make_app()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context(config), backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if config.tls_cert else "http"
    host = config.host if ":" not in config.host else "[%s]" % config.host
    url = "%s://%s:%d/" % (scheme, host, port)
    ready = {"url": url, "port": port, "pid": os.getpid()}
    if config.ready_file:
        tmp = config.ready_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(ready, fh)
        os.replace(tmp, config.ready_file)
    print("v2kvm web dashboard on %s (history: %s)" % (url, server._health()["history"]), file=sys.stderr,
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if config.stdin:
        # Keep a reference: the loop holds tasks only weakly, and a collected reader would stop the feed.
        server._tasks.append(asyncio.ensure_future(server.read_stdin(stop)))
    await stop.wait()
    await runner.cleanup()


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(
        prog="web_dashboard", description="v2kvm.migrate web dashboard (see docs/web-dashboard.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    parser.add_argument("--token-file", help="file holding the token (else V2KVM_WEB_TOKEN, else a new random one)")
    parser.add_argument("--auth-reads", action="store_true", help="require the token for the API, /ws and /metrics")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="extra WebSocket Origin allowed (e.g. https://awx.example.com); repeatable")
    parser.add_argument("--max-clients", type=int, default=100, help="WebSocket clients served at once")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two pushes")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="seconds between WebSocket pings")
    parser.add_argument("--history", default=default_history_path(), help="SQLite file of the run history")
    parser.add_argument("--no-history", action="store_true", help="keep history in memory only")
    parser.add_argument("--keep-runs", type=int, default=200, help="runs kept in the history")
    parser.add_argument("--tls-cert", default="", help="PEM certificate (chain) for HTTPS/WSS")
    parser.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    parser.add_argument("--ingest-rate", type=float, default=20.0, help="ingest requests/s per client address")
    parser.add_argument("--restore-runs", type=int, default=20, help="newest runs of the history shown at start")
    parser.add_argument("--allow-host", action="append", metavar="NAME",
                        default=[n for n in os.environ.get("V2KVM_WEB_ALLOW_HOSTS", "").split(",") if n.strip()],
                        help="extra name this server answers for in the Host header (besides its address and "
                             "localhost; others get 421); repeatable, or V2KVM_WEB_ALLOW_HOSTS=a,b")
    parser.add_argument("--max-run-events", type=int, default=MAX_RUN_EVENTS,
                        help="events one run may hold (memory and history); a batch past it gets 413")
    parser.add_argument("--stdin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--linger", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sample-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    token = os.environ.get("V2KVM_WEB_TOKEN", "")
    if args.token_file:
        try:
            with open(args.token_file) as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise SystemExit("cannot read --token-file %s: %s" % (args.token_file, exc)) from None
    generated = False
    if not token and not args.stdin:
        token, generated = secrets.token_urlsafe(24), True
    config = Config(host=args.host, port=args.port, token=token, auth_reads=args.auth_reads,
                    allow_origins=args.allow_origin, max_clients=args.max_clients, interval=args.interval,
                    heartbeat=args.heartbeat, history=":memory:" if args.no_history else args.history,
                    keep_runs=args.keep_runs, tls_cert=args.tls_cert, tls_key=args.tls_key,
                    ingest=not args.stdin, ingest_rate=args.ingest_rate, stdin=args.stdin, linger=args.linger,
                    ready_file=args.ready_file, sample_pid=args.sample_pid,
                    restore_runs=args.restore_runs, allow_hosts=[n.strip() for n in args.allow_host],
                    max_run_events=args.max_run_events)
    config.validate()
    if generated:
        print("v2kvm web dashboard: no token given, generated one for this process: %s" % token, file=sys.stderr)
    return config


def main(argv=None) -> int:
    missing = missing_server_libraries()
    if missing or not (HAS_AIOHTTP and HAS_PROMETHEUS):
        print("\n".join(missing or ["the web dashboard cannot import aiohttp or prometheus_client: see above"]),
              file=sys.stderr)
        return 2
    config = parse_args(argv)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
