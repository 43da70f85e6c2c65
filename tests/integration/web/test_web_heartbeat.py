"""A run reporting to a standalone web dashboard: events that arrive in a burst just before a long
quiet task (its starts on every VM) reach the server while that task runs, not when it ends; and an
interrupted run ends there too."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from web.conftest import REPO, TOKEN

pytestmark = pytest.mark.integration
BIN = os.path.dirname(sys.executable)
HOSTS = ("vm1", "vm2", "vm3")


def _start_run(tmp_path, server, tasks):
    """ansible-playbook on three local hosts, reporting to the standalone server."""
    play = [{"hosts": "all", "gather_facts": False, "tasks": tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts").write_text("".join("%s ansible_connection=local ansible_python_interpreter=%s\n"
                                            % (host, sys.executable) for host in HOSTS))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_CALLBACKS_ENABLED="v2kvm.migrate.web", V2KVM_WEB_URL=server.url, V2KVM_WEB_TOKEN=TOKEN,
               ANSIBLE_FORKS="3", PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts"),
                             str(tmp_path / "play.yml")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _jobs(server):
    return json.loads(urllib.request.urlopen(server.url + "api/jobs", timeout=5).read())["jobs"]


def _wait_until_every_host_shows(server, proc, stage, seconds=60):
    """(stages by host, whether every host showed ``stage`` before the run ended or the time ran out)."""
    stages = {}
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        stages = {job["host"]: job["stage"] for job in _jobs(server)}
        if all(stages.get(host) == stage for host in HOSTS):
            return stages, True
        time.sleep(0.3)
    return stages, False


def test_the_starts_of_a_quiet_task_reach_the_dashboard_while_it_runs(tmp_path, web_server):
    server = web_server()
    proc = _start_run(tmp_path, server, [{"name": "Get ready", "ansible.builtin.command": "true"},
                                         {"name": "Wait quietly", "ansible.builtin.command": "sleep 8"}])
    try:
        stages, waiting_seen = _wait_until_every_host_shows(server, proc, "Wait quietly")
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    # Seen while the 8 s sleep still ran (the run had not ended when the server showed it).
    assert waiting_seen, (stages, output)


def test_an_interrupted_run_ends_on_the_dashboard(tmp_path, web_server):
    server = web_server()
    proc = _start_run(tmp_path, server, [{"name": "Wait quietly", "ansible.builtin.command": "sleep 41"}])
    try:
        _wait_until_every_host_shows(server, proc, "Wait quietly")
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 99, output
    jobs = _jobs(server)
    assert [job["status"] for job in jobs] == ["failed"] * 3, jobs
    assert all(job["error"] == "interrupted: the run stopped during Wait quietly" for job in jobs), jobs
