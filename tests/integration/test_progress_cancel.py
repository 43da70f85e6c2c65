"""The cancel command of the progress action against a stand-in for async_wrapper that loses the race it
loses on a loaded host: its supervisor moves the child into a process group of its own (setpgid) only after
the child has started the module, so the module stays in the session's first group. A process-group kill
missed it (the conversion ran to its end after Ctrl-C); the cancel must stop it anyway, and spare the
supervisor, which removes the job's tmpdir once its child is gone."""

import os
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._progress_action import cancel_command

pytestmark = pytest.mark.integration

# Same daemonizing as ansible's async_wrapper: fork, setsid, fork; then the supervisor forks the child and
# sets its group late (here after a pause, so the race is always lost).
WRAPPER = r"""
import os, signal, subprocess, sys, time
# A process of the test session may have SIGCHLD ignored (inherited across exec), and then the supervisor's
# waitpid fails with ECHILD; async_wrapper under an Ansible worker runs with the default.
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
jid, state = sys.argv[1], sys.argv[3]
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    time.sleep(float(sys.argv[4]))  # a daemonizing parent slow to exit still matches the job id
    sys.exit(0)
sub_pid = os.fork()
if sub_pid:
    time.sleep(0.5)
    os.setpgid(sub_pid, sub_pid)
    open(os.path.join(state, "grouped"), "w").close()
    os.waitpid(sub_pid, 0)
    open(os.path.join(state, "supervisor-saw-the-end"), "w").close()
    sys.exit(0)
subprocess.Popen([sys.executable, os.path.join(state, "module.py"), state]).wait()
"""

MODULE = r"""
import os, signal, sys, time
state = sys.argv[1]
def on_term(signum, frame):
    open(os.path.join(state, "module-cleaned-up"), "w").close()
    sys.exit(1)
signal.signal(signal.SIGTERM, on_term)
with open(os.path.join(state, "module.pid"), "w") as fh:
    fh.write(str(os.getpid()))
time.sleep(600)
"""


def _wait(path, seconds=15):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(path)


def _parent(pid):
    with open("/proc/%d/stat" % pid) as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("linger", ["0", "5"], ids=["daemonized", "daemonizing-parent-still-alive"])
def test_cancel_stops_a_module_outside_the_supervised_group_and_spares_the_supervisor(tmp_path, linger):
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "async_wrapper.py").write_text(WRAPPER)
    (state / "module.py").write_text(MODULE)
    jid = "j%d" % (uuid.uuid4().int % 10 ** 12)
    subprocess.run([sys.executable, str(tmp_path / "async_wrapper.py"), jid, "600", str(state), linger], check=True)
    module_pid = None
    try:
        assert _wait(str(state / "grouped")) and _wait(str(state / "module.pid"))
        module_pid = int((state / "module.pid").read_text())
        wrappers = [int(p) for p in subprocess.run(["pgrep", "-f", "async_wrapper.py %s " % jid],
                                                   capture_output=True, text=True, check=False).stdout.split()]
        # The supervised child leads its group and its parent, the supervisor, matches too.
        child = [p for p in wrappers if os.getpgid(p) == p and _parent(p) in wrappers]
        assert len(wrappers) == (2 if linger == "0" else 3) and len(child) == 1
        # The lost race: the module is not in the group the supervisor gave its child.
        assert os.getpgid(module_pid) != child[0]
        job_file = tmp_path / ("%s.1234" % jid)
        job_file.write_text("{}")
        subprocess.run(["sh", "-c", cancel_command("%s.1234" % jid, [str(job_file)])], check=True, timeout=30)
        assert _wait(str(state / "module-cleaned-up")), "the module never got SIGTERM"
        assert _wait(str(state / "supervisor-saw-the-end")), "the supervisor was killed with its child"
        assert not job_file.exists()
    finally:
        for pid in [module_pid] if module_pid else []:
            if _alive(pid):
                os.kill(pid, 9)
