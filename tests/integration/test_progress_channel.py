"""Live progress from disk_convert reaches the controller's callbacks WHILE the conversion runs:
on the controller, delegated over SSH, directly over SSH (an sshd this test starts on 127.0.0.1),
and with forks > 1 under the free strategy. The dashboard callback's event log timestamps each
sample on arrival, and the rig's recorder gives the task results."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from rig.sshd import ansible_vars, start_sshd, stop_sshd

pytestmark = pytest.mark.integration

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
BIN = os.path.dirname(sys.executable)
PYTHON = sys.executable
CACHE = os.path.join(REPO, ".work", "test-cache", "progress")
RECORD_CALLBACKS = os.path.join(TESTS, "rig", "callback_plugins")


@pytest.fixture(scope="session")
def slow_source():
    """A 768 MiB streamOptimized VMDK, half random data: qemu-img needs several seconds to inflate it."""
    path = os.path.join(CACHE, "slow-source.vmdk")
    if os.path.exists(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    raw = path + ".raw"
    with open(raw, "wb") as fh:
        for i in range(768):
            fh.write(os.urandom(1 << 19) + bytes([i % 251]) * (1 << 19))
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, path + ".part"],
                   check=True)
    os.unlink(raw)
    os.replace(path + ".part", path)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An sshd on a free port of 127.0.0.1 with its own host key and authorized_keys, stopped by PID."""
    if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
        pytest.skip("sshd is not installed (Debian package openssh-server)")
    server = start_sshd(str(tmp_path_factory.mktemp("sshd")))
    yield server
    stop_sshd(server)


def _ssh_vars(sshd):
    return " ".join("%s='%s'" % (key, value) if " " in str(value) else "%s=%s" % (key, value)
                    for key, value in ansible_vars(sshd, PYTHON).items())


def _run(tmp_path, inventory_lines, tasks, forks=1, strategy="linear", check=False):
    work = tmp_path / "run"
    work.mkdir(exist_ok=True)
    inventory = work / "inventory"
    inventory.write_text("\n".join(inventory_lines) + "\n")
    playbook = work / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "vms", "gather_facts": False, "strategy": strategy,
                                     "tasks": tasks}]))
    events, record = work / "events.jsonl", work / "record.json"
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_CALLBACK_PLUGINS": RECORD_CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "test_record,v2kvm.migrate.dashboard",
        "V2KVM_TEST_RECORD": str(record),
        "V2KVM_DASHBOARD_EVENTS_FILE": str(events),
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_ASYNC_DIR": _ASYNC_DIR,
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), str(playbook)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ([json.loads(line) for line in events.read_text().splitlines()],
            json.loads(record.read_text())["results"], proc.stdout)


def _convert_task(src, dest_dir, **extra):
    task = {"name": "Convert", "v2kvm.migrate.disk_convert": {
        "src": src, "dest": "%s/{{ inventory_hostname }}.qcow2" % dest_dir, "force": True}}
    task.update(extra)
    return task


def _assert_live(events, host, tmp_dest, src):
    """Samples for `host` arrived at least once a second while the task ran, and before it ended."""
    end = [e for e in events if e["type"] == "task_end" and e["host"] == host and e["task"] == "Convert"]
    assert len(end) == 1 and end[0]["status"] == "changed", end
    samples = [e for e in events if e["type"] == "progress" and e["host"] == host]
    converting = [e for e in samples if e["stage"] == "convert"]
    assert len(converting) >= 3, samples
    # Received (controller clock) well before the task result: live, not replayed at the end.
    assert converting[0]["ts"] < end[0]["ts"] - 2.0
    done = [e["done"] for e in converting]
    assert done == sorted(done) and done[-1] > done[0]
    assert samples[-1]["stage"] == "done" and samples[-1]["done"] == samples[-1]["total"] > 0
    gaps = [b["ts"] - a["ts"] for a, b in zip(converting, converting[1:])]
    assert max(gaps) < 2.5, gaps  # ~1 s polls; slack for a loaded 2-core box
    dest = os.path.join(tmp_dest, "%s.qcow2" % host)
    same = subprocess.run(["qemu-img", "compare", "-f", "vmdk", "-F", "qcow2", src, dest],
                          capture_output=True, text=True, check=False)
    assert same.returncode == 0, same.stdout + same.stderr


