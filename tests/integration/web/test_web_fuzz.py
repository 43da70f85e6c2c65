"""Fuzz the real standalone server over HTTP: 10 000+ generated and mutated requests (event batches
of the real shapes, hostile values, broken bytes and headers, odd reads) must get no answer >= 500,
leave the server's memory bounded and its API strict JSON.

Seeded: the seed is printed (and named in every failure); V2KVM_WEB_FUZZ_SEED=<seed> replays a run."""

import asyncio
import collections
import json
import os
import random
import time

import pytest

from web.conftest import TOKEN

pytestmark = pytest.mark.integration

REQUESTS = 10000
CONNECTIONS = 8
RSS_GROWTH_LIMIT_MIB = 150
TYPES = ("run_start", "play_start", "task_start", "progress", "task_end", "vm_end", "run_end")
RUN_IDS = ("fuzz-a", "fuzz-b", "fuzz-c", "awx-42-0123456789ab")
HOSTS = ("vm1", "vm2", "web01", "db-02.example", "h\u00f6st", "vm 7")
# Placeholders put into the structure and swapped for raw JSON text after json.dumps.
NAN, INF, HUGE, DEEP = "\x00NAN\x00", "\x00INF\x00", "\x00HUGE\x00", "\x00DEEP\x00"


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


class Fuzzer:
    def __init__(self, seed, port):
        self.rng = random.Random(seed)
        self.port = port

    # -- valid material, the shapes the publisher sends -------------------------------------------

    def event(self):
        r = self.rng
        kind = r.choice(TYPES)
        host = r.choice(HOSTS)
        event = {"type": kind, "ts": 1765000000 + r.random() * 1000}
        if kind == "run_start":
            event["playbook"] = "migrate.yml"
        elif kind == "play_start":
            event.update(play="Migrate", hosts=r.sample(HOSTS, r.randint(0, len(HOSTS))))
        elif kind == "task_start":
            event.update(host=host, task="Convert", task_uuid="u%d" % r.randint(0, 20), bookkeeping=r.random() < .2)
        elif kind == "progress":
            total = r.randint(1, 1 << 40)
            event.update(host=host, task="Convert", task_uuid="u%d" % r.randint(0, 20), item=r.choice([None, "disk0"]),
                         stage="convert", done=r.randint(0, total), total=total, rate=r.random() * 1e9,
                         eta=r.choice([None, r.random() * 100]), source="disk_convert", sample_ts=1765000000.5,
                         target="kvm01")
        elif kind == "task_end":
            event.update(host=host, task="Validate", task_uuid="u1", status=r.choice(["ok", "changed", "failed"]),
                         msg="no marker", spec_name="web01", source_type="ova", phase="validate")
            if r.random() < .3:
                event["verdict"] = {"booted": r.random() < .5, "reason": "timeout", "matched_line": None}
        elif kind == "vm_end":
            event.update(host=host, verdict=r.choice(["succeeded", "failed"]), msg="")
        elif r.random() < .5:
            event["interrupted"] = True
        return event

    def batch(self):
        r = self.rng
        body = {"run": {"id": r.choice(RUN_IDS), "name": "fuzz.yml", "label": "job 1"},
                "events": [self.event() for _n in range(r.randint(0, 25))]}
        if r.random() < .5:
            body["controller"] = {"cpu_percent": 12.5, "rss": 1 << 27, "mem_total": 1 << 33, "mem_percent": 1.5,
                                  "threads": 4, "pid": 1234}
        return body

    # -- mutations ----------------------------------------------------------------------------------

    def hostile(self):
        r = self.rng
        return r.choice([
            None, True, False, 0, -1, 2 ** 53 + 1, -2 ** 60, 1.5e300, "", "x" * r.randint(1, 5000),
            "\x1b[31m\r\nSet-Cookie: x", "\ud800", "<script>alert(1)</script>", [], {}, [1, "a", None],
            {"type": "progress"}, {"a": {"b": {"c": [1]}}}, NAN, INF, HUGE, DEEP, r.choice(TYPES), list(HOSTS),
        ])

    def mutate(self, node, depth=0):
        """Change one random place of the structure (in place where possible), return the new root."""
        r = self.rng
        if depth > 6 or not isinstance(node, (dict, list)) or not node or r.random() < .25:
            return self.hostile()
        if isinstance(node, dict):
            key = r.choice(list(node))
            action = r.random()
            if action < .15:
                del node[key]
            elif action < .25:
                node[r.choice(["extra", "type", "host", "hosts", "\u2028", "x" * 70])] = self.hostile()
            else:
                node[key] = self.mutate(node[key], depth + 1)
            return node
        index = r.randrange(len(node))
        node[index] = self.mutate(node[index], depth + 1)
        return node

    def encode(self, body):
        r = self.rng
        text = json.dumps(body)
        text = text.replace(json.dumps(NAN), "NaN").replace(json.dumps(HUGE), "1" + "0" * r.randint(17, 400))
        text = text.replace(json.dumps(INF), r.choice(["Infinity", "-Infinity", "1e400", "-1e999"]))
        depth = r.choice([19, 25, 1000, 100000])
        return text.replace(json.dumps(DEEP), "[" * depth + "]" * depth).encode("utf-8", "surrogatepass")

    def corrupt(self, data):
        r = self.rng
        data = bytearray(data)
        for _n in range(r.randint(1, 8)):
            action = r.random()
            if not data or action < .3:
                data[r.randrange(len(data) + 1):r.randrange(len(data) + 1)] = r.choice(
                    [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"[", b"{", b'"', b"\\", b",", b"NaN"])
            elif action < .6:
                data[r.randrange(len(data))] = r.randrange(256)
            elif action < .8:
                del data[r.randrange(len(data)):]
            else:
                start = r.randrange(len(data))
                data[start:start] = data[start:start + r.randint(1, 200)]
        return bytes(data)

    # -- requests -----------------------------------------------------------------------------------

    def request(self):
        """Raw bytes of one HTTP/1.1 request."""
        r = self.rng
        method, path, body = "POST", "/api/ingest", b""
        headers = [("Authorization", ("Bearer %s" % TOKEN).encode()), ("Content-Type", b"application/json")]
        host = ("127.0.0.1:%d" % self.port).encode()
        roll = r.random()
        if roll < .08:
            method, body = "GET", b""
            path = r.choice(["/api/jobs?q=%s&status=%s&run=%s" % (r.choice(["%ff", "%00", "a b", "\u00e9"]),
                                                                  r.choice(["", "running", "%ff"]), r.choice(RUN_IDS)),
                             "/api/jobs/%016x" % r.getrandbits(64), "/api/jobs/..%2f..%2fetc", "/api/runs/fuzz-a",
                             "/api/runs/%s" % ("x" * r.randint(1, 300)), "/api/metrics", "/metrics", "/healthz",
                             "/ws", "/nope", "/static/..%2f_web_server.py", "/api/ingest"])
        else:
            batch = self.batch()
            if roll < .35:
                data = self.encode(batch)
            else:
                for _n in range(r.randint(1, 3)):
                    batch = self.mutate(batch)
                data = self.encode(batch)
            if r.random() < .15:
                data = self.corrupt(data)
            if r.random() < .003:
                data = b'{"run":{"id":"big"},"events":[' + b'{"type":"run_end"},' * 60000 + b"0]}"
            body = data
        if r.random() < .06:
            headers[0] = ("Authorization", r.choice([b"Bearer wrong", b"Bearer \xff\xfe", b"Basic %%%", b"",
                                                     b"Bearer " + TOKEN.encode() + b"\xc3"]))
        if r.random() < .04:
            host = r.choice([b"evil.example", b"localhost", b"[::1]", b"\xff\xfe", b"127.0.0.1:1"])
        if r.random() < .03:
            headers[1] = ("Content-Type", r.choice([b"text/plain", b"application/json; charset=latin-1", b"\xff"]))
        lines = [("%s %s HTTP/1.1" % (method, path)).encode("utf-8", "surrogatepass"), b"Host: " + host]
        lines += [name.encode() + b": " + value for name, value in headers]
        lines.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(port, requests, statuses, failures):
    """Send requests one after the other on one keep-alive connection (a new one when the server closed it)."""
    conn = None
    for raw in requests:
        for _attempt in (1, 2):
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = conn
            writer.write(raw)
            try:
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closes after a request its HTTP parser refused (with a 400): the next request
                # on that connection finds it closed and goes again on a new one.
                writer.close()
                conn = None
        else:
            statuses["closed"] += 1  # twice no answer: counted, and bounded by the test
            continue
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        answer = await reader.readexactly(int(fields.get("content-length", 0)))
        statuses[status] += 1
        if status >= 500 and len(failures) < 3:
            failures.append((status, answer[:300], raw[:600].replace(TOKEN.encode(), b"<token>")))
        if fields.get("connection", "").lower() == "close":
            writer.close()
            conn = None
    if conn is not None:
        conn[1].close()


