"""kill -9 of a run while kvm_migrate moves a VM between two real libvirt hosts, then a re-run at once.

The run is a one-task playbook (the progress action starts kvm_migrate in the background, as the roles do);
tests/rig/kill_run.py kills ansible-playbook and its workers, and the module survives as it would on a real
controller host. Each re-run uses the same progress file (the same job).

- live: the orphaned module is never stopped, because stopping it aborts its migration, and aborting a job that
  may be in post-copy loses the guest. The re-run waits for it (the VM ends on the target, never rebooted), asks
  for post-copy when it does not converge and post_copy allows it, and otherwise refuses after its timeout,
  naming virsh domjobabort, with the job still running.
- cold: the orphan is stopped (its own rollback runs: the target's copy goes, the source starts again) and the
  re-run migrates the VM.
"""

import json
import os
import sys

import pytest
import yaml
from kvm_hosts.conftest import boot_lines, libvirt, read_log, ticks, wait_for
from rig.kill_run import Run, TAG_VARIABLE, kill_all, kill_when, module_processes, progress_samples, wait_gone
from rig.playbook import run_playbook

pytestmark = pytest.mark.integration

TASK = "Move the VM"


class Job:
    """One kvm_migrate job run (and killed, and run again) through ansible-playbook."""

    def __init__(self, tmp_path, name, nodes, **args):
        self.tmp_path = tmp_path
        self.name = name
        self.progress = str(tmp_path / ("%s.progress" % name))
        self.args = dict(name=name, nodes=nodes, progress_file=self.progress, **args)
        (tmp_path / "play.yml").write_text(yaml.safe_dump([{
            "hosts": "controller", "gather_facts": False,
            "tasks": [{"name": TASK, "v2kvm.migrate.kvm_migrate": "{{ kvm_migrate_args }}"}]}]))
        (tmp_path / "hosts").write_text("controller ansible_connection=local ansible_python_interpreter=%s\n"
                                        % sys.executable)
        self.tags = []

    def _vars(self, **overrides):
        path = self.tmp_path / ("args-%d.json" % len(self.tags))
        path.write_text(json.dumps({"kvm_migrate_args": dict(self.args, **overrides)}))
        tag = "%s-%d" % (self.name, len(self.tags))
        self.tags.append(tag)
        return tag, ["-e", "@%s" % path]

    def start(self, **overrides):
        tag, extra = self._vars(**overrides)
        return Run(str(self.tmp_path / "play.yml"), self.tmp_path / "hosts", tag, extra_args=extra)

    def rerun(self, **overrides):
        tag, extra = self._vars(**overrides)
        run = run_playbook(str(self.tmp_path / "play.yml"), self.tmp_path / "hosts", extra_args=extra,
                           env={TAG_VARIABLE: tag})
        record = run.result_of("controller", TASK)
        return run, dict(record["result"], failed=record["status"] == "failed")

    def migrating(self, stage="live-migrate"):
        return lambda: any(s.get("stage") == stage and s.get("done") for s in progress_samples(self.progress))

    def kill_when_migrating(self, stage="live-migrate", **overrides):
        run = self.start(**overrides)
        try:
            assert kill_when(run, self.migrating(stage), timeout=180), run.output()[-3000:]
        finally:
            run.close()
        assert any("kvm_migrate" in cmd for cmd in module_processes(self.tags[-1]).values()), \
            "the killed run's module should go on: %s" % module_processes(self.tags[-1])

    def leftovers(self):
        left = ["process %d %s" % (pid, cmd[:100]) for tag in self.tags for pid, cmd in wait_gone(tag, 120).items()]
        locks = os.path.join(os.path.expanduser("~"), ".ansible", "v2kvm", "locks")
        left += ["lock %s" % f for f in (os.listdir(locks) if os.path.isdir(locks) else []) if self.name in f]
        return left

    def cleanup(self):
        for tag in self.tags:
            kill_all(tag)
        # A module killed here (a failed test) leaves its unlocked lock file; the next owner would take it.
        locks = os.path.join(os.path.expanduser("~"), ".ansible", "v2kvm", "locks")
        for name in os.listdir(locks) if os.path.isdir(locks) else []:
            if self.name in name:
                os.unlink(os.path.join(locks, name))


@pytest.fixture
def job(tmp_path, nodes):
    made = []

    def make(name, **args):
        made.append(Job(tmp_path, name, nodes, **args))
        return made[-1]

    yield make
    for item in made:
        item.cleanup()


def active_job(host, name):
    conn = libvirt.open(host.uri)
    try:
        return conn.lookupByName(name).jobStats(0).get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def assert_moved_live(guests, h1, h2, name):
    assert guests.where(name) == ["h2"]
    count = len(ticks(read_log(h2, name)))
    wait_for(lambda: len(ticks(read_log(h2, name))) >= count + 2, 60, "ticks on the target")
    # The same guest went on: it never booted again on either side.
    assert boot_lines(read_log(h2, name)) == [] and len(boot_lines(read_log(h1, name))) == 1


