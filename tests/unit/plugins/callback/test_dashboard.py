"""The dashboard callback over its event model: line output, reports, and no lost events under load."""

import io
import json
import time
import pytest
from defusedxml import ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.callback import dashboard
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._dashboard_view import TerminalView
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import MigrationBoard
from rig.ansible_fakes import FakeClock, Host, Result, Stats, Task

GIB = 1 << 30


def make_callback(tmp_path, mode="line", clock=None, stream=None, **options):
    opts = {"mode": mode, "line_interval": 10.0, "refresh_interval": 0.5, "events_file": None,
            "summary_file": None, "junit_file": None, "keys": False, "theme": "dark"}
    opts.update(options)
    cb = dashboard.CallbackModule(stream=stream or io.StringIO(), clock=clock or time.time, live=False)
    cb._plugin_options = opts
    return cb


def attach(cb, view):
    """``view`` as one more sink of a callback started without one (mode off): drawn into a fake terminal."""
    cb.source.set_sinks(cb.source.sinks + (view,))
    return view


def line_mode(tmp_path, line_interval, playbook=None):
    """(clock, output, callback) of a line-mode run on a fake clock; the playbook started when named."""
    clock, out = FakeClock(), io.StringIO()
    cb = make_callback(tmp_path, mode="line", clock=clock, stream=out, line_interval=line_interval)
    if playbook:
        cb.v2_playbook_on_start(type("P", (), {"_file_name": playbook})())
    return clock, out, cb


def progress(host, task, done, total, rate=100e6, item=None):
    data = {"ansible_job_id": "j1", "started": True, "finished": False,
            "v2kvm_progress": {"ts": 0, "stage": "convert", "done": done, "total": total, "rate": rate,
                               "eta": (total - done) / rate, "source": "disk_convert"}}
    if item is not None:
        data["_ansible_item_label"] = item
    return Result(host, task, data)


