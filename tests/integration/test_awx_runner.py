"""The migration playbook through ansible-runner, the engine AWX/AAP run jobs with: the
conversion's progress must reach the job events while the conversion runs, not at its end."""

import os
import sys
import time
import uuid

import pytest
import yaml
from rig.libvirt_cleanup import remove_migration

ansible_runner = pytest.importorskip("ansible_runner")
libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONVERT_TASK = "Convert each disk into the pool"
RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-awx-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
NAME = f"v2kvm-test-awx-{RUN}"


@pytest.fixture
def job(libvirt_daemon, appliances, tmp_path):
    private = tmp_path / "runner"
    (private / "inventory").mkdir(parents=True)
    inventory = {"migrate": {"vars": {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        # ~12 MiB of disk at 2 MiB/s: the conversion runs for several seconds, as real ones do.
        "migrate_vm_convert_rate_limit": 2 * 1024 * 1024,
        "migrate_vm_boot_timeout": 300,
    }, "hosts": {"awx-vm": {"migrate_vm_source_path": appliances["demo-bios"], "migrate_vm_name": NAME}}}}
    (private / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    yield private
    remove_migration("qemu:///system", [NAME], POOL, POOL_PATH)


def test_progress_reaches_job_events_while_the_conversion_runs(job):
    arrivals = []

    def on_event(event):
        arrivals.append((time.monotonic(), event))
        return True

    bin_dir = os.path.dirname(sys.executable)  # the venv's bin, where ansible-playbook is
    result = ansible_runner.run(
        private_data_dir=str(job),
        playbook=os.path.join(REPO, "playbooks", "migrate.yml"),
        envvars={"ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
                 "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        event_handler=on_event,
        quiet=True,
    )
    assert result.rc == 0, [e["event_data"].get("res", {}).get("msg") for _arrived, e in arrivals
                            if e.get("event") == "runner_on_failed"]

    def task_of(event):
        return (event.get("event_data") or {}).get("task", "")

    polls = [(t, e) for t, e in arrivals
             if e.get("event") == "runner_on_async_poll" and CONVERT_TASK in task_of(e)
             and "v2kvm_progress" in (e["event_data"].get("res") or {})]
    ends = [t for t, e in arrivals if e.get("event") == "runner_on_ok" and CONVERT_TASK in task_of(e)]
    assert ends, "the convert task never finished"
    during = [(t, e) for t, e in polls if t < ends[0] - 1.0]
    assert len(during) >= 3, f"only {len(during)} progress events arrived before the conversion ended"

    samples = [e["event_data"]["res"]["v2kvm_progress"] for _arrived, e in polls]
    done = [s["done"] for s in samples if s.get("stage") == "convert"]
    assert done == sorted(done) and 0 < max(done), samples
    assert all(s.get("total") for s in samples)
    assert samples[-1]["stage"] == "done"
    # What AWX stores: the job's stdout carries the same events in order, with the host and task.
    assert all(e["event_data"].get("host") == "awx-vm" for _arrived, e in polls)
