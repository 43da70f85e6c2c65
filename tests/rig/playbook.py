"""Run the collection's real playbooks with ansible-playbook and read what happened per host."""

import json
import os
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")


class PlaybookRun:
    def __init__(self, proc, record):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.results = record.get("results", [])
        self.stats = record.get("stats", {})

    def task_results(self, host):
        return [r for r in self.results if r["host"] == host]

    def changed_tasks(self, host):
        return [r["task"] for r in self.task_results(host) if r["changed"]]

    def failure_messages(self, host):
        return [str(r["result"].get("msg", "")) for r in self.task_results(host) if r["status"] == "failed"]

    def result_of(self, host, task_name):
        for r in self.task_results(host):
            if r["task"] == task_name:
                return r
        return None


def write_inventory(path, group_vars, hosts):
    with open(path, "w") as fh:
        yaml.safe_dump({"migrate": {"vars": group_vars, "hosts": hosts}}, fh)
    return path


def run_playbook(playbook, inventory, *, extra_args=(), env=None, timeout=1200):
    """Run playbooks/<playbook>; returns a PlaybookRun with per-task results and stats."""
    fd, record_path = tempfile.mkstemp(prefix="v2kvm-record-", suffix=".json")
    os.close(fd)
    environ = dict(os.environ)
    environ.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_CALLBACKS_ENABLED": "test_record",
        "V2KVM_TEST_RECORD": record_path,
        "ANSIBLE_FORKS": "4",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": BIN + os.pathsep + environ.get("PATH", ""),
    })
    environ.update(env or {})
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", str(inventory),
           os.path.join(REPO, "playbooks", playbook), *extra_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=timeout, check=False)
        with open(record_path) as fh:
            text = fh.read()
        record = json.loads(text) if text else {}
    finally:
        os.unlink(record_path)
    return PlaybookRun(proc, record)
