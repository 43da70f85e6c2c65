"""The event source: Ansible's callback calls (fake results) in, escaped and stamped migration events out,
folded into its board and handed to every sink in order."""

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._ansible_events import AnsibleEventSource
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink
from rig import ansible_fakes as fakes
from rig.ansible_fakes import Host, Stats


def Task(name, uuid, action="v2kvm.migrate.disk_convert"):  # noqa: N802 (stands in for a class)
    return fakes.Task(name, uuid, action, role="v2kvm.migrate.migrate_vm")


def Result(host, task, data):  # noqa: N802 (stands in for a class)
    return fakes.Result(host, task, data, copy_is_refused=True)


class Recorder(EventSink):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def event(self, event):
        self.calls.append((self.name, "event", event))

    def tick(self):
        self.calls.append((self.name, "tick", None))

    def beat(self):
        self.calls.append((self.name, "beat", None))

    def close(self):
        self.calls.append((self.name, "close", None))


def source_with_recorders(now=1000.0):
    calls = []
    source = AnsibleEventSource(clock=lambda: now)
    source.set_sinks([Recorder("first", calls), Recorder("second", calls)])
    return source, calls


def events_of(calls, sink="first"):
    return [payload for name, kind, payload in calls if name == sink and kind == "event"]


DELEGATED = {"_ansible_delegated_vars": {"ansible_delegated_host": "kvm2", "ansible_host": "10.0.0.2"}}


def test_a_delegated_validate_result_becomes_a_task_end_with_its_target_and_verdict():
    source, calls = source_with_recorders()
    host, task = Host("web01"), Task("Validate the migrated guest", "u-val", "v2kvm.migrate.validate")
    verdict = {"booted": True, "marker": "login:\x1b[2J"}
    source.runner_ok(Result(host, task, dict(DELEGATED, changed=True, verdict=verdict,
                                             ansible_facts={"migrate_vm_phase": "validate"})))
    [event] = events_of(calls)
    assert event == {"type": "task_end", "host": "web01", "task": "Validate the migrated guest", "task_uuid": "u-val",
                     "status": "changed", "phase": "validate", "target": "kvm2", "ts": 1000.0,
                     "verdict": {"booted": True, "marker": "login:\\x1b[2J"}}
    assert events_of(calls, "second") == [event]
    assert verdict["marker"] == "login:\x1b[2J", "the worker's result is left as it was"
    assert source.board.vms["web01"].phase == "validate"


def test_the_target_falls_back_to_the_delegated_ansible_host_and_is_absent_without_delegation():
    source, calls = source_with_recorders()
    host, task = Host("web01"), Task("Convert", "u")
    source.runner_ok(Result(host, task, {"_ansible_delegated_vars": {"ansible_host": "10.0.0.2"}}))
    source.runner_ok(Result(host, task, {"changed": False, "verdict": "not a dict"}))
    first, second = events_of(calls)
    assert first["target"] == "10.0.0.2" and first["status"] == "ok"
    assert "target" not in second and "verdict" not in second


def test_a_progress_sample_becomes_a_progress_event_and_an_ordinary_poll_a_tick():
    source, calls = source_with_recorders()
    host, task = Host("db01"), Task("Convert each disk", "u-conv")
    sample = {"ts": 50.5, "stage": "convert", "done": 5, "total": 10, "rate": 2.0, "eta": 2.5,
              "source": "disk_convert", "ignored": "not forwarded"}
    source.async_poll(Result(host, task, dict(DELEGATED, v2kvm_progress=sample, _ansible_item_label="disk\r1")))
    source.async_poll(Result(host, task, {"ansible_job_id": "j1", "finished": False}))
    assert events_of(calls) == [{
        "type": "progress", "host": "db01", "task": "Convert each disk", "task_uuid": "u-conv", "item": "disk\\r1",
        "stage": "convert", "done": 5, "total": 10, "rate": 2.0, "eta": 2.5, "source": "disk_convert",
        "sample_ts": 50.5, "target": "kvm2", "ts": 1000.0}]
    assert [(name, kind) for name, kind, _payload in calls[-2:]] == [("first", "tick"), ("second", "tick")]
    assert source.board.vms["db01"].done == 5


def test_failures_spec_and_bookkeeping():
    source, calls = source_with_recorders()
    host = Host("web01")
    source.runner_start(host, Task("Mark the phase", "u-mark", "ansible.builtin.set_fact"))
    source.runner_ok(Result(host, Task("Read the source", "u-info"), {"spec": {
        "name": "web-vm", "original_name": "Web VM", "source": {"type": "vsphere"}}}))
    source.runner_failed(Result(host, Task("Convert", "u-conv"), {"msg": "no\x07space"}))
    source.runner_failed(Result(host, Task("Clean", "u-clean"), {"stderr": "meh"}), ignore_errors=True)
    source.runner_unreachable(Result(host, Task("Ping", "u-ping"), {"reason": "ssh down"}))
    source.runner_skipped(Result(host, Task("Skip", "u-skip"), {"skipped": True}))
    start, info, failed, ignored, unreachable, skipped = events_of(calls)
    assert start["bookkeeping"] is True and start["task"] == "Mark the phase"
    assert (info["spec_name"], info["original_name"], info["source_type"]) == ("web-vm", "Web VM", "vsphere")
    assert (failed["status"], failed["msg"]) == ("failed", "no\\x07space")
    assert ignored["status"] == "ignored" and "msg" not in ignored
    assert (unreachable["status"], unreachable["msg"]) == ("unreachable", "ssh down")
    assert skipped["status"] == "skipped"


def test_stats_end_every_vm_then_the_run_and_close_each_sink_once():
    source, calls = source_with_recorders()
    source.playbook_start(type("P", (), {"_file_name": "/x/migrate.yml"})())
    source.runner_failed(Result(Host("db01"), Task("Convert", "u"), {"msg": "disk missing"}))
    source.stats(Stats({"web01": {"failures": 0, "unreachable": 0}, "db01": {"failures": 1, "unreachable": 0}}))
    kinds = [(event["type"], event.get("host"), event.get("verdict")) for event in events_of(calls)]
    assert kinds == [("run_start", None, None), ("task_end", "db01", None), ("vm_end", "db01", "failed"),
                     ("vm_end", "web01", "succeeded"), ("run_end", None, None)]
    assert events_of(calls)[0]["playbook"] == "migrate.yml"
    assert events_of(calls)[2]["msg"] == "disk missing"
    assert [(name, kind) for name, kind, _payload in calls[-2:]] == [("first", "close"), ("second", "close")]
    source.close()
    source.beat()
    assert [kind for _name, kind, _payload in calls].count("close") == 2 and calls[-1][1] == "close"


def test_an_interrupted_run_fails_its_running_vms_once():
    source, calls = source_with_recorders()
    source.emit({"type": "play_start", "play": "migrate", "hosts": ["web01", "db01"]})
    source.runner_start(Host("web01"), Task("Convert each disk", "u"))
    source.interrupt()
    source.interrupt()
    ends = [event for event in events_of(calls) if event["type"] in ("vm_end", "run_end")]
    assert ends == [{"type": "vm_end", "host": "web01", "verdict": "failed", "ts": 1000.0,
                     "msg": "interrupted: the run stopped during Convert each disk"},
                    {"type": "run_end", "interrupted": True, "ts": 1000.0}]
    assert source.board.vms["db01"].status == "pending" and source.finished