def _assert_plain_result(results, host):
    result = [r for r in results if r["host"] == host and r["task"] == "Convert"][0]
    assert result["status"] == "ok" and result["changed"] is True
    data = result["result"]
    for key in ("ansible_job_id", "started", "finished", "results_file"):
        assert key not in data, "async bookkeeping leaked into the result: %s" % key
    # v2 (BLAKE3) where the target has the blake3 package, else v1 (sha256): either is a complete digest.
    assert data["dest_format"] == "qcow2" and re.fullmatch(r"content-v[12]:[0-9a-f]{64}", data["content_digest"])
    # Every line of the progress file was read whole: none was cut (and skipped) by a misplaced offset.
    assert not [w for w in data.get("warnings", []) if "not progress samples" in str(w)], data["warnings"]


def _our_async_files():
    async_dir = os.path.expanduser(_ASYNC_DIR)
    return set() if not os.path.isdir(async_dir) else {n for n in os.listdir(async_dir) if n.startswith("v2kvm-")}


@pytest.fixture(autouse=True)
def _async_files_before():
    """Each test gets its own async dir (still under ~, so the action's ~ expansion is exercised): other
    runs on a shared machine put their job and progress files in ~/.ansible_async at any time, and one of
    theirs appearing during a test is not this test's leftover. What was there at the start is not either."""
    global _BEFORE, _ASYNC_DIR
    _ASYNC_DIR = "~/.ansible_async-v2kvm-test-%s" % uuid.uuid4().hex[:12]
    _BEFORE = _our_async_files()
    yield
    shutil.rmtree(os.path.expanduser(_ASYNC_DIR), ignore_errors=True)


_BEFORE = set()
_ASYNC_DIR = "~/.ansible_async"


def _no_leftovers():
    return sorted(_our_async_files() - _BEFORE)


def test_progress_arrives_while_converting_locally_with_forks_and_free_strategy(tmp_path, slow_source):
    dest = tmp_path / "out"
    dest.mkdir()
    hosts = ["vm%d ansible_connection=local ansible_python_interpreter=%s" % (i, PYTHON) for i in (1, 2)]
    events, results, _output = _run(tmp_path, ["[vms]", *hosts], [_convert_task(slow_source, str(dest))],
                                    forks=2, strategy="free")
    for host in ("vm1", "vm2"):
        _assert_live(events, host, str(dest), slow_source)
        _assert_plain_result(results, host)
    assert os.path.isdir(os.path.expanduser(_ASYNC_DIR)), "the jobs did not run in the test's own async dir"
    assert _no_leftovers() == []


def test_progress_arrives_while_converting_delegated_over_ssh(tmp_path, slow_source, sshd):
    dest = tmp_path / "out"
    dest.mkdir()
    lines = ["conv01 " + _ssh_vars(sshd), "[vms]",
             "web01 ansible_connection=local ansible_python_interpreter=%s" % PYTHON]
    events, results, _output = _run(tmp_path, lines, [_convert_task(slow_source, str(dest), delegate_to="conv01")])
    _assert_live(events, "web01", str(dest), slow_source)
    _assert_plain_result(results, "web01")
    assert _no_leftovers() == []


def test_progress_arrives_while_converting_over_ssh(tmp_path, slow_source, sshd):
    dest = tmp_path / "out"
    dest.mkdir()
    user_progress = tmp_path / "user.progress"
    user_progress.write_text('{"ts":1,"stage":"convert","done":1,"total":9,"rate":0,"eta":null}\n')  # an old run
    task = _convert_task(slow_source, str(dest))
    task["v2kvm.migrate.disk_convert"]["progress_file"] = str(user_progress)
    events, results, _output = _run(tmp_path, ["[vms]", "db01 " + _ssh_vars(sshd)], [task])
    _assert_live(events, "db01", str(dest), slow_source)
    _assert_plain_result(results, "db01")
    samples = [e for e in events if e["type"] == "progress"]
    assert all(e["total"] != 9 for e in samples)  # lines of an earlier run are not replayed
    assert user_progress.exists()  # the caller's own progress file is kept for its readers