def run_two_vms(cb, clock):
    web, db = Host("web01"), Host("db01")
    convert = Task("Convert each disk into the pool", "uuid-convert")
    info = Task("Read the source VM description", "uuid-info")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "/x/migrate.yml"})())
    for host in (web, db):
        cb.v2_runner_on_start(host, info)
        cb.v2_runner_on_ok(Result(host, info, {"changed": False, "spec": {
            "name": host.name + "-vm", "source": {"type": "ova"}}}))
        cb.v2_runner_on_start(host, convert)
    for step in range(1, 11):
        clock.now += 1
        cb.v2_runner_on_async_poll(progress(web, convert, step * GIB // 10, GIB, item="disk1.vmdk"))
        cb.v2_runner_on_async_poll(progress(db, convert, step * GIB // 20, GIB))
    cb.v2_runner_on_ok(Result(web, convert, {"changed": True}))
    cb.v2_runner_on_failed(Result(db, convert, {"msg": "qemu-img: [red]could not open[/red] <disk> & co"}))
    cb.v2_playbook_on_stats(Stats({"web01": {"failures": 0, "unreachable": 0},
                                   "db01": {"failures": 1, "unreachable": 0}}))


def test_event_model_folds_progress_and_verdicts():
    board = MigrationBoard()
    board.apply({"ts": 100.0, "type": "play_start", "hosts": ["a", "b", "c"]})
    board.apply({"ts": 101.0, "type": "task_start", "host": "a", "task": "Convert", "task_uuid": "u"})
    board.apply({"ts": 102.0, "type": "progress", "host": "a", "task_uuid": "u", "stage": "convert",
                 "done": 50, "total": 200, "rate": 25, "eta": 6})
    vm = board.vms["a"]
    assert (vm.status, vm.stage, vm.percent, vm.eta) == ("running", "convert", 25.0, 6)
    board.apply({"ts": 105.0, "type": "progress", "host": "a", "task_uuid": "u", "stage": "done",
                 "done": 200, "total": 200, "rate": 50, "eta": 0})
    board.apply({"ts": 106.0, "type": "task_end", "host": "a", "task_uuid": "u", "status": "changed"})
    board.apply({"ts": 106.0, "type": "task_end", "host": "b", "task_uuid": "v", "status": "failed",
                 "msg": "disk missing"})
    board.apply({"ts": 107.0, "type": "vm_end", "host": "a", "verdict": "succeeded"})
    board.apply({"ts": 107.0, "type": "vm_end", "host": "b", "verdict": "failed", "msg": "disk missing"})
    metrics = board.metrics(107.0)
    assert metrics["total"] == 3 and metrics["pending"] == 1
    assert (metrics["succeeded"], metrics["failed"], metrics["active"]) == (1, 1, 0)
    assert metrics["success_rate"] == 0.5 and metrics["error_rate"] == 0.5
    assert metrics["data_processed"] == 200
    assert metrics["average_throughput"] == pytest.approx(200 / 3)  # 200 bytes between ts 102 and 105
    assert metrics["average_duration"] == pytest.approx(3.5)  # a: 101 -> 107, b: 106 -> 107
    assert board.vms["b"].error == "disk missing"


def test_average_throughput_uses_the_module_clock_when_samples_arrive_together():
    # A 64 MiB conversion took 0.5 s on the target; its three samples reached the controller in one poll.
    board = MigrationBoard()
    board.apply({"ts": 100.0, "type": "task_start", "host": "a", "task": "Convert", "task_uuid": "u"})
    for stage, done, sample_ts in (("convert", 0, 50.0), ("verify", 64 << 20, 50.4), ("done", 64 << 20, 50.5)):
        board.apply({"ts": 101.0, "type": "progress", "host": "a", "task_uuid": "u", "stage": stage,
                     "done": done, "total": 64 << 20, "sample_ts": sample_ts})
    assert board.metrics(102.0)["average_throughput"] == pytest.approx((64 << 20) / 0.5)


def test_line_mode_prints_plain_progress_lines_at_the_interval(tmp_path):
    clock, out, cb = line_mode(tmp_path, 4.0)
    run_two_vms(cb, clock)
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    web_progress = [line for line in lines if " web01 " in line and "convert" in line]
    # 10 s of samples at a 4 s interval: the first line, then at +4 s and +8 s (plus the task-start line).
    assert 2 <= len(web_progress) <= 4, lines
    assert any("MB/s" in line and "%" in line for line in web_progress)
    assert any("db01 FAILED" in line and "[red]could not open[/red]" in line for line in lines)
    assert lines[-1].startswith("VMs 2: 1 succeeded, 1 failed")


def test_bookkeeping_tasks_never_become_the_vms_stage(tmp_path):
    """set_fact, includes and the role's argument check are not what a VM is doing: the stage column keeps
    the last real task and line mode writes no line for them."""
    clock, out, cb = line_mode(tmp_path, 0.0)
    web = Host("web01")
    check = Task("Validating arguments against arg spec 'main'", "uuid-check", "ansible.builtin.validate_argument_spec")
    convert = Task("Convert each disk into the pool", "uuid-convert")
    mark = Task("Mark the phase", "uuid-mark", "ansible.builtin.set_fact")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    cb.v2_runner_on_start(web, check)
    clock.now += 2
    cb.v2_runner_on_ok(Result(web, check, {"changed": False}))
    assert cb.source.board.vms["web01"].status == "running" and cb.source.board.vms["web01"].stage == ""
    cb.v2_runner_on_start(web, convert)
    clock.now += 2
    cb.v2_runner_on_async_poll(progress(web, convert, 1 << 20, 4 << 20))
    cb.v2_runner_on_start(web, mark)
    clock.now += 2
    cb.v2_runner_on_ok(Result(web, mark, {"changed": False, "ansible_facts": {"migrate_vm_phase": "define"}}))
    vm = cb.source.board.vms["web01"]
    assert vm.stage == "convert" and vm.total == 4 << 20, "the bar and stage of the real task stay"
    assert vm.phase == "define"
    text = out.getvalue()
    assert "Mark the phase" not in text and "Validating arguments" not in text, text
    assert "Convert each disk into the pool" in text or "convert" in text


def test_reports_are_valid_json_and_junit(tmp_path):
    clock = FakeClock()
    events, summary, junit = tmp_path / "ev.jsonl", tmp_path / "summary.json", tmp_path / "junit.xml"
    cb = make_callback(tmp_path, mode="off", clock=clock, events_file=str(events), summary_file=str(summary),
                       junit_file=str(junit))
    run_two_vms(cb, clock)
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert sum(1 for r in records if r["type"] == "progress") == 20
    assert records[0]["type"] == "run_start" and records[-1]["type"] == "run_end"
    data = json.loads(summary.read_text())
    by_host = {vm["host"]: vm for vm in data["vms"]}
    assert by_host["web01"]["status"] == "succeeded" and by_host["web01"]["name"] == "web01-vm"
    assert by_host["db01"]["status"] == "failed" and "could not open" in by_host["db01"]["error"]
    assert data["metrics"]["succeeded"] == 1 and data["metrics"]["failed"] == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {"web01", "db01"}
    assert cases["db01"].find("failure").get("message").startswith("qemu-img: [red]could not open[/red] <disk> & co")
    assert cases["web01"].find("failure") is None
    assert cases["web01"].get("classname") == "v2kvm.migrate.ova"


def test_replaying_the_event_log_rebuilds_the_same_board(tmp_path):
    clock = FakeClock()
    events = tmp_path / "ev.jsonl"
    cb = make_callback(tmp_path, mode="off", clock=clock, events_file=str(events))
    run_two_vms(cb, clock)
    replay = MigrationBoard()
    for line in events.read_text().splitlines():
        replay.apply(json.loads(line))
    assert replay.summary() == cb.source.board.summary()


def test_no_progress_event_is_lost_at_10000_per_second(tmp_path):
    events = tmp_path / "ev.jsonl"
    stream = io.StringIO()
    cb = make_callback(tmp_path, mode="off", events_file=str(events))
    cb._start()
    # Terminal view drawing into a fixed-size fake terminal, rate limited like the real one.
    view = attach(cb, TerminalView(cb.source.board, stream=stream, refresh_interval=0.5, keys=False,
                                   size=(160, 50)))
    hosts = [Host("vm%03d" % i) for i in range(100)]
    task = Task("Convert", "uuid-c")
    count = 10_000
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        cb.v2_runner_on_async_poll(progress(hosts[i % 100], task, i, count))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu  # what the events cost, whatever else the machine is doing
    renders = view.renders
    cb.v2_playbook_on_stats(Stats({h.name: {"failures": 0, "unreachable": 0} for h in hosts}))
    assert cb.source.board.progress_events == count
    assert sum(1 for line in events.read_text().splitlines() if '"type":"progress"' in line) == count
    assert cpu < 1.0, "%d progress events took %.2f s of CPU" % (count, cpu)
    assert 1 <= renders <= 2 + int(elapsed / 0.5)  # rate limited, not once per event


def test_terminal_view_collapses_a_thousand_vms_and_shows_text_literally():
    board = MigrationBoard()
    board.apply({"ts": 1.0, "type": "play_start", "hosts": ["vm%04d" % i for i in range(1000)]})
    for i in range(1000):
        host = "vm%04d" % i
        board.apply({"ts": 2.0, "type": "task_start", "host": host, "task": "Convert", "task_uuid": "u"})
        if i < 900:
            board.apply({"ts": 3.0, "type": "vm_end", "host": host, "verdict": "succeeded"})
        elif i < 950:
            board.apply({"ts": 3.0, "type": "task_end", "host": host, "task_uuid": "u", "status": "failed",
                         "msg": "[bold]no[/bold] space"})
            board.apply({"ts": 3.0, "type": "vm_end", "host": host, "verdict": "failed"})
        else:
            board.apply({"ts": 3.0, "type": "progress", "host": host, "task_uuid": "u", "stage": "convert",
                         "done": 30, "total": 100, "rate": 5e6, "eta": 14})
    stream = io.StringIO()
    view = TerminalView(board, stream=stream, keys=False, size=(150, 45))
    view.draw(4.0)
    view.close()
    screen = stream.getvalue()
    assert "900 succeeded" in screen
    assert "[bold]no[/bold] space" in screen  # markup in user text is shown, not interpreted
    assert "30.0%" in screen and "5.0 MB/s" in screen
    assert screen.count("\n") < 200  # a screenful per frame, not a line per VM


def test_keys_change_focus_and_theme_without_drawing():
    board = MigrationBoard()
    stream = io.StringIO()
    view = TerminalView(board, stream=stream, keys=False, size=(100, 30))
    view.key("l")
    view.key("d")
    assert (view.focus, view.theme, view.renders) == ("log", "light", 0)
    assert stream.getvalue() == ""
    view.event({"type": "task_start", "host": "a", "task": "t"})
    view.close()
    assert view.renders == 1


@pytest.mark.parametrize("environ,tty,plain", [
    ({"TERM": "xterm"}, True, False),
    ({"TERM": "dumb"}, True, True),
    ({"TERM": "xterm", "CI": "true"}, True, True),
    ({"TERM": "xterm", "AWX_HOST": "x"}, True, True),
    ({"TERM": "xterm", "JOB_ID": "12"}, True, True),
    ({"TERM": "xterm"}, False, True),
])
def test_plain_output_detection(environ, tty, plain):
    stream = type("S", (), {"isatty": lambda self: tty})()
    assert dashboard.plain_output_wanted(environ, stream) is plain


def test_a_frame_left_pending_by_the_rate_limit_is_drawn_by_the_next_event():
    clock = FakeClock(100.0)
    board = MigrationBoard()
    stream = io.StringIO()
    view = TerminalView(board, stream=stream, refresh_interval=0.5, keys=False, size=(120, 30), clock=clock)
    event = {"ts": 100.0, "type": "task_start", "host": "a", "task": "Convert", "task_uuid": "u"}
    board.apply(event)
    view.event(event)
    assert view.renders == 1 and not view.pending
    clock.now += 0.2
    event = {"ts": clock.now, "type": "progress", "host": "a", "task_uuid": "u", "stage": "convert",
             "done": 5, "total": 10, "rate": 1e6, "eta": 5}
    board.apply(event)
    view.event(event)
    assert view.renders == 1 and view.pending  # within the rate limit: left pending, not lost
    view.tick()
    assert view.renders == 1  # still too early
    clock.now += 0.4
    view.tick()  # e.g. the next task's banner or an async poll: the pending frame is drawn
    assert view.renders == 2 and not view.pending
    view.tick()
    assert view.renders == 2  # nothing new: nothing drawn
    view.close()
    assert "50.0%" in stream.getvalue()


def test_line_mode_shows_the_first_task_of_every_phase_whatever_the_interval(tmp_path):
    clock, out, cb = line_mode(tmp_path, 600.0, "migrate.yml")
    web = Host("web01")
    mark = Task("Mark the phase", "uuid-mark", "ansible.builtin.set_fact")
    steps = [("convert", "Convert each disk into the pool", "v2kvm.migrate.disk_convert"),
             ("convert", "Record the converted disks", "v2kvm.migrate.disk_convert"),
             ("define", "Define the libvirt domain", "v2kvm.migrate.domain"),
             ("validate", "Validate the migrated guest", "v2kvm.migrate.validate")]
    for number, (phase, name, action) in enumerate(steps):
        cb.v2_runner_on_start(web, mark)
        cb.v2_runner_on_ok(Result(web, mark, {"ansible_facts": {"migrate_vm_phase": phase}}))
        task = Task(name, "uuid-%d" % number, action)
        cb.v2_runner_on_start(web, task)
        cb.v2_runner_on_ok(Result(web, task, {"changed": True}))
        clock.now += 1
    text = out.getvalue()
    for _phase, name, _action in steps:
        # One line per phase: the second convert task is inside the interval and the same phase.
        assert (name in text) == (name != "Record the converted disks"), text
    # The first sample of each transfer (each disk) gets its line too; later ones wait for the interval.
    convert = Task("Convert each disk into the pool", "uuid-c2")
    cb.v2_runner_on_start(web, convert)
    for disk in ("disk1.vmdk", "disk2.vmdk"):
        for step in (1, 2, 3):
            clock.now += 1
            cb.v2_runner_on_async_poll(progress(web, convert, step * GIB // 4, GIB, item=disk))
    samples = [line for line in out.getvalue().splitlines() if "convert disk" in line]
    assert len(samples) == 2 and "disk1.vmdk 25.0%" in samples[0] and "disk2.vmdk 25.0%" in samples[1], samples
    # The last sample too: how the disk ended, its size and rate, though it came within the interval.
    clock.now += 1
    finished = progress(web, convert, GIB, GIB, item="disk2.vmdk")
    finished._result["v2kvm_progress"]["stage"] = "done"
    cb.v2_runner_on_async_poll(finished)
    last = out.getvalue().splitlines()[-1]
    assert "done disk2.vmdk 100.0% 1.0 GiB/1.0 GiB" in last and "MB/s" in last, last


def test_an_interrupted_run_still_ends_its_vms_and_writes_its_reports(tmp_path):
    clock = FakeClock()
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.json"
    cb = make_callback(tmp_path, mode="line", clock=clock, junit_file=str(junit), summary_file=str(summary))
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    web = Host("web01")
    cb.source.emit({"type": "play_start", "play": "migrate", "hosts": ["web01", "db01"]})
    info = Task("Read the source VM description", "uuid-info", "v2kvm.migrate.ova_info")
    convert = Task("Convert each disk into the pool", "uuid-convert")
    cb.v2_runner_on_start(web, info)
    cb.v2_runner_on_ok(Result(web, info, {"changed": False}))
    cb.v2_runner_on_start(web, convert)
    # Ctrl-C: ansible-playbook exits without v2_playbook_on_stats; the exit hook ends the run.
    cb._at_exit()
    assert cb.source.board.vms["web01"].status == "failed"
    error = cb.source.board.vms["web01"].error
    assert "interrupted" in error and "Convert each disk" in error
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "1" and "interrupted" in suite.find("testcase/failure").get("message")
    assert json.loads(summary.read_text())
    assert cb.source.board.log[-1][2] == "run interrupted" and cb.source.board.interrupted
    assert cb.source.board.vms["db01"].status == "pending"  # never started: a skipped testcase, not a failure
    cb._at_exit()  # a second call (or a normal end before it) changes nothing
    assert suite.get("skipped") == "1"


def test_a_skipped_task_gives_the_stage_back(tmp_path):
    cb = make_callback(tmp_path, mode="off")
    web = Host("web01")
    define = Task("Define the libvirt domain", "uuid-define", "v2kvm.migrate.domain")
    cleanup = Task("Remove the disks copied from vSphere", "uuid-cleanup", "ansible.builtin.file")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    cb.v2_runner_on_start(web, define)
    cb.v2_runner_on_ok(Result(web, define, {"changed": True}))
    cb.v2_runner_on_start(web, cleanup)
    assert cb.source.board.vms["web01"].stage == "Remove the disks copied from vSphere"  # announced before `when`
    cb.v2_runner_on_skipped(Result(web, cleanup, {"skipped": True}))
    assert cb.source.board.vms["web01"].stage == cb.source.board.vms["web01"].task == "Define the libvirt domain"
    cb.v2_runner_on_start(web, cleanup)
    cb.v2_runner_on_ok(Result(web, cleanup, {"changed": True}))
    assert cb.source.board.vms["web01"].stage == "Remove the disks copied from vSphere"  # it ran: it stays


def test_the_heartbeat_keeps_the_clock_moving_and_draws_the_last_burst():
    clock = FakeClock(100.0)
    board = MigrationBoard()
    stream = io.StringIO()
    view = TerminalView(board, stream=stream, refresh_interval=0.5, keys=False, size=(120, 30), clock=clock)
    for host in ("a", "b", "c"):  # one burst: the starts of a task that reports no progress
        event = {"ts": clock.now, "type": "task_start", "host": host, "task": "Boot and watch", "task_uuid": "u"}
        board.apply(event)
        view.event(event)
    assert view.renders == 1 and view.pending  # b and c are not on screen yet
    clock.now += 0.3
    view.beat()
    assert view.renders == 1  # within the rate limit
    clock.now += 0.3
    view.beat()
    assert view.renders == 2 and not view.pending
    assert stream.getvalue().count("Boot and watch") >= 4  # the first frame's a, then a, b and c
    clock.now += 0.5
    view.beat()
    assert view.renders == 2  # nothing new, and the clock was drawn less than a second ago
    clock.now += 0.6
    view.beat()
    assert view.renders == 3 and "0:01" in stream.getvalue()  # elapsed times advance without events
    board.apply({"ts": clock.now, "type": "run_end"})
    view.event({"type": "run_end"})
    rendered = view.renders
    clock.now += 5
    view.beat()
    assert view.renders == rendered  # a finished run is not redrawn
    view.close()


def test_line_mode_heartbeat_reports_a_long_task_without_progress(tmp_path):
    clock, out, cb = line_mode(tmp_path, 10.0, "/x/migrate.yml")
    web, db = Host("web01"), Host("db01")
    validate = Task("Validate the migrated guest", "uuid-validate", action="v2kvm.migrate.validate")
    mark = Task("Mark the phase", "uuid-mark", action="ansible.builtin.set_fact")
    cb.v2_runner_on_start(web, validate)
    cb.v2_runner_on_start(db, mark)
    for _second in range(25):
        clock.now += 1
        cb.source.beat()
    web_lines = [line for line in out.getvalue().splitlines() if " web01 " in line]
    # The start line, then one each 10 s while it runs: elapsed 0:10 and 0:20.
    assert len(web_lines) == 3 and "Validate the migrated guest" in web_lines[-1], web_lines
    assert "elapsed 0:20" in web_lines[-1], web_lines
    assert " db01 " not in out.getvalue()  # bookkeeping never gets a line, not even a heartbeat
    cb.v2_runner_on_ok(Result(web, validate, {"changed": True}))
    before = out.getvalue()
    clock.now += 30
    cb.source.beat()
    assert out.getvalue() == before  # the task ended: nothing runs, nothing to report


def test_role_task_names_are_readable_and_a_failed_vm_shows_its_phase(tmp_path):
    """Stage = the task's own name (role prefix stripped); wide enough for the role's task names; a failed
    VM's stage is the phase it failed in, not the rescue task that reported it."""
    clock = FakeClock()
    stream = io.StringIO()
    cb = make_callback(tmp_path, mode="off", clock=clock)
    cb._start()
    attach(cb, TerminalView(cb.source.board, stream=stream, refresh_interval=0.0, keys=False, size=(150, 40),
                            clock=clock))
    web, db = Host("web01"), Host("db01")
    phase = Task("Mark the phase", "uuid-phase")
    convert = Task("Convert each disk into the pool", "uuid-convert")
    validate = Task("Validate the migrated guest", "uuid-validate")
    report = Task("Report why the migration failed", "uuid-report")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    for host, name in ((web, "convert"), (db, "validate")):
        cb.v2_runner_on_start(host, phase)
        cb.v2_runner_on_ok(Result(host, phase, {"changed": False, "ansible_facts": {"migrate_vm_phase": name}}))
    cb.v2_runner_on_start(web, convert)
    cb.v2_runner_on_start(db, validate)
    clock.now += 1
    frame = stream.getvalue()
    assert "Convert each disk into the pool" in frame and "Validate the migrated guest" in frame
    cb.v2_runner_on_ok(Result(web, convert, {"changed": True}))
    cb.v2_runner_on_start(db, report)
    cb.v2_runner_on_failed(Result(db, report, {"msg": "validate failed: no boot marker"}))
    cb.v2_playbook_on_stats(Stats({"web01": {"failures": 0, "unreachable": 0},
                                   "db01": {"failures": 1, "unreachable": 0}}))
    assert cb.source.board.vms["db01"].stage == "failed in validate"
    assert cb.source.board.vms["web01"].stage == "done"
    assert "failed in validate" in stream.getvalue()


def test_a_rerun_that_changes_nothing_says_up_to_date_not_done(tmp_path):
    """A finished migration's re-run only looks its state up: the row says so instead of a plain done."""
    cb = make_callback(tmp_path, mode="off", clock=FakeClock())
    cb._start()
    web, db = Host("web01"), Host("db01")
    lookup = Task("Look up the migration on the target", "uuid-lookup", "v2kvm.migrate.migration_state")
    convert = Task("Convert each disk into the pool", "uuid-convert")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    for host in (web, db):
        cb.v2_runner_on_start(host, lookup)
        # The role asks each candidate host in a loop: the record is on the second one.
        cb.v2_runner_on_ok(Result(host, lookup, {"changed": False, "results": [
            {"item": {"name": "kvm1"}, "complete": False, "source_type": None},
            {"item": {"name": "kvm2"}, "complete": host is web, "source_type": "ova"}]}))
    cb.v2_runner_on_start(web, convert)
    cb.v2_runner_on_skipped(Result(web, convert, {"skipped": True}))
    cb.v2_runner_on_start(db, convert)
    cb.v2_runner_on_ok(Result(db, convert, {"changed": True}))
    cb.v2_playbook_on_stats(Stats({"web01": {"failures": 0, "unreachable": 0},
                                   "db01": {"failures": 0, "unreachable": 0}}))
    assert cb.source.board.vms["web01"].stage == "up to date (nothing changed)"
    assert cb.source.board.vms["web01"].source_type == "ova", "the recorded migration names the kind of source"
    assert cb.source.board.vms["db01"].stage == "done"


def test_the_event_log_is_buffered_but_reaches_the_file_early_and_at_the_end(tmp_path):
    events = tmp_path / "ev.jsonl"
    cb = make_callback(tmp_path, mode="off", events_file=str(events))
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "x.yml"})())
    assert '"run_start"' in events.read_text()  # the first event is flushed: a reader sees the run at once
    for i in range(50):
        cb.v2_runner_on_start(Host("h%d" % i), Task("t", "u"))
    cb.v2_playbook_on_stats(Stats({}))
    assert len(events.read_text().splitlines()) == 1 + 50 + 1


class _CopyingResult:
    """Like ansible-core's CallbackTaskResult: ``_result`` builds a deep copy, ``_return_data`` is the dict."""

    def __init__(self, host, task, data):
        self._host, self._task, self._return_data = host, task, data

    @property
    def _result(self):
        raise AssertionError("the callback asked for a deep copy of the result")


def test_results_are_read_without_a_deep_copy(tmp_path):
    cb = make_callback(tmp_path, mode="off")
    host, task = Host("web01"), Task("Convert", "u")
    cb.v2_runner_on_start(host, task)
    cb.v2_runner_on_async_poll(_CopyingResult(host, task, progress(host, task, 5, 10)._result))
    cb.v2_runner_on_ok(_CopyingResult(host, task, {"changed": True}))
    assert cb.source.board.progress_events == 1 and cb.source.board.vms["web01"].tasks_ok == 1


def test_controller_host_is_no_vm_but_its_failures_reach_the_log():
    board = MigrationBoard()
    board.apply({"ts": 1.0, "type": "play_start", "hosts": ["localhost"]})
    board.apply({"ts": 2.0, "type": "task_start", "host": "localhost", "task": "Plan", "task_uuid": "p"})
    board.apply({"ts": 3.0, "type": "task_end", "host": "localhost", "task": "Plan", "task_uuid": "p",
                 "status": "failed", "msg": "Node h9 not found in cluster"})
    board.apply({"ts": 4.0, "type": "play_start", "hosts": ["web01"]})
    board.apply({"ts": 5.0, "type": "vm_end", "host": "localhost", "verdict": "failed"})
    assert list(board.vms) == ["web01"] and board.metrics(5.0)["failed"] == 0
    assert any("Node h9 not found in cluster" in text for _ts, host, text in board.log if host == "localhost")


def test_line_mode_writes_no_start_line_for_a_task_that_turns_out_skipped(tmp_path):
    clock, out, cb = line_mode(tmp_path, 10.0, "migrate.yml")
    web = Host("web01")
    # Ansible announces every task before it evaluates `when`: these two are skipped.
    for number, name in enumerate(("Export the disks from vSphere", "Power the source VM back on")):
        task = Task(name, "uuid-skip-%d" % number, "v2kvm.migrate.vsphere_export")
        cb.v2_runner_on_start(web, task)
        clock.now += 0.1
        cb.v2_runner_on_skipped(Result(web, task, {"skipped": True, "skip_reason": "Conditional result was False"}))
    assert out.getvalue() == ""
    # A task that runs briefly gets its line when it ends; a long one at the first heartbeat after the grace,
    # stamped with the time it started.
    quick = Task("Ensure the storage pool that receives the disks", "uuid-pool", "v2kvm.migrate.storage_pool")
    cb.v2_runner_on_start(web, quick)
    clock.now += 0.2
    cb.source.beat()
    assert out.getvalue() == ""  # still within the grace: it may yet be skipped
    cb.v2_runner_on_ok(Result(web, quick, {"changed": False}))
    long = Task("Validate the migrated guest", "uuid-validate", "v2kvm.migrate.validate")
    clock.now += 10  # one line per VM per line_interval
    started = clock.now
    cb.v2_runner_on_start(web, long)
    clock.now += 3
    cb.source.beat()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "Ensure the storage pool" in lines[0] and "Validate the migrated guest" in lines[1], lines
    assert lines[1].startswith(time.strftime("%H:%M:%S", time.localtime(started))), lines
    assert "Export the disks" not in out.getvalue() and "Power the source" not in out.getvalue()
    # A progress sample proves the task runs: its start line comes first and still names the task.
    convert = Task("Convert each disk into the pool", "uuid-convert")
    cb.v2_runner_on_ok(Result(web, long, {"changed": True}))
    clock.now += 10
    cb.v2_runner_on_start(web, convert)
    cb.v2_runner_on_async_poll(progress(web, convert, GIB // 4, GIB, item="disk1.vmdk"))
    lines = out.getvalue().splitlines()[2:]
    assert len(lines) == 2 and "Convert each disk into the pool" in lines[0], lines
    assert "convert disk1.vmdk 25.0%" in lines[1], lines


HOSTILE = "boom\x1b[2J\x1b]0;owned\x07\r\nok: [db01] => all fine\u202e\x00"


def test_hostile_strings_are_escaped_in_every_output_and_junit_parses(tmp_path):
    """A failure message from a host, an item label and a spec name carrying ESC, CR/LF, BEL, NUL and a bidi
    override: line mode prints one line per event, the event log, summary and JUnit hold no raw control
    character, and JUnit (XML 1.0 cannot hold NUL or ESC) still parses."""
    clock, out = FakeClock(), io.StringIO()
    events, summary, junit = tmp_path / "ev.jsonl", tmp_path / "summary.json", tmp_path / "junit.xml"
    cb = make_callback(tmp_path, mode="line", clock=clock, stream=out, line_interval=0.0,
                       events_file=str(events), summary_file=str(summary), junit_file=str(junit))
    db = Host("db01")
    info, convert = Task("Read the source VM description", "u-info"), Task("Convert each disk", "u-conv")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    cb.v2_runner_on_start(db, info)
    cb.v2_runner_on_ok(Result(db, info, {"changed": False, "spec": {
        "name": "Web-Server-01-1a2b3c4d", "original_name": "Web Server 01" + HOSTILE, "source": {"type": "ova"}}}))
    cb.v2_runner_on_start(db, convert)
    clock.now += 1
    cb.v2_runner_on_async_poll(progress(db, convert, GIB // 2, GIB, item="disk" + HOSTILE))
    cb.v2_runner_on_failed(Result(db, convert, {"msg": HOSTILE}))
    cb.v2_playbook_on_stats(Stats({"db01": {"failures": 1, "unreachable": 0}}))

    printed = out.getvalue()
    for text in (printed, events.read_text(), summary.read_text(), junit.read_text()):
        assert not any(char in text for char in "\x1b\x07\r\x00\u202e"), repr(text[:300])
    assert not any(line.startswith("ok: [db01]") for line in printed.splitlines()), printed
    assert "boom\\x1b[2J\\x1b]0;owned\\x07\\r\\nok: [db01]" in printed
    case = ET.parse(junit).getroot().find("testsuite").find("testcase")
    assert case.find("failure").text.startswith("boom\\x1b[2J")
    props = {prop.get("name"): prop.get("value") for prop in case.find("properties")}
    assert props["vm_name"] == "Web-Server-01-1a2b3c4d" and props["source_name"].startswith("Web Server 01boom\\x1b")
    vm = {v["host"]: v for v in json.loads(summary.read_text())["vms"]}["db01"]
    assert vm["original_name"].startswith("Web Server 01") and vm["name"] == "Web-Server-01-1a2b3c4d"


def test_a_derived_domain_name_shows_with_the_sources_own_name(tmp_path):
    clock, stream = FakeClock(), io.StringIO()
    cb = make_callback(tmp_path, mode="off", clock=clock)
    cb._start()
    attach(cb, TerminalView(cb.source.board, stream=stream, refresh_interval=0.0, keys=False, size=(150, 40),
                            clock=clock))
    web = Host("web01")
    info = Task("Read the source VM description", "u-info")
    cb.v2_playbook_on_start(type("P", (), {"_file_name": "migrate.yml"})())
    cb.v2_runner_on_start(web, info)
    cb.v2_runner_on_ok(Result(web, info, {"changed": False, "spec": {
        "name": "Web-Server-01-1a2b3c4d", "original_name": "Web Server 01", "source": {"type": "ova"}}}))
    clock.now += 1
    cb.v2_runner_on_start(web, Task("Convert each disk", "u-conv"))
    assert "web01 (Web Server 01)" in stream.getvalue()
    assert cb.source.board.vms["web01"].name == "Web-Server-01-1a2b3c4d"


def test_under_ansible_runner_the_dashboard_asked_for_as_stdout_callback_prints_lines(tmp_path, monkeypatch):
    """navigator and AWX run ansible-runner, which replaces the stdout callback and keeps the one asked for in
    ORIGINAL_STDOUT_CALLBACK: auto then means line mode, not reports only."""
    cb = dashboard.CallbackModule(live=False)
    cb._plugin_options = {"mode": "auto"}
    monkeypatch.delenv("ORIGINAL_STDOUT_CALLBACK", raising=False)
    assert cb._choose_mode() == "off"
    monkeypatch.setenv("ORIGINAL_STDOUT_CALLBACK", "v2kvm.migrate.dashboard")
    monkeypatch.setattr(dashboard, "plain_output_wanted", lambda environ=None, stream=None: True)
    assert cb._choose_mode() == "line"


def test_a_signal_ignored_on_purpose_stays_ignored(tmp_path):
    """Under nohup SIGHUP is ignored and the run goes on: the dashboard must not end the run on it."""
    import signal

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        cb = make_callback(tmp_path)
        cb._exit_hook_wanted = True
        cb._start()  # registers the hook that ends the run on SIGTERM, SIGHUP and at exit
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert callable(signal.getsignal(signal.SIGTERM)), "SIGTERM still ends the run with its reports"
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
