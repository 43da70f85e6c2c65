"""kill -9 of a whole migration run, then a re-run at once (tests/rig/kill_run.py kills the ansible-playbook
process group; the modules the progress action started survive, as on a real target whose controller died).

- A run killed mid-convert leaves its disk_convert running: the re-run stops it (same job: the role's progress
  files name the VM) or waits for it (another controller's job), and never shares its .part.
- A run killed past define leaves a domain and volumes; a re-run that then fails validation removes both runs'
  objects and its message says what it removed.
- The seeded suite kills one migration again and again at moments drawn over every phase of a file source
  (convert, define, validate), re-running after each kill, and finally lets it finish: the VM is migrated and
  booted, its disk equals the source, and nothing else is left. ``V2KVM_FAULT_SEED=<seed>`` replays a run.

Each re-run must end with: the VM booted and validated, content equal to the source (qemu-img compare), no
.part, no lock file, no process of any run left, no domain or volume but the expected ones, the source's
checksum unchanged.
"""

import glob
import os
import shutil
import subprocess
import time
import uuid

import pytest
from rig.digests import file_sha256
from rig.appliances import raw_disk_paths
from rig.kill_run import Run, kill_all, kill_when, module_processes, progress_samples, seeded_rng, wait_gone
from rig.libvirt_cleanup import remove_domains, remove_pool
from rig.playbook import REPO, run_playbook, write_inventory

from vsphere import conftest as vsphere_fixtures
from vsphere import sim_rig

# The vSphere simulator's fixtures, for the export chain (their conftest only serves tests/integration/vsphere).
sim_binary, vsi, vsim, boot_raw, make_vm = (vsphere_fixtures.sim_binary, vsphere_fixtures.vsi, vsphere_fixtures.vsim,
                                            vsphere_fixtures.boot_raw, vsphere_fixtures.make_vm)

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
BUILD = os.path.join(REPO, ".work", "test-cache", "build")
SLOW_CONVERT = 512 * 1024  # bytes/s for a run that is to be killed mid-convert (the demo disk holds ~12 MiB)


