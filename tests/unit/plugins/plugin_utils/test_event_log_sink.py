"""The JSON-lines event log: events in, one compact line each out; buffered, flushed at once for the first
event, then at most once a second, and whole at close."""

import json

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_log_sink import EventLogSink


class Monotonic:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_events_become_lines_flushed_early_and_at_most_once_a_second(tmp_path):
    path, clock = tmp_path / "ev.jsonl", Monotonic()
    path.write_text('{"type":"earlier run"}\n')
    sink = EventLogSink(str(path), monotonic=clock)
    sink.event({"type": "run_start", "playbook": "migrate.yml", "ts": 1.5})
    assert path.read_text().splitlines()[-1] == '{"type":"run_start","playbook":"migrate.yml","ts":1.5}'
    clock.now += 0.5
    sink.event({"type": "task_start", "host": "web01", "ts": 2.0})
    assert len(path.read_text().splitlines()) == 2, "within the second: still in the buffer"
    clock.now += 0.6
    sink.event({"type": "task_end", "host": "web01", "ts": 2.5, "verdict": {"booted": True}})
    assert len(path.read_text().splitlines()) == 4
    clock.now += 0.1
    sink.event({"type": "run_end", "ts": 3.0, "odd": object()})
    sink.close()
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["earlier run", "run_start", "task_start", "task_end", "run_end"]
    assert lines[3]["verdict"] == {"booted": True}
    assert lines[4]["odd"].startswith("<object object"), "what JSON cannot hold is written as text"