def test_check_mode_runs_the_plain_way_and_sends_no_progress(tmp_path, slow_source):
    dest = tmp_path / "out"
    dest.mkdir()
    host = "vm1 ansible_connection=local ansible_python_interpreter=%s" % PYTHON
    events, results, _output = _run(tmp_path, ["[vms]", host], [_convert_task(slow_source, str(dest))],
                                    check=True)
    assert [e for e in events if e["type"] == "progress"] == []
    result = [r for r in results if r["task"] == "Convert"][0]
    assert result["changed"] is True and result["result"]["actual_size"] is None
    assert os.listdir(dest) == []


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _start_throttled_conversion(tmp_path, slow_source, orphan_timeout):
    """ansible-playbook converting slowly on the controller (local connection); returns (process, dest, .part)
    once qemu-img writes the .part."""
    dest = tmp_path / "out"
    dest.mkdir()
    work = tmp_path / "run"
    work.mkdir()
    (work / "inventory").write_text("[vms]\nvm1 ansible_connection=local ansible_python_interpreter=%s\n" % PYTHON)
    task = _convert_task(slow_source, str(dest))
    # Throttled: however fast the machine, the conversion is still running when the interrupt lands.
    task["v2kvm.migrate.disk_convert"]["rate_limit"] = 16 * 1024 * 1024
    play = {"hosts": "vms", "gather_facts": False, "tasks": [task],
            "vars": {"v2kvm_progress_orphan_timeout": orphan_timeout}}
    (work / "play.yml").write_text(json.dumps([play]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_ASYNC_DIR=_ASYNC_DIR, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", str(work / "inventory"),
                             str(work / "play.yml")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    part = dest / ".vm1.qcow2.part"
    deadline = time.time() + 60
    while not (part.exists() and part.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.1)
    assert part.exists(), "the conversion never started"
    assert _processes_mentioning(str(part)), "qemu-img is not running"
    return proc, dest, part


def _wait_until_gone(part, dest, seconds):
    deadline = time.time() + seconds
    while (_processes_mentioning(str(part)) or os.listdir(dest)) and time.time() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(part)) == [], "qemu-img kept running"
    assert sorted(os.listdir(dest)) == [], "a half-made or finished image was left: %s" % os.listdir(dest)


def _descendants(root):
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


ORPHAN_TIMEOUT = 5  # seconds; the watchdog is checked every 0.5 s and disk_convert cleans up in about a second


def test_interrupting_the_run_stops_the_conversion_on_the_target(tmp_path, slow_source):
    """Ctrl-C (what the dashboard's q sends) stops qemu-img on the target and leaves no .part behind.

    The cancel reaches the module at once; if it ever missed (the module outside the process group that
    async_wrapper sets up too late on a loaded host was such a miss), the orphan watchdog stops it within
    ORPHAN_TIMEOUT of the last poll, which the wait below leaves room for."""
    proc, dest, part = _start_throttled_conversion(tmp_path, slow_source, ORPHAN_TIMEOUT)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0, out
    _wait_until_gone(part, dest, 15 + ORPHAN_TIMEOUT)
    assert _no_leftovers() == []


def test_a_killed_controller_leaves_no_conversion_running_on_the_target(tmp_path, slow_source):
    """SIGKILL to ansible-playbook and every worker (no cancel can run): the module notices the heartbeat
    go stale and stops itself the way a Ctrl-C would (qemu-img gone, no .part)."""
    proc, dest, part = _start_throttled_conversion(tmp_path, slow_source, ORPHAN_TIMEOUT)
    # Polled, the conversion outlives the allowed silence: the watchdog leaves a healthy run alone.
    time.sleep(ORPHAN_TIMEOUT + 2)
    assert _processes_mentioning(str(part)), "the conversion stopped while the controller was still polling"
    assert part.exists()
    for pid in _descendants(proc.pid):  # the background job left this tree when async_wrapper daemonized
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=30)
    assert _processes_mentioning(str(part)), "killing the controller stopped the job by itself"
    _wait_until_gone(part, dest, ORPHAN_TIMEOUT + 30)
    progress = [n for n in _no_leftovers() if n.endswith(".progress")]
    assert len(progress) == 1, _no_leftovers()
    path = os.path.join(os.path.expanduser(_ASYNC_DIR), progress[0])
    deadline = time.time() + 15  # the module writes its last line after removing the .part
    while time.time() < deadline:
        with open(path) as fh:
            last = json.loads(fh.read().splitlines()[-1])
        if last["stage"] == "failed":
            break
        time.sleep(0.2)
    assert last["stage"] == "failed", last  # the module's own clean-up ran: it was not just killed
    assert not [n for n in _no_leftovers() if n.endswith(".alive")]  # the watchdog removed its heartbeat