def test_rerun_waits_for_the_orphaned_live_migration_and_never_aborts_it(kvm_hosts, guests, job):
    h1, h2 = kvm_hosts[0], kvm_hosts[1]
    # Pre-copy cannot converge (48 MiB rewritten faster than 16 MiB/s); the killed run's module switches to
    # post-copy after 4 s by itself, so the job ends on the target with nobody watching from the controller.
    name = guests.define(h1, "kill-live", memory_mib=128, dirty_mib=48)
    guests.wait_ticking(h1, name, 2)
    vm = job(name, source="h1", target="h2", migrate_uri="tcp://127.0.0.1", bandwidth_mib=16, max_downtime_ms=20,
             post_copy=True, post_copy_after=4, timeout=600)
    vm.kill_when_migrating()
    run, result = vm.rerun()
    assert run.rc == 0 and not result.get("failed"), run.output[-3000:]
    # The orphan finished the job; the re-run found the VM on the target.
    assert not result["changed"] and "already on node h2" in result["msg"], result
    assert_moved_live(guests, h1, h2, name)
    assert vm.leftovers() == []


def test_rerun_asks_the_orphaned_live_job_for_post_copy_when_it_does_not_converge(kvm_hosts, guests, job):
    h1, h3 = kvm_hosts[0], kvm_hosts[2]
    name = guests.define(h1, "kill-pc", memory_mib=128, dirty_mib=48)
    guests.wait_ticking(h1, name, 2)
    # Started with post-copy allowed but never switching by itself (post_copy_after=600).
    vm = job(name, source="h1", target="h3", migrate_uri="tcp://127.0.0.1", bandwidth_mib=16, max_downtime_ms=20,
             post_copy=True, post_copy_after=600, timeout=600)
    vm.kill_when_migrating()
    run, result = vm.rerun(post_copy_after=2, timeout=300)
    assert run.rc == 0 and not result.get("failed"), run.output[-3000:]
    assert "already on node h3" in result["msg"], result
    assert guests.where(name) == ["h3"]
    count = len(ticks(read_log(h3, name)))
    wait_for(lambda: len(ticks(read_log(h3, name))) >= count + 2, 60, "ticks on the target")
    assert boot_lines(read_log(h3, name)) == [] and len(boot_lines(read_log(h1, name))) == 1
    assert vm.leftovers() == []


def test_rerun_refuses_after_its_timeout_naming_domjobabort_and_leaves_the_job_running(kvm_hosts, guests, job):
    h2 = kvm_hosts[1]
    name = guests.define(h2, "kill-refuse", memory_mib=128, dirty_mib=48)
    guests.wait_ticking(h2, name, 2)
    # No post-copy allowed and 1 MiB/s: the job can neither converge nor be switched; only an abort ends it.
    vm = job(name, source="h2", target="h3", migrate_uri="tcp://127.0.0.1", bandwidth_mib=1, timeout=600)
    vm.kill_when_migrating()
    try:
        run, result = vm.rerun(timeout=5)
        assert run.rc != 0 and result.get("failed"), run.output[-3000:]
        assert "still running on node h2" in result["msg"], result["msg"]
        assert "virsh -c %s domjobabort %s" % (h2.uri, name) in result["msg"], result["msg"]
        # Not aborted: the killed run's job goes on (the target holds its incoming copy), the guest still runs on
        # its source.
        assert active_job(h2, name)
        assert guests.where(name)[0] == "h2"
        count = len(ticks(read_log(h2, name)))
        wait_for(lambda: len(ticks(read_log(h2, name))) >= count + 2, 60, "ticks on the source")
    finally:
        conn = libvirt.open(h2.uri)
        try:
            conn.lookupByName(name).abortJob()
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    wait_for(lambda: not active_job(h2, name), 60, "the test's own abort")
    wait_for(lambda: guests.where(name) == ["h2"], 60, "the target to drop its incoming copy")
    assert vm.leftovers() == []


def test_rerun_stops_the_orphaned_cold_migration_and_moves_the_vm(kvm_hosts, guests, job):
    h1, h3 = kvm_hosts[0], kvm_hosts[2]
    name = guests.define(h1, "kill-cold")
    guests.wait_ticking(h1, name, 1)
    vm = job(name, source="h1", target="h3", mode="cold", shutdown_timeout=2, force_shutdown=True,
             validate_seconds=90, require_success_pattern=True)
    vm.kill_when_migrating(stage="copy-disks")
    run, result = vm.rerun()
    assert run.rc == 0 and result.get("changed") and not result.get("failed"), run.output[-3000:]
    assert "left running by an earlier, killed run of this job" in " ".join(run.output.split()), run.output[-3000:]
    assert guests.where(name) == ["h3"]
    assert result["validated"]["matched_line"] == "V2KVM-BOOT-OK %s" % name, result
    conn = libvirt.open(h3.uri)
    try:
        volumes = [v.name() for v in conn.storagePoolLookupByName("v2kvm").listAllVolumes(0) if name in v.name()]
    finally:
        conn.close()
    assert volumes == ["%s.raw" % name], volumes
    assert vm.leftovers() == []
