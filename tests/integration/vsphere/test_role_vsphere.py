"""A vSphere VM migrated by the real playbook: export from the simulator (real disk bytes), convert,
define, boot under TCG; the source stays off afterwards; a re-run changes nothing; the password
shows up nowhere in the output."""

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
    inventory = write_inventory(tmp_path / "inventory.yml", {
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
    }, {name: {}})
    yield {"vm": vm, "name": name, "inventory": inventory}
    remove_migration("qemu:///system", [name], POOL, POOL_PATH)
    shutil.rmtree(work, ignore_errors=True)


def test_vsphere_vm_migrates_boots_and_reruns_unchanged(vsphere_fleet, vsim):
    name = vsphere_fleet["name"]
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
    # After a successful cold migration the source stays off: the same guest with the same MAC must
    # not run twice. (On failure its power state is restored: tests/integration/vsphere/test_vsphere_export.py.)
    assert str(vsphere_fleet["vm"].runtime.powerState) == "poweredOff"

    again = run_playbook("migrate.yml", vsphere_fleet["inventory"])
    assert again.rc == 0, again.output[-3000:]
    assert again.stats[name]["changed"] == 0, again.changed_tasks(name)
    assert vsim.password not in again.output
