"""Publishers: the embedded server child fed through its non-blocking stdin pipe, and the HTTP
publisher's batching, backoff and refusal handling."""

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import (
    EmbeddedPublisher, HttpPublisher, PublisherError, pack)

pytest.importorskip("aiohttp")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _get(url, path):
    with urllib.request.urlopen(url + path, timeout=5) as response:
        return json.loads(response.read())


def test_embedded_server_serves_the_run_it_is_fed_and_exits_when_the_run_ends(tmp_path):
    log = tmp_path / "server.log"
    pub = EmbeddedPublisher(port=0, history=str(tmp_path / "h.sqlite3"), log_file=str(log), run_name="p.yml")
    url = pub.start()
    assert url.startswith("http://127.0.0.1:")
    child = pub._proc
    pub.publish({"type": "run_start", "playbook": "p.yml", "ts": time.time()})
    pub.publish({"type": "play_start", "hosts": ["vm1", "vm2"]})
    pub.publish({"type": "vm_end", "host": "vm1", "verdict": "succeeded"})
    deadline = time.time() + 10
    jobs = []
    while time.time() < deadline and len(jobs) < 2:
        jobs = _get(url, "api/jobs")["jobs"]
        time.sleep(0.1)
    assert sorted((j["host"], j["status"]) for j in jobs) == [("vm1", "succeeded"), ("vm2", "pending")]
    health = _get(url, "api/metrics")["controller"]
    assert health["pid"] == os.getpid() and health["threads"] >= 1
    pub.close()
    assert child.wait(10) == 0  # EOF on the pipe ends the server (linger 0)
    assert "Traceback" not in log.read_text()


def test_embedded_batches_are_cut_to_what_the_server_parses_at_once(tmp_path):
    """12 000 events waiting at one flush: over 5000 in one line the server refused them all."""
    log = tmp_path / "server.log"
    pub = EmbeddedPublisher(port=0, history=":memory:", log_file=str(log), run_name="many.yml")
    url = pub.start()
    child = pub._proc
    for index in range(12000):
        pub.batcher.add({"type": "progress", "host": "vm%d" % (index % 3), "task": "Convert", "task_uuid": "u",
                         "stage": "convert", "done": index, "total": 1 << 30, "ts": 1765000000 + index})
    pub.flush()
    run_id = pub.batcher.run["id"]
    deadline = time.time() + 30
    events = 0
    while time.time() < deadline and events < 12000:
        if pub._pending:
            assert pub.due()  # bytes the pipe did not take yet: the callback's heartbeat sends them
        pub.flush()
        events = _get(url, "api/runs/%s" % run_id).get("events", 0) if _get(url, "api/runs")["runs"] else 0
        time.sleep(0.1)
    assert events == 12000
    pub.close()
    assert child.wait(10) == 0
    assert "dropped" not in log.read_text() and "Traceback" not in log.read_text()


def test_embedded_start_failure_names_the_port(tmp_path):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        pub = EmbeddedPublisher(port=busy.getsockname()[1], history=":memory:", start_timeout=10)
        with pytest.raises(PublisherError, match="port in use"):
            pub.start()


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_http_publisher_batches_backs_off_and_keeps_events_until_sent():
    clock = Clock()
    calls, outcomes = [], []

    def opener(url, data, headers, method, timeout, **options):
        calls.append(json.loads(data))
        assert url == "http://dash:8765/api/ingest" and method == "POST"
        assert headers["Authorization"] == "Bearer t0k"
        assert options["validate_certs"] is True
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return FakeResponse(b'{"accepted": 1}')

    pub = HttpPublisher("http://dash:8765/", "t0k", clock=clock, opener=opener)
    outcomes.append(urllib.error.URLError("connection refused"))
    pub.publish({"type": "run_start", "ts": 1})  # urgent: sent at once, fails
    assert pub.failures == 1 and len(calls) == 1
    pub.publish({"type": "progress", "host": "vm1", "ts": 2})  # within backoff: kept
    assert len(calls) == 1
    clock.now += 5
    outcomes.append(None)
    pub.publish({"type": "task_end", "host": "vm1", "status": "ok", "ts": 3})
    assert [e["type"] for e in calls[-1]["events"]] == ["run_start", "progress", "task_end"]
    assert calls[-1]["run"]["id"] == calls[0]["run"]["id"]


def test_http_publisher_stops_on_a_refused_token_and_needs_one():
    def opener(url, data, headers, method, timeout, **options):
        raise urllib.error.HTTPError(url, 401, "Unauthorized", {}, io.BytesIO(b'{"error":"token"}'))

    pub = HttpPublisher("http://dash:8765", "bad", opener=opener)
    pub.publish({"type": "run_start"})
    assert "refused the token" in pub.disabled
    with pytest.raises(PublisherError, match="needs its token"):
        HttpPublisher("http://dash:8765", "")
    assert sys.executable


def test_pack_keeps_the_order_and_both_limits_and_gives_a_big_event_a_batch_of_its_own():
    items = [(index, b"x" * size) for index, size in enumerate([10, 10, 10, 50, 10, 10, 10, 10])]
    overhead = 20
    batches = pack(items, max_events=3, max_bytes=20 + 10 + 1 + 10, overhead=overhead)
    assert [[index for index, _data in batch] for batch in batches] == [[0, 1], [2], [3], [4, 5], [6, 7]]
    for batch in batches:
        size = overhead + sum(len(data) for _index, data in batch) + len(batch) - 1
        assert len(batch) == 1 or (len(batch) <= 3 and size <= 41)
    assert [len(batch) for batch in pack(items[:7], 3, 1 << 20, 0)] == [3, 3, 1]
    assert pack([], 3, 100, 0) == []


def test_a_missing_library_is_named_with_what_to_install(monkeypatch, capsys, tmp_path):
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server import _web_sampler, _web_server

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what find_spec reports for a missing library
    pub = EmbeddedPublisher(port=0, history=":memory:")
    with pytest.raises(PublisherError, match=r"required Python library \(prometheus-client\).*pip install "
                                             r"prometheus-client") as exc:
        pub.start()
    assert "psutil" not in str(exc.value) and pub._proc is None
    assert _web_server.main(["--no-history"]) == 2
    assert "pip install prometheus-client" in capsys.readouterr().err
    monkeypatch.setattr(_web_sampler, "HAS_PSUTIL", False)
    assert _web_sampler.ProcessSampler().sample() == dict.fromkeys(_web_sampler.FIELDS)


def test_the_sampler_reads_a_process_and_a_gone_one_gives_an_empty_sample():
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_sampler import FIELDS, ProcessSampler

    clock = Clock()
    sampler = ProcessSampler(clock=clock)
    first = sampler.sample()
    assert first["cpu_percent"] is None and first["rss"] > 0 and first["threads"] >= 1
    assert 0 < first["mem_percent"] < 100 and first["mem_total"] > first["rss"]
    sum(range(200000))
    clock.now += 0.5
    assert sampler.sample()["cpu_percent"] >= 0 and sampler.cpu_seconds() > 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert ProcessSampler(child.pid).sample() == dict.fromkeys(FIELDS)
