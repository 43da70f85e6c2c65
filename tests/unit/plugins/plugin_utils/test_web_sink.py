"""The web sink: events wait for the publisher the first play's options start, then go to it; the heartbeat
sends a batch that is due; the end of the run closes the publisher and tells what the dashboard missed."""

from ansible_collections.v2kvm.migrate.plugins.plugin_utils import _web_sink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._web_publisher import EmbeddedPublisher, HttpPublisher


class Batcher:
    flush_interval = 0.5
    dropped = 0


class FakePublisher:
    def __init__(self):
        self.batcher = Batcher()
        self.published, self.flushes, self.closed, self.is_due = [], 0, False, False

    def publish(self, event):
        self.published.append(event)

    def due(self):
        return self.is_due

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True


def test_events_wait_for_the_publisher_then_go_in_order():
    sink = _web_sink.WebSink(warn=print)
    for number in range(_web_sink.MAX_WAITING + 5):
        sink.event({"type": "task_start", "n": number})
    publisher = FakePublisher()
    sink.open(publisher)
    sink.event({"type": "run_end"})
    assert [event.get("n") for event in publisher.published] == list(range(_web_sink.MAX_WAITING)) + [None]


def test_without_a_publisher_the_run_goes_on_and_keeps_nothing():
    sink = _web_sink.WebSink(warn=print)
    sink.event({"type": "run_start"})
    sink.open(None)
    sink.event({"type": "play_start"})
    sink.beat()
    sink.close()
    assert sink._waiting == []


def test_the_beat_flushes_only_a_due_batch_and_close_tells_the_losses():
    warnings = []
    sink, publisher = _web_sink.WebSink(warn=warnings.append), FakePublisher()
    sink.open(publisher)
    sink.beat()
    publisher.is_due = True
    sink.beat()
    assert publisher.flushes == 1
    publisher.oversize, publisher.batcher.dropped = 1, 3
    sink.close()
    assert publisher.closed
    assert warnings == ["1 event was too big for the web dashboard on its own (over its request size limit): dropped",
                        "3 events were not sent to the web dashboard: more waited than the run keeps for it"]


def test_publisher_warnings_name_a_disabled_publisher_failures_and_refusals():
    publisher = FakePublisher()
    publisher.disabled, publisher.failures = "the token was refused", 2
    assert _web_sink.publisher_warnings(publisher) == ["the token was refused"]
    publisher.disabled, publisher.last_error, publisher.rejected = "", "HTTP 503", 4
    assert _web_sink.publisher_warnings(publisher) == [
        "2 sends to the dashboard failed (last: HTTP 503)",
        "the web dashboard refused 4 events as bad input (last: HTTP 503)"]


def test_the_options_choose_the_publisher_and_the_run_label(monkeypatch):
    monkeypatch.setenv("JOB_ID", "42")
    remote = _web_sink.make_publisher({"url": "https://dash.example.com:8765/", "token": "t", "run_label": "",
                                       "validate_certs": True}, clock=lambda: 0.0)
    assert isinstance(remote, HttpPublisher) and remote.batcher.run["label"] == "job 42"
    embedded = _web_sink.make_publisher({"url": None, "host": "127.0.0.1", "port": 0, "run_label": "nightly",
                                         "linger": 0.0, "auth_reads": False}, clock=lambda: 0.0)
    assert isinstance(embedded, EmbeddedPublisher) and embedded.batcher.run["label"] == "nightly"
