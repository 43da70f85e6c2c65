"""The HTTP publisher against the real standalone server (scripts/web_dashboard.py): a backlog queued while
the server was down arrives whole and in order once it is up, in requests within the server's limits; a
request too big for the server (413) is cut to the limit it names, and only an event too big on its own is
dropped, counted and named in the run's warnings."""

import json
import sqlite3
import time
import urllib.request

import pytest

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_sink import publisher_warnings
from ansible_collections.v2kvm.migrate.plugins.plugin_utils import _web_publisher
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server import _web_ingest, _web_server
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import HttpPublisher
from web.conftest import TOKEN, ServerProcess

pytestmark = pytest.mark.integration
pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


class Clock:
    """The publisher's clock: its backoff is skipped by moving it, never by sleeping."""

    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def _progress(index, host, pad):
    return {"type": "progress", "host": host, "task": "Convert " + pad, "task_uuid": "u-" + host,
            "stage": "convert", "done": index, "total": 1 << 40, "rate": 1e6, "ts": 1765000000 + index / 1000}


def _stored(history, run_id):
    """The run's events as the server stored them, in its order (read after the server stopped)."""
    with sqlite3.connect(history) as db:
        return [json.loads(body) for (body,) in
                db.execute("SELECT body FROM events WHERE run_id=? ORDER BY seq", (run_id,))]


def _metric(server, name):
    text = urllib.request.urlopen(server.url + "metrics", timeout=5).read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples}[name]


def test_the_publisher_knows_the_servers_limits():
    assert _web_publisher.MAX_BATCH_EVENTS == _web_ingest.MAX_EVENTS
    assert _web_publisher.MAX_BATCH_BYTES == _web_server.MAX_BODY
    assert _web_publisher.MAX_LINE_BYTES == _web_server.MAX_LINE


def test_a_backlog_queued_while_the_server_was_down_arrives_whole_and_in_order(tmp_path):
    server = ServerProcess(tmp_path)  # its port is chosen, nothing listens there yet
    clock = Clock()
    pub = HttpPublisher(server.url, TOKEN, run_name="backlog.yml", clock=clock)
    pub.publish({"type": "run_start", "playbook": "backlog.yml", "ts": 1765000000})  # urgent: tried, refused
    # 10 000 small events (the event cap cuts them) then 10 000 of ~450 bytes (the byte cap cuts them).
    for index in range(20000):
        pub.publish(_progress(index, "vm%d" % (index % 4), "x" * (3 if index < 10000 else 400)))
    clock.now += 5
    assert pub.flush() is False  # still down: kept for the next try
    assert pub.failures == 2 and len(pub.batcher.events) == 20001
    try:
        server.start()
        clock.now += 120  # past the backoff
        deadline = time.time() + 60
        while pub.batcher.events and time.time() < deadline:
            pub.flush()
        assert not pub.batcher.events, pub.last_error
        assert pub.failures == 2 and pub.oversize == 0 and pub.rejected == 0 and pub.batcher.dropped == 0
        # No request was refused (a batch past the limits gets 400 or 413), and it took more requests than
        # the event cap alone needs: the byte cap cut the big events (about 5.7 MB of them).
        assert _metric(server, "v2kvm_ingest_rejected_total") == 0
        assert _metric(server, "v2kvm_events_ingested_total") == 20001
        assert pub.requests - pub.failures > 5  # the event cap alone: 5 requests of at most 5000 events
    finally:
        server.stop()
    events = _stored(server.history, pub.batcher.run["id"])
    assert events[0]["type"] == "run_start"
    assert [event["done"] for event in events[1:]] == list(range(20000))


def test_a_413_cuts_the_batch_and_only_an_event_too_big_alone_is_dropped(tmp_path, web_server):
    server = web_server()
    # A publisher that believes the server takes 8 MiB: the server's 413 teaches it otherwise.
    pub = HttpPublisher(server.url, TOKEN, run_name="big.yml", max_batch_bytes=8 << 20)
    for index in range(3000):  # about 3 MiB: refused whole, fits in quarters
        pub.batcher.add(_progress(index, "vm1", "y" * 1000))
        if index == 1500:
            pub.batcher.add({"type": "task_start", "host": "vm1", "task": "z" * (2 << 20)})  # 2 MiB alone
    pub.close()
    assert not pub.batcher.events and pub.failures == 0, pub.last_error
    assert pub.oversize == 1 and pub.max_batch_bytes == _web_server.MAX_BODY
    # The server refused two requests (413): the first, cut to the limit it named, and the big event alone.
    # It folded every other event, in order.
    assert _metric(server, "v2kvm_ingest_rejected_total") == 2 and pub.requests == 2 + 4
    assert _metric(server, "v2kvm_events_ingested_total") == 3000
    server.stop()
    assert [event["done"] for event in _stored(server.history, pub.batcher.run["id"])] == list(range(3000))
    warnings = publisher_warnings(pub)
    assert any("1 event was too big for the web dashboard" in text for text in warnings), warnings


def test_a_full_run_stops_the_reporting_instead_of_retrying(tmp_path, web_server):
    server = web_server("--max-run-events", "10")
    pub = HttpPublisher(server.url, TOKEN, run_name="full.yml")
    for index in range(30):
        pub.batcher.add(_progress(index, "vm1", ""))
    pub.close()
    assert "holds no more events for this run" in pub.disabled and pub.requests == 1
    assert any("holds no more events" in text for text in publisher_warnings(pub))