class Migration:
    """One demo VM migrated into a pool of its own, and what the checks after each run need to know."""

    def __init__(self, conn, appliances, tmp_path, label, progress_dir=True, vsphere=None):
        self.conn = conn
        self.name = "v2kvm-test-%s-%s" % (RUN, label)
        self.pool = self.name
        self.pool_path = "/var/lib/libvirt/images/%s" % self.pool
        self.work = None
        if vsphere is None:
            self.source = appliances["demo-bios"]
            self.raw = raw_disk_paths("demo-bios", BUILD)[0]
        else:
            # (simulator VM name, its flat disk file, the raw image its bytes came from, group vars)
            self.name, self.source, self.raw, vsphere_vars = vsphere
            self.work = "/var/lib/libvirt/images/%s-work" % self.pool
        self.source_sha = file_sha256(self.source)
        self.disk = os.path.join(self.pool_path, "%s-disk0.qcow2" % self.name)
        self.progress_dir = tmp_path / "progress"
        self.progress_dir.mkdir(exist_ok=True)
        group = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "migrate_vm_storage_pool": self.pool,
            "migrate_vm_storage_pool_path": self.pool_path,
            "migrate_vm_network_map": {"VM Network": "user"},
            "migrate_vm_boot_timeout": 300,
        }
        if progress_dir:
            group["migrate_vm_progress_dir"] = str(self.progress_dir)
        if vsphere is None:
            self.label = label
            host = {"migrate_vm_source_path": self.source, "migrate_vm_name": self.name}
        else:
            self.label = self.name
            group.update(vsphere_vars, migrate_vm_source_type="vsphere", migrate_vm_work_dir=self.work)
            host = {}
        self.inventory = write_inventory(tmp_path / ("inventory-%s.yml" % label), group, {self.label: host})
        self.tags = []

    def start(self, *extra_args):
        tag = "%s-%d" % (self.name, len(self.tags))
        self.tags.append(tag)
        return Run("migrate.yml", self.inventory, tag, extra_args=extra_args)

    def rerun(self, *extra_args):
        tag = "%s-%d" % (self.name, len(self.tags))
        self.tags.append(tag)
        from rig.kill_run import TAG_VARIABLE

        return run_playbook("migrate.yml", self.inventory, extra_args=list(extra_args), env={TAG_VARIABLE: tag})

    # -- observable moments ---------------------------------------------------------------------

    def part_written(self, at_least=1):
        part = os.path.join(self.pool_path, ".%s.part" % os.path.basename(self.disk))
        return lambda: os.path.exists(part) and os.path.getsize(part) >= at_least

    def converted_bytes(self, fraction):
        progress = str(self.progress_dir / ("%s-disk0.progress" % self.name))

        def moment():
            samples = [s for s in progress_samples(progress) if s.get("stage") == "convert" and s.get("total")]
            return any(s["done"] >= fraction * s["total"] for s in samples)
        return moment

    def defined(self):
        def moment():
            try:
                self.conn.lookupByName(self.name)
            except libvirt.libvirtError:
                return False
            return True
        return moment

    def running(self):
        def moment():
            try:
                return bool(self.conn.lookupByName(self.name).isActive())
            except libvirt.libvirtError:
                return False
        return moment

    def exported(self):
        """The vSphere copies are complete in the work dir (disks there, no partial download left)."""
        copies = os.path.join(self.work, self.name)
        names = os.listdir(copies) if os.path.isdir(copies) else []
        return any(n.endswith(".vmdk") for n in names) and not any(n.endswith(".part") for n in names)

    def validated(self):
        try:
            return "<v2kvm:phase>validated</v2kvm:phase>" in self.conn.lookupByName(self.name).XMLDesc(0)
        except libvirt.libvirtError:
            return False

    def output_has(self, run, text, count=1):
        return lambda: run.output().count(text) >= count

    # -- what is left -------------------------------------------------------------------------------

    def leftovers(self, expect_migrated):
        """Everything that should not be there after a run (an empty list when all is well)."""
        found = []
        files = sorted(os.listdir(self.pool_path)) if os.path.isdir(self.pool_path) else []
        wanted = {os.path.basename(self.disk), ".%s.v2kvm.json" % os.path.basename(self.disk)} \
            if expect_migrated else set()
        found += ["file %s" % f for f in files if f not in wanted]
        found += ["missing %s" % f for f in sorted(wanted - set(files))]
        domains = sorted(d.name() for d in self.conn.listAllDomains() if d.name().startswith(self.name))
        found += ["domain %s" % d for d in domains if not (expect_migrated and d == self.name)]
        if expect_migrated and self.name not in domains:
            found.append("missing domain %s" % self.name)
        for tag in self.tags:
            found += ["process %d %s" % (pid, cmd[:120]) for pid, cmd in wait_gone(tag, timeout=60).items()]
        found += ["lock %s" % path for path in glob.glob(os.path.join(os.path.expanduser("~"), ".ansible", "v2kvm",
                                                                      "locks", "*%s*" % self.name))]
        if self.work and os.path.isdir(self.work):
            # The export's copies go once the migration is validated, or with the rollback; its lock with it.
            found += ["work %s" % f for f in os.listdir(self.work) if not expect_migrated or self.name in f]
        if file_sha256(self.source) != self.source_sha:
            found.append("the source changed")
        return found

    def check_migrated(self):
        """The VM booted and was validated on a disk whose content is the source's."""
        dom = self.conn.lookupByName(self.name)
        assert dom.isActive()
        assert "<v2kvm:phase>validated</v2kvm:phase>" in dom.XMLDesc(0)
        # -U: the guest runs (its disk is locked); the test guest only reads it.
        compare = subprocess.run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", self.raw, self.disk],
                                 capture_output=True, text=True, check=False)
        assert compare.returncode == 0, compare.stdout + compare.stderr

    def cleanup(self):
        for tag in self.tags:
            kill_all(tag)
        # A module killed here (a failed test) leaves its unlocked lock file; the next owner would take it.
        for path in glob.glob(os.path.join(os.path.expanduser("~"), ".ansible", "v2kvm", "locks", "*%s*" % self.name)):
            os.unlink(path)
        remove_domains(self.conn, [self.name])
        remove_pool(self.conn, self.pool, self.pool_path)
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def conn(libvirt_daemon):
    connection = libvirt.open("qemu:///system")
    yield connection
    connection.close()


