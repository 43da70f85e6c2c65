"""The end-of-run reports: a board folded from events in, summary JSON and JUnit XML out at close."""

import json

from defusedxml import ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import MigrationBoard
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._report_sink import ReportSink

EVENTS = [
    {"ts": 100.0, "type": "run_start", "playbook": "migrate.yml"},
    {"ts": 100.0, "type": "play_start", "play": "migrate", "hosts": ["web01", "db01", "app01"]},
    {"ts": 101.0, "type": "task_start", "host": "web01", "task": "Convert", "task_uuid": "u"},
    {"ts": 102.0, "type": "task_end", "host": "web01", "task": "Convert", "task_uuid": "u", "status": "changed",
     "spec_name": "web-vm", "original_name": "Web VM", "source_type": "ova"},
    {"ts": 103.0, "type": "task_end", "host": "db01", "task": "Convert", "task_uuid": "u", "status": "failed",
     "msg": "disk \\x1b missing"},
    {"ts": 104.0, "type": "vm_end", "host": "web01", "verdict": "succeeded"},
    {"ts": 104.0, "type": "vm_end", "host": "db01", "verdict": "failed", "msg": "disk \x00 missing"},
    {"ts": 110.0, "type": "run_end"},
]


def board_of(events):
    board = MigrationBoard()
    for event in events:
        board.apply(event)
    return board


def test_summary_and_junit_are_written_at_close_only(tmp_path):
    summary, junit = tmp_path / "summary.json", tmp_path / "junit.xml"
    board = board_of(EVENTS)
    sink = ReportSink(board, summary_path=str(summary), junit_path=str(junit))
    sink.event(EVENTS[-1])
    assert not summary.exists() and not junit.exists()
    sink.close()
    data = json.loads(summary.read_text())
    assert data == json.loads(json.dumps(board.summary(), default=str))
    assert (data["playbook"], data["finished"], data["metrics"]["failed"]) == ("migrate.yml", 110.0, 1)
    suite = ET.parse(junit).getroot().find("testsuite")
    counts = (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("time"))
    assert counts == ("3", "1", "1", "10.000")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert cases["web01"].get("classname") == "v2kvm.migrate.ova" and cases["web01"].find("failure") is None
    props = {prop.get("name"): prop.get("value") for prop in cases["web01"].find("properties")}
    assert (props["vm_name"], props["source_name"], props["stage"]) == ("web-vm", "Web VM", "done")
    assert cases["db01"].find("failure").text == "disk \\x00 missing"
    assert cases["app01"].find("skipped").get("message") == "not finished (pending)"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_report_without_a_path_is_not_written(tmp_path):
    junit = tmp_path / "junit.xml"
    ReportSink(board_of(EVENTS), junit_path=str(junit)).close()
    assert [path.name for path in tmp_path.iterdir()] == ["junit.xml"]
