"""The target lock between real processes holding a real flock: a free lock is taken and its file removed on
release; a holder left by a killed run of the same job is stopped at once (SIGTERM, then SIGKILL for it and
its children); another run's holder is waited for while its heartbeat beats and taken over once it has been
silent; a holder that died leaves a file the next owner takes; contenders never overlap."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils._target_lock import TargetLock, lock_path

COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(_target_lock.__file__), *[os.pardir] * 5))

HOLDER = r"""
import os, signal, subprocess, sys, time
from ansible_collections.v2kvm.migrate.plugins.module_utils._target_lock import TargetLock

path, heartbeat, mode, marker = sys.argv[1:5]

def on_term(signum, frame):
    with open(marker, "w") as fh:
        fh.write("term")
    if mode != "stubborn":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
lock = TargetLock(path, heartbeat=heartbeat or None, what="test holder").acquire()
if mode == "stubborn":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(marker + ".child", "w") as fh:
        fh.write(str(child.pid))
print("locked", flush=True)
if mode == "brief":
    time.sleep(float(os.environ.get("HOLD_SECONDS", "1")))
    sys.exit(0)
while True:
    time.sleep(0.1)
"""


def _env():
    return dict(os.environ, PYTHONPATH=COLLECTIONS)


def start_holder(tmp_path, name, heartbeat="", mode="normal", env=None):
    marker = str(tmp_path / ("%s.marker" % name))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, target(tmp_path), heartbeat,
                             mode, marker], stdout=subprocess.PIPE, text=True, env=dict(_env(), **(env or {})))
    assert proc.stdout.readline().strip() == "locked"
    return proc, marker


def target(tmp_path):
    return lock_path(str(tmp_path / "disk.qcow2.lock-target"))


def gone(pid):
    """The process has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def beat(path):
    with open(path, "w") as fh:
        fh.write("600\n")


def test_lock_path_is_hidden_beside_the_object(tmp_path):
    assert lock_path("/pool/web01-disk0.qcow2") == "/pool/.web01-disk0.qcow2.v2kvm.lock"
    assert lock_path("/work/web01/") == "/work/.web01.v2kvm.lock"
    path = _target_lock.state_lock_path("kvm_migrate", "web 01/x", base=str(tmp_path / "locks"))
    assert os.path.dirname(path) == str(tmp_path / "locks")
    assert os.path.basename(path) == ".kvm_migrate-web%2001%2Fx.v2kvm.lock"


def test_free_lock_records_the_owner_and_release_removes_the_file(tmp_path):
    path = target(tmp_path)
    lock = TargetLock(path, heartbeat=str(tmp_path / "p.alive"), what="convert").acquire()
    with open(path) as fh:
        owner = json.load(fh)
    assert owner["pid"] == os.getpid() and owner["what"] == "convert"
    assert owner["heartbeat"] == str(tmp_path / "p.alive")
    assert lock.taken_over is None
    lock.release()
    assert not os.path.exists(path)
    lock.release()  # twice is harmless


def test_orphan_of_the_same_job_is_stopped_at_once(tmp_path):
    alive = str(tmp_path / "vm-disk0.progress.alive")
    beat(alive)  # fresh: the new run's controller beats on the same file
    proc, marker = start_holder(tmp_path, "orphan", heartbeat=alive)
    began = time.monotonic()
    lock = TargetLock(target(tmp_path), heartbeat=alive, silence=600, grace=20).acquire()
    assert time.monotonic() - began < 15
    assert proc.wait(timeout=30) == 0
    with open(marker) as fh:
        assert fh.read() == "term"  # its own SIGTERM clean-up ran
    assert lock.taken_over["pid"] == proc.pid and lock.taken_over["signal"] == "SIGTERM"
    assert "killed run" in lock.taken_over["reason"]
    lock.release()


def test_a_holder_that_ignores_sigterm_is_killed_with_its_children(tmp_path):
    alive = str(tmp_path / "job.alive")
    beat(alive)
    proc, marker = start_holder(tmp_path, "stubborn", heartbeat=alive, mode="stubborn")
    with open(marker + ".child") as fh:
        child = int(fh.read())
    lock = TargetLock(target(tmp_path), heartbeat=alive, grace=1.0).acquire()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert lock.taken_over["signal"] == "SIGKILL"
    deadline = time.monotonic() + 30
    while not gone(child):
        assert time.monotonic() < deadline, "the holder's child survived"
        time.sleep(0.05)
    lock.release()