@pytest.fixture
def migration(conn, appliances, tmp_path, request):
    made = []

    def make(label, progress_dir=True, vsphere=None):
        made.append(Migration(conn, appliances, tmp_path, "%s-%s" % (label, RUN[:3]), progress_dir, vsphere))
        return made[-1]

    yield make
    for item in made:
        item.cleanup()


@pytest.mark.parametrize("progress_dir", [True, False], ids=["same-job-orphan-stopped", "other-job-waited-for"])
def test_a_rerun_right_after_a_kill_mid_convert_never_shares_the_orphans_part(migration, progress_dir):
    vm = migration("mid-convert", progress_dir)
    killed = vm.start("-e", "migrate_vm_convert_rate_limit=%d" % SLOW_CONVERT)
    try:
        assert kill_when(killed, vm.part_written(256 * 1024)), killed.output()[-3000:]
    finally:
        killed.close()
    # The conversion goes on without its controller, as on a real target.
    orphans = module_processes(vm.tags[0])
    assert any("disk_convert" in cmd for cmd in orphans.values()), orphans
    run = vm.rerun()
    assert run.rc == 0, run.output[-4000:]
    convert = run.result_of(vm.label, "Convert each disk into the pool")["result"]["results"][0]
    if progress_dir:
        # Same progress file, so the same job: the orphan was stopped at once (its warning names it) and the disk
        # converted again, before the slowed orphan would have finished.
        assert convert["changed"], convert
        assert "left running by an earlier, killed run of this job" in " ".join(run.output.split()), run.output[-3000:]
    vm.check_migrated()
    assert vm.leftovers(expect_migrated=True) == []


def test_a_rerun_failing_validation_after_a_kill_past_define_removes_both_runs_objects(migration):
    vm = migration("past-define")
    # The killed run's validation would never pass either: whatever it left running cannot finish the job.
    never = ("-e", "migrate_vm_success_pattern=V2KVM-NEVER-PRINTED")
    killed = vm.start(*never)
    try:
        assert kill_when(killed, vm.defined()), killed.output()[-3000:]
    finally:
        killed.close()
    assert os.path.exists(vm.disk)
    run = vm.rerun(*never, "-e", "migrate_vm_boot_timeout=5")
    assert run.rc == 2, run.output[-4000:]
    # Nothing of the re-run's making: the disk was found converted and the domain defined.
    convert = run.result_of(vm.label, "Convert each disk into the pool")["result"]["results"][0]
    assert not convert["changed"]
    assert not run.result_of(vm.label, "Define the libvirt domain")["result"].get("created")
    msg = " ".join(run.failure_messages(vm.label))
    assert "validate failed" in msg, msg
    assert "removed domain %s (phase defined)" % vm.name in msg and vm.disk in msg, msg
    assert "nothing this run created" not in msg
    assert vm.leftovers(expect_migrated=False) == [], msg


