"""Bounds of the web dashboard's state: rate-limit buckets per address, the nesting scan, the Host
names, a run evicted from memory that reports again (its history continues, nothing overwritten)."""

import json

import pytest

from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_history import History
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_hub import Hub, job_id
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_ingest import (
    IngestError, clean_event, loads, nesting_depth)

pytest.importorskip("aiohttp")
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_server import (  # noqa: E402
    TokenBucket, host_name)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_rate_limit_buckets_stay_capped_and_a_busy_address_stays_limited():
    clock = Clock()
    limiter = TokenBucket(rate=1.0, burst=2, clock=clock, max_keys=100)
    assert [limiter.allow("busy") for _n in range(2)] == [0.0, 0.0]
    assert limiter.allow("busy") > 0
    for n in range(100000):
        limiter.allow("10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255))
        if n % 20 == 0:  # busier than the newest half of the cap: never the least recently used
            clock.now += 0.00001  # 5000 checks refill 0.05 of a token
            assert limiter.allow("busy") > 0, n  # churn of other addresses never hands it a new burst
        assert len(limiter.buckets) <= 100
    clock.now += 10  # idle long enough to be full again
    assert limiter.allow("busy") == 0.0


def test_nesting_depth_counts_brackets_outside_strings_only():
    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{{{"}], "c": "\\"]]]"}') == 3
    assert nesting_depth(b"[]" * 1000) == 1
    assert nesting_depth(b"[" * 1000000) == 1000000  # no recursion, whatever the depth
    assert loads('{"a": [[["x"]]]}', max_depth=4) == {"a": [[["x"]]]}
    with pytest.raises(IngestError, match="nested 5 deep: at most 4 levels"):
        loads('{"a": [[[[]]]]}', max_depth=4)


def test_host_names_without_port_or_brackets():
    assert [host_name(h) for h in ("LocalHost:8765", "[::1]:80", "[::1]", "::1", "dash.example.com", " a:1 ")] == [
        "localhost", "::1", "::1", "::1", "dash.example.com", "a"]


def test_a_run_evicted_from_memory_continues_its_history_when_it_reports_again():
    history = History(":memory:")
    hub = Hub(history, keep_live_runs=1)
    first = [{"type": "run_start", "playbook": "a.yml", "ts": 1.0},
             {"type": "play_start", "hosts": ["vm1"], "ts": 1.0},
             {"type": "task_start", "host": "vm1", "task": "Convert", "task_uuid": "u1", "ts": 2.0}]
    hub.ingest("a", [clean_event(e) for e in first])
    hub.ingest("b", [clean_event({"type": "run_start", "ts": 3.0})])
    assert list(hub.runs) == ["b"]  # "a" left memory, its events stay in the history
    hub.ingest("a", [clean_event({"type": "task_end", "host": "vm1", "task": "Convert", "task_uuid": "u1",
                                  "status": "changed", "ts": 4.0})])
    stored = list(history.all_events("a"))
    assert [e["type"] for e in stored] == ["run_start", "play_start", "task_start", "task_end"]
    live = hub.job_view(hub.runs["a"], "vm1")
    assert live["id"] == job_id("a", "vm1") and live["status"] == "running" and live["started"] == 2.0
    # A fresh hub replaying the history shows the same job.
    again = Hub(history)
    again.restore()
    assert json.dumps(again.job_view(again.runs["a"], "vm1")) == json.dumps(live)
