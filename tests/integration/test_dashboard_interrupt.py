"""Ctrl-C (or q) stops ansible-playbook before Ansible sends its stats: the dashboard still ends the run,
with the running VMs marked interrupted in the reports and a closing metrics line."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from defusedxml import ElementTree as ET

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


# SIGINT: Ctrl-C and the q key (exit 99). SIGTERM: ansible-playbook stops its workers and kills itself with
# the default action, so no atexit hook runs. SIGHUP: the terminal or SSH session of the run closed.
@pytest.mark.parametrize("signum, returncode, seconds", [(signal.SIGINT, 99, 37), (signal.SIGTERM, -signal.SIGTERM, 38),
                                                         (signal.SIGHUP, -signal.SIGHUP, 39)])
def test_an_interrupted_run_writes_reports_that_say_so(tmp_path, signum, returncode, seconds):
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Wait quietly", "ansible.builtin.command": "sleep %d" % seconds}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts").write_text("".join("%s ansible_connection=local ansible_python_interpreter=%s\n"
                                            % (host, sys.executable) for host in ("vm1", "vm2")))
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_STDOUT_CALLBACK="v2kvm.migrate.dashboard", V2KVM_DASHBOARD_MODE="line",
               V2KVM_DASHBOARD_JUNIT_FILE=str(junit), V2KVM_DASHBOARD_SUMMARY_FILE=str(summary),
               PATH=BIN + os.pathsep + os.environ["PATH"])
    # The signals' default actions, whatever this test inherited (under nohup SIGHUP is ignored).
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-f", "2", "-i", str(tmp_path / "hosts"),
                             str(tmp_path / "play.yml")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_signals)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if sum("Wait quietly" in seen for seen in lines) == 2:
                break
        # Signal only once both tasks run their command: a worker stopped while it still starts the module can
        # leave the command to start afterwards, which is Ansible's race, not what this test is about.
        deadline = time.monotonic() + 30
        while len(_pids("sleep %d" % seconds)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signum)
        lines.extend(proc.stdout)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines)
    # Workers only get SIGINT and SIGTERM from ansible-playbook; after a hang-up they finish on their own.
    leftovers = "\n".join(_pids("sleep %d" % seconds))
    subprocess.run(["pkill", "-f", "sleep %d" % seconds], check=False)
    assert proc.returncode == returncode, output
    assert "VMs 2: 0 succeeded, 2 failed" in output, output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "2", ET.tostring(suite)
    for failure in suite.findall("testcase/failure"):
        assert failure.get("message") == "interrupted: the run stopped during Wait quietly"
    report = json.loads(summary.read_text())
    assert report["interrupted"] is True and {vm["status"] for vm in report["vms"]} == {"failed"}
    if signum != signal.SIGHUP:
        assert not leftovers.strip(), leftovers


def _default_signals():
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _pids(pattern):
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout.split()