def test_rollback_keeps_a_validated_migration_and_says_so(migration):
    vm = migration("keeps-validated")
    first = vm.rerun()
    assert first.rc == 0, first.output[-4000:]
    # A redo that fails validation must not take the finished migration with it.
    run = vm.rerun("-e", "migrate_vm_redo=true", "-e", "migrate_vm_success_pattern=V2KVM-NEVER-PRINTED",
                   "-e", "migrate_vm_boot_timeout=3")
    assert run.rc == 2, run.output[-4000:]
    msg = " ".join(run.failure_messages(vm.label))
    assert "kept domain %s (a finished migration (validated at" % vm.name in msg, msg
    assert "rolled back on localhost: removed nothing; kept domain" in msg, msg
    vm.check_migrated()
    assert vm.leftovers(expect_migrated=True) == []


# -- the seeded suite ---------------------------------------------------------------------------------------

TASK = "TASK [v2kvm.migrate.migrate_vm : %s"
SUITE_RATE = 2 * 1024 * 1024  # bytes/s: the demo disk's conversion takes a few seconds, so it can be hit
EXPORT_RATE = 3 * 1024 * 1024  # bytes/s through the proxy in front of the simulator, for the same reason
FILE_KILLS = int(os.environ.get("V2KVM_FAULT_KILLS", "17"))
VSPHERE_KILLS = int(os.environ.get("V2KVM_FAULT_VSPHERE_KILLS", "3"))
CHAIN = 5  # kills per migration before it is let finish
TASKS = ["Read the source VM description", "Ensure the storage pool that receives the disks",
         "Convert each disk into the pool", "Define the libvirt domain",
         "Pair each source disk with its target volume for the content check", "Validate the migrated guest"]
EXPORT_TASKS = ["Pre-flight the source VM", "Stop this VM (not the fleet) on a critical pre-flight finding",
                "Copy the disks (export, or warm sync plus cutover)"]
SUMMARY = {"kills": 0, "missed": 0, "survived": 0, "migrations": 0, "leftovers": [], "points": [], "seeds": []}


def print_summary(capsys):
    """The suite's summary so far (every chain test prints it, the last one has it all): kills, survived,
    leftovers, and each kill point."""
    lines = ["fault injection (%s): %d kills, %d runs ended before their kill point, %d/%d migrations survived, "
             "%d leftovers %s" % (", ".join("V2KVM_FAULT_SEED=%d" % seed for seed in SUMMARY["seeds"]),
                                  SUMMARY["kills"], SUMMARY["missed"], SUMMARY["survived"], SUMMARY["migrations"],
                                  len(SUMMARY["leftovers"]), SUMMARY["leftovers"])]
    lines += ["  %s %s" % ("killed" if killed else "missed", label) for label, killed in SUMMARY["points"]]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def draw_moment(rng, vm, run, converted, exported=True, past_define=True, kind=None):
    """(label, moment) at a random observable point of ``run``: a task's start line plus a delay, a fraction of
    the conversion's (or export's) bytes (samples of this run only; not drawn once that phase is done, when the
    run would end before it), or the guest running, plus a delay."""
    since = time.time()
    kinds = ["task", "task"] + (["running"] if past_define else []) + ([] if converted else ["convert", "convert"]) \
        + ([] if exported else ["export", "export", "export-task"])
    kind = kind or rng.choice(kinds)
    delay = round(rng.uniform(0.0, 1.5), 2)
    if kind in ("task", "export-task"):
        task = rng.choice((TASKS if past_define else TASKS[:3]) if kind == "task" else EXPORT_TASKS)
        label = "%s +%.2fs" % (task, delay)

        def seen():
            return TASK % task in run.output()
    elif kind in ("convert", "export"):
        fraction = round(rng.uniform(0.05, 0.95), 2)
        stage = "convert" if kind == "convert" else None
        progress = str(vm.progress_dir / ("%s-disk0.progress" % vm.name if kind == "convert"
                                          else "%s-export.progress" % vm.name))
        label = "%s at %d%% +%.2fs" % (kind, fraction * 100, delay)

        def seen():
            return any((stage is None or s.get("stage") == stage) and s.get("total") and s.get("ts", 0) >= since
                       and s["done"] >= fraction * s["total"] and s.get("stage") not in ("done", "failed")
                       for s in progress_samples(progress))
    else:
        label, seen = "guest running +%.2fs" % delay, vm.running()
    state = {}

    def moment():
        if "at" not in state and seen():
            state["at"] = time.monotonic()
        return "at" in state and time.monotonic() - state["at"] >= delay
    return label, moment


