"""The line view as a sink: events (folded into the board first, as the source does) in, plain lines out."""

import io

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._dashboard_view import LineView
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import MigrationBoard


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self):
        return self.now


def feed(board, view, event):
    board.apply(event)
    view.event(event)


def test_line_view_sink_writes_a_start_line_failures_and_the_metrics_but_no_skipped_task():
    clock, out, board = Clock(), io.StringIO(), MigrationBoard()
    view = LineView(board, stream=out, interval=10.0, clock=clock)
    feed(board, view, {"ts": clock.now, "type": "play_start", "play": "migrate", "hosts": ["web01"]})
    feed(board, view, {"ts": clock.now, "type": "task_start", "host": "web01", "task": "Export", "task_uuid": "s"})
    feed(board, view, {"ts": clock.now, "type": "task_end", "host": "web01", "task": "Export", "task_uuid": "s",
                       "status": "skipped"})
    feed(board, view, {"ts": clock.now, "type": "task_start", "host": "web01", "task": "Boot", "task_uuid": "b"})
    assert out.getvalue() == "", "a start line waits: the task may yet be skipped"
    clock.now += 1
    view.beat()
    feed(board, view, {"ts": clock.now, "type": "task_end", "host": "web01", "task": "Boot", "task_uuid": "b",
                       "status": "failed", "msg": "no boot marker"})
    feed(board, view, {"ts": clock.now, "type": "vm_end", "host": "web01", "verdict": "failed"})
    feed(board, view, {"ts": clock.now, "type": "run_end"})
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert " web01 ▶ Boot " in lines[0] and "Export" not in out.getvalue()
    assert lines[1].endswith("web01 FAILED Boot: no boot marker")
    assert "failed: Boot" in lines[2] and "error: no boot marker" in lines[2]
    assert lines[3].startswith("VMs 1: 0 succeeded, 1 failed")
