"""A vSphere VM migrated by the real playbook: export from the simulator (real disk bytes), convert,
define, boot under TCG; the source stays off afterwards; a re-run changes nothing; the password
shows up nowhere in the output. The copies in the work dir go after success and on failure, unless kept."""

import os
import shutil
import uuid

import pytest
from rig.libvirt_cleanup import remove_migration
from rig.playbook import run_playbook, write_inventory

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-vs-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"


@pytest.fixture
def vsphere_fleet(vsim, make_vm, libvirt_daemon, tmp_path):
    vm, name, _flat = make_vm(prefix="v2kvm-test-role", power_on=True)
    work = f"/var/lib/libvirt/images/{POOL}-work"
    group_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_source_type": "vsphere",
        "migrate_vm_vsphere_hostname": vsim.host,
        "migrate_vm_vsphere_port": vsim.port,
        "migrate_vm_vsphere_username": vsim.username,
        "migrate_vm_vsphere_password": vsim.password,
        "migrate_vm_vsphere_validate_certs": False,
        "migrate_vm_vsphere_allow_hard_power_off": True,
        "migrate_vm_vsphere_shutdown_timeout": 5,
        "migrate_vm_work_dir": work,
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        "migrate_vm_boot_timeout": 300,
    }
    inventory = write_inventory(tmp_path / "inventory.yml", group_vars, {name: {}})

    def variant(file_name, **overrides):
        return write_inventory(tmp_path / file_name, dict(group_vars, **overrides), {name: {}})

    yield {"vm": vm, "name": name, "inventory": inventory, "variant": variant, "work": os.path.join(work, name)}
    remove_migration("qemu:///system", [name], POOL, POOL_PATH)
    shutil.rmtree(work, ignore_errors=True)


def test_vsphere_vm_migrates_boots_and_reruns_unchanged(vsphere_fleet, vsim):
    name = vsphere_fleet["name"]
    # Check mode first: nothing is made (no work dir, no domain) and the source keeps running.
    check = run_playbook("migrate.yml", vsphere_fleet["inventory"], extra_args=["--check"])
    assert check.rc == 0, check.output[-4000:]
    assert not os.path.exists(vsphere_fleet["work"]) and str(vsphere_fleet["vm"].runtime.powerState) == "poweredOn"

    run = run_playbook("migrate.yml", vsphere_fleet["inventory"])
    assert run.rc == 0, run.output[-4000:]
    assert vsim.password not in run.output
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(name)
        assert dom.isActive()
        verdict = run.result_of(name, "Validate the migrated guest")["result"]["verdict"]
        assert verdict["booted"] and "V2KVM-BOOT-OK vsphere-sim" in verdict["matched_line"]
        compare = [c for c in verdict["checks"] if c["name"] == "qemu-img compare"]
        assert compare and all(c["ok"] for c in compare), verdict["checks"]
    finally:
        conn.close()
    assert not os.path.exists(vsphere_fleet["work"]), "the exported copies go once the migration is validated"
    # After a successful cold migration the source stays off: the same guest with the same MAC must
    # not run twice. (On failure its power state is restored: tests/integration/vsphere/test_vsphere_export.py.)
    assert str(vsphere_fleet["vm"].runtime.powerState) == "poweredOff"

    again = run_playbook("migrate.yml", vsphere_fleet["inventory"])
    assert again.rc == 0, again.output[-3000:]
    assert again.stats[name]["changed"] == 0, again.changed_tasks(name)
    assert vsim.password not in again.output

    # Copies a killed run left behind after the migration was validated (killed before its clean-up, or its
    # validate finished on its own) go with the next run, which finds the migration finished.
    os.makedirs(vsphere_fleet["work"])
    with open(os.path.join(vsphere_fleet["work"], "%s-scsi0-0.raw" % name), "wb") as handle:
        handle.write(b"left by a killed run")
    third = run_playbook("migrate.yml", vsphere_fleet["inventory"])
    assert third.rc == 0, third.output[-3000:]
    assert not os.path.exists(vsphere_fleet["work"])


def test_failed_migration_removes_the_exported_copies_unless_kept(vsphere_fleet, vsim):
    name, work = vsphere_fleet["name"], vsphere_fleet["work"]
    exported = os.path.join(work, f"{name}-scsi0-0.vmdk")
    # The guest boots but never prints this: the validation fails after export, convert and define.
    never = {"migrate_vm_success_pattern": "V2KVM-NEVER-PRINTED", "migrate_vm_boot_timeout": 5}
    kept = run_playbook("migrate.yml", vsphere_fleet["variant"]("kept.yml", migrate_vm_vsphere_keep_export=True,
                                                                **never))
    assert kept.rc != 0 and "rolled back" in kept.output, kept.output[-3000:]
    assert kept.result_of(name, "Copy the disks (export, or warm sync plus cutover)")["changed"]
    assert os.path.getsize(exported) > 0, "migrate_vm_vsphere_keep_export: true keeps the copies for a re-run"

    failed = run_playbook("migrate.yml", vsphere_fleet["variant"]("failing.yml", **never))
    assert failed.rc != 0 and "rolled back" in failed.output, failed.output[-3000:]
    assert not failed.result_of(name, "Copy the disks (export, or warm sync plus cutover)")["changed"], \
        "the export recorded by the first run is reused"
    assert not os.path.exists(work), "the rollback removes what this run exported"
    conn = libvirt.open("qemu:///system")
    try:
        assert name not in [dom.name() for dom in conn.listAllDomains()], "the rollback removes the domain too"
    finally:
        conn.close()
    assert vsim.password not in kept.output + failed.output