def run_chains(new_migration, kills, rng, run_args, past_define=True):
    """Kill migrations at drawn moments, re-running after each kill, ``CHAIN`` kills per migration, then let it
    finish and check it. Counts into SUMMARY; fails at the first migration that does not end well. Without
    ``past_define`` only moments before the domain is defined are drawn."""
    done = 0
    while done < kills:
        vm = new_migration()
        for attempt in range(min(CHAIN, kills - done)):
            if vm.validated():
                break  # a killed run's validation finished the migration: nothing left to hit
            converted = os.path.exists(vm.disk)
            exported = vm.work is None or converted or vm.exported()
            run = vm.start(*run_args)
            # A vSphere chain starts with a kill mid-export, so every seed hits the export at least once.
            first = "export" if attempt == 0 and not exported else None
            label, moment = draw_moment(rng, vm, run, converted, exported, past_define, first)
            try:
                killed = kill_when(run, moment, timeout=300)
                if not killed:
                    assert run.wait() == 0, run.output()[-3000:]
            finally:
                run.close()
            SUMMARY["points"].append(("%s: %s" % (vm.label, label), killed))
            SUMMARY["kills" if killed else "missed"] += 1
            done += killed
        final = vm.rerun(*run_args)
        SUMMARY["migrations"] += 1
        left = vm.leftovers(expect_migrated=True) if final.rc == 0 else ["the final run failed"]
        if final.rc == 0:
            vm.check_migrated()
            SUMMARY["survived"] += 1
        SUMMARY["leftovers"] += ["%s: %s" % (vm.label, item) for item in left]
        assert final.rc == 0, "points %s:\n%s" % (SUMMARY["points"], final.output[-4000:])
        assert left == [], left
        vm.cleanup()


def test_kill_9_at_seeded_points_then_rerun_ends_migrated_with_nothing_left(migration, capsys):
    seed, rng = seeded_rng()
    SUMMARY["seeds"].append(seed)
    count = iter(range(1000))
    before = SUMMARY["kills"]
    try:
        run_chains(lambda: migration("chain%d" % next(count)), FILE_KILLS, rng,
                   ("-e", "migrate_vm_convert_rate_limit=%d" % SUITE_RATE))
    finally:
        print_summary(capsys)
    assert SUMMARY["kills"] - before >= FILE_KILLS


def test_kill_9_during_a_vsphere_export_then_rerun_ends_migrated_with_nothing_left(
        migration, vsim, make_vm, boot_raw, capsys):
    seed, rng = seeded_rng()
    SUMMARY["seeds"].append(seed)
    proxy = sim_rig.ThrottledProxy(vsim.host, vsim.port, EXPORT_RATE)
    made = []

    def make():
        _vm, name, flat = make_vm(prefix="v2kvm-test-kill", power_on=True)
        made.append(name)
        return migration("vs%d" % len(made), vsphere=(name, flat, boot_raw, {
            "migrate_vm_vsphere_hostname": "127.0.0.1", "migrate_vm_vsphere_port": proxy.port,
            "migrate_vm_vsphere_username": vsim.username, "migrate_vm_vsphere_password": vsim.password,
            "migrate_vm_vsphere_validate_certs": False, "migrate_vm_vsphere_allow_hard_power_off": True,
            "migrate_vm_vsphere_shutdown_timeout": 5}))

    try:
        # Every phase: a re-run after a kill past define finds its own unfinished domain, which the pre-flight
        # does not count as a name conflict (its metadata records this same source).
        run_chains(make, VSPHERE_KILLS, rng, ())
    finally:
        proxy.close()
        print_summary(capsys)
