"""Between Ansible's events the dashboard stays live: during a task that reports no progress the
terminal shows every VM on that task with its elapsed time advancing, and line mode keeps writing
a line per VM. Real ansible-playbook runs, the terminal view in tmux."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from test_dashboard_tmux import Tmux

pytestmark = [pytest.mark.integration]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
HOSTS = ("vm1", "vm2", "vm3")


def _write_play(tmp_path, seconds):
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Get ready", "ansible.builtin.command": "true"},
        {"name": "Wait quietly", "ansible.builtin.command": "sleep %d" % seconds}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts").write_text("".join("%s ansible_connection=local ansible_python_interpreter=%s\n"
                                            % (host, sys.executable) for host in HOSTS))


def _env(**extra):
    env = {"ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "v2kvm.migrate.dashboard"}
    env.update(extra)
    return env


def _elapsed(screen, host):
    for line in screen.splitlines():
        if re.search(r"\b%s\b" % host, line) and "Wait quietly" in line:
            match = re.search(r"\s(\d+:\d\d)\s", line)
            if match:
                minutes, seconds = match.group(1).split(":")
                return int(minutes) * 60 + int(seconds)
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_terminal_stays_live_during_a_task_without_progress(tmp_path):
    _write_play(tmp_path, 8)
    exports = " ".join("%s=%s" % item for item in _env(TERM="xterm-256color").items())
    command = ("env -u CI -u JOB_ID -u COLUMNS -u LINES %s %s -f 3 -i %s %s; echo EXIT=$?; sleep 60"
               % (exports, os.path.join(BIN, "ansible-playbook"), tmp_path / "hosts", tmp_path / "play.yml"))
    term = Tmux(command)
    try:
        samples = []  # (time, {host: elapsed seconds on screen}) while all three wait
        deadline = time.time() + 90
        while time.time() < deadline:
            screen = term.capture()
            if "EXIT=" in screen:
                break
            seen = {host: _elapsed(screen, host) for host in HOSTS}
            if all(value is not None for value in seen.values()):
                samples.append((time.time(), seen))
            time.sleep(0.5)
        assert "EXIT=0" in term.capture(), term.capture()
    finally:
        term.close()
    # All three show the quiet task (the last of the burst of starts is drawn too) ...
    assert samples, "never saw every VM on 'Wait quietly'"
    first_time, first = samples[0]
    last_time, last = samples[-1]
    assert last_time - first_time >= 3, samples
    # ... and their elapsed times advance with no event arriving.
    for host in HOSTS:
        assert last[host] - first[host] >= 2, (host, samples)


def test_line_mode_keeps_reporting_a_task_without_progress(tmp_path):
    _write_play(tmp_path, 9)
    env = dict(os.environ, **_env(V2KVM_DASHBOARD_MODE="line", V2KVM_DASHBOARD_LINE_INTERVAL="2"))
    argv = [os.path.join(BIN, "ansible-playbook"), "-f", "3", "-i", str(tmp_path / "hosts"), str(tmp_path / "play.yml")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Callback dispatch" not in proc.stdout + proc.stderr
    for host in HOSTS:
        waiting = [line for line in proc.stdout.splitlines() if " %s " % host in line and "Wait quietly" in line]
        # Heartbeat lines every 2 s (checked each second) during the 9 s sleep, whatever the start line did.
        assert len(waiting) >= 3, proc.stdout
        assert re.search(r"elapsed 0:(0[6-9]|1[0-9])", waiting[-1]), waiting