def test_another_runs_holder_is_waited_for_while_its_heartbeat_beats_then_taken_over(tmp_path):
    theirs = str(tmp_path / "other-run.progress.alive")
    beat(theirs)
    proc, marker = start_holder(tmp_path, "other", heartbeat=theirs)
    waits = []

    def on_wait(holder, waited):
        waits.append((holder["pid"], waited))
        if waited < 3:
            beat(theirs)  # their controller still polls during the first 3 s

    began = time.monotonic()
    lock = TargetLock(target(tmp_path), heartbeat=str(tmp_path / "mine.alive"), silence=2, grace=20,
                      on_wait=on_wait).acquire()
    waited = time.monotonic() - began
    assert waited >= 3 + 2 - 0.5, waited  # beat for 3 s, then 2 s of silence
    assert waits and all(pid == proc.pid for pid, _waited in waits)
    assert lock.taken_over["pid"] == proc.pid and "silent" in lock.taken_over["reason"]
    assert proc.wait(timeout=30) == 0
    lock.release()


def test_an_old_heartbeat_counts_its_silence_from_its_mtime(tmp_path):
    theirs = str(tmp_path / "killed-long-ago.alive")
    beat(theirs)
    os.utime(theirs, (time.time() - 3600, time.time() - 3600))
    proc, _marker = start_holder(tmp_path, "old", heartbeat=theirs)
    lock = TargetLock(target(tmp_path), heartbeat=str(tmp_path / "mine.alive"), silence=30, grace=20).acquire()
    assert lock.taken_over["pid"] == proc.pid
    proc.wait(timeout=30)
    lock.release()


def test_a_holder_without_heartbeat_is_waited_for_until_it_finishes(tmp_path):
    proc, marker = start_holder(tmp_path, "plain", mode="brief", env={"HOLD_SECONDS": "2"})
    waits = []
    lock = TargetLock(target(tmp_path), heartbeat=str(tmp_path / "mine.alive"), silence=0.5,
                      on_wait=lambda holder, waited: waits.append(waited)).acquire()
    assert proc.wait(timeout=30) == 0
    assert lock.taken_over is None and not os.path.exists(marker)  # never signalled
    assert waits
    lock.release()
    assert not os.path.exists(target(tmp_path))


def test_a_killed_holder_leaves_a_file_the_next_owner_takes_and_removes(tmp_path):
    proc, _marker = start_holder(tmp_path, "dead", heartbeat=str(tmp_path / "x.alive"))
    proc.kill()
    proc.wait(timeout=30)
    path = target(tmp_path)
    assert os.path.exists(path)  # SIGKILL: no clean-up, but the kernel dropped the flock
    began = time.monotonic()
    lock = TargetLock(path, silence=600).acquire()
    assert time.monotonic() - began < 5 and lock.taken_over is None
    lock.release()
    assert not os.path.exists(path)


COUNTER = r"""
import os, sys, time
from ansible_collections.v2kvm.migrate.plugins.module_utils._target_lock import TargetLock

path, log = sys.argv[1:3]
for _round in range(15):
    lock = TargetLock(path, poll=0.01).acquire()
    with open(log, "a") as fh:
        fh.write("in %d\n" % os.getpid())
    time.sleep(0.005)
    with open(log, "a") as fh:
        fh.write("out %d\n" % os.getpid())
    lock.release()
"""


@pytest.mark.parametrize("contenders", [4])
def test_contenders_never_overlap(tmp_path, contenders):
    log = str(tmp_path / "log")
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER, target(tmp_path), log], env=_env())
             for _proc in range(contenders)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with open(log) as fh:
        lines = fh.read().split("\n")[:-1]
    assert len(lines) == contenders * 15 * 2
    for first, second in zip(lines[::2], lines[1::2]):
        assert first.split()[0] == "in" and second == "out " + first.split()[1], (first, second)
    assert not os.path.exists(target(tmp_path))