async def fire(port, requests):
    statuses, failures = collections.Counter(), []
    share = [requests[n::CONNECTIONS] for n in range(CONNECTIONS)]
    await asyncio.gather(*(exchange(port, part, statuses, failures) for part in share))
    return statuses, failures


def get_strict(port, path):
    import urllib.request

    def refuse(name):
        raise AssertionError("%s answered %s, which is not JSON" % (path, name))
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as response:
        return json.loads(response.read(), parse_constant=refuse)


def test_fuzzed_ingest_never_gets_a_5xx_and_memory_stays_bounded(web_server):
    seed = int(os.environ.get("V2KVM_WEB_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
    print("web fuzz seed: %d (replay: V2KVM_WEB_FUZZ_SEED=%d)" % (seed, seed))
    server = web_server("--ingest-rate", "1000000", "--max-run-events", "20000", "--keep-runs", "10")
    fuzzer = Fuzzer(seed, server.port)
    requests = [fuzzer.request() for _n in range(REQUESTS)]
    started = time.monotonic()
    warm, failures = asyncio.run(fire(server.port, requests[:500]))
    rss_before = rss_bytes(server.proc.pid)
    statuses, more = asyncio.run(fire(server.port, requests[500:]))
    statuses.update(warm)
    failures += more
    rss_after = rss_bytes(server.proc.pid)
    elapsed = time.monotonic() - started
    print("web fuzz: %d requests in %.1f s, answers %s, RSS %.1f -> %.1f MiB"
          % (len(requests), elapsed, dict(statuses), rss_before / 2 ** 20, rss_after / 2 ** 20))
    assert not failures, "seed %d: answers >= 500: %r" % (seed, failures)
    assert server.proc.poll() is None, "seed %d: the server died" % seed
    assert statuses["closed"] == 0, "seed %d: requests left without an answer: %s" % (seed, statuses)
    # Both kinds must really occur, or the fuzzer tests nothing: batches accepted and batches refused.
    assert statuses[202] >= 1000 and statuses[400] >= 3000, "seed %d: %s" % (seed, statuses)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_MIB << 20, \
        "seed %d: RSS grew %.1f MiB" % (seed, (rss_after - rss_before) / 2 ** 20)
    # Whatever was accepted reads back as strict JSON (no NaN/Infinity reached the board or the history).
    for path in ("/api/jobs", "/api/metrics", "/api/runs", "/api/runs/fuzz-a"):
        assert isinstance(get_strict(server.port, path), dict), path
