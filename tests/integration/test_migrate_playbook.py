"""The whole pipeline through the real playbook on a real libvirt daemon (TCG guests):
check mode changes nothing, a real run leaves booted guests, the broken VM is rolled back,
the sources stay byte-identical, and a second run changes nothing."""

import json
import os
import shutil
import uuid

import pytest
from rig.digests import file_sha256
from rig.libvirt_cleanup import remove_domains, remove_pool
from rig.playbook import run_playbook, write_inventory

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
VMS = {  # inventory host -> (appliance, domain name, marker printed on the console)
    "t-bios": ("demo-bios", f"v2kvm-test-{RUN}-bios", "demo-bios"),
    "t-twodisk": ("demo-twodisk", f"v2kvm-test-{RUN}-twodisk", "demo-twodisk"),
    "t-uefi": ("demo-uefi", f"v2kvm-test-{RUN}-uefi", "demo-uefi"),
    "t-broken": ("demo-broken", f"v2kvm-test-{RUN}-broken", None),
}


def console(conn, name):
    from defusedxml import ElementTree

    root = ElementTree.fromstring(conn.lookupByName(name).XMLDesc(0))
    log = root.find("./devices/serial/log")
    with open(log.get("file"), errors="replace") as fh:
        return fh.read()


def our_domains(conn):
    return sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(f"v2kvm-test-{RUN}"))


def pool_files():
    return sorted(os.listdir(POOL_PATH)) if os.path.isdir(POOL_PATH) else []


@pytest.fixture(scope="module")
def fleet(libvirt_daemon, appliances, tmp_path_factory):
    conn = libvirt.open("qemu:///system")
    tmp = tmp_path_factory.mktemp("fleet")
    hosts = {
        host: {"migrate_vm_source_path": appliances[app], "migrate_vm_name": name}
        for host, (app, name, _marker) in VMS.items()
    }
    inventory = write_inventory(tmp / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        "migrate_vm_boot_timeout": 300,
    }, hosts)
    sources = {app: file_sha256(appliances[app]) for app, _name, _marker in VMS.values()}
    state = {"conn": conn, "inventory": inventory, "sources": sources, "appliances": appliances}
    yield state
    remove_domains(conn, our_domains(conn))
    remove_pool(conn, POOL, POOL_PATH)
    conn.close()


def test_check_mode_creates_nothing(fleet):
    run = run_playbook("migrate.yml", fleet["inventory"], extra_args=["--check"])
    assert run.stats, run.output[-3000:]
    for host in ("t-bios", "t-twodisk", "t-uefi"):
        assert run.stats[host]["failures"] == 0, run.failure_messages(host)
    assert our_domains(fleet["conn"]) == []
    assert pool_files() == []
    with pytest.raises(libvirt.libvirtError):
        fleet["conn"].storagePoolLookupByName(POOL)


def test_real_run_boots_good_guests_and_rolls_back_the_broken_one(fleet, tmp_path):
    events_file, summary_file = tmp_path / "events.jsonl", tmp_path / "summary.json"
    run = run_playbook("migrate.yml", fleet["inventory"], env={
        "ANSIBLE_CALLBACKS_ENABLED": "test_record,v2kvm.migrate.dashboard",
        "V2KVM_DASHBOARD_EVENTS_FILE": str(events_file), "V2KVM_DASHBOARD_SUMMARY_FILE": str(summary_file)})
    fleet["first"] = run
    assert run.stats, run.output[-3000:]
    conn = fleet["conn"]
    for host in ("t-bios", "t-twodisk", "t-uefi"):
        assert run.stats[host]["failures"] == 0, run.failure_messages(host)
        name, marker = VMS[host][1:]
        assert conn.lookupByName(name).isActive()
        assert f"V2KVM-BOOT-OK {marker}" in console(conn, name)
        assert conn.lookupByName(name).OSType() == "hvm"
    assert "V2KVM-DISKS vda vdb" in console(conn, VMS["t-twodisk"][1])

    # The broken guest panics, the role rolls back: no domain, no volume, a reason that says why.
    assert run.stats["t-broken"]["failures"] == 1
    assert run.rc == 2
    msg = " ".join(run.failure_messages("t-broken"))
    assert "Kernel panic" in msg and "rolled back" in msg, msg
    report = run.failure_messages("t-broken")[-1]  # the role's own report: one line, whatever it quotes
    assert "rolled back" in report and "\n" not in report, report
    assert VMS["t-broken"][1] not in our_domains(conn)
    assert not [f for f in pool_files() if "broken" in f]

    # Good volumes are there, in the pool, and nothing half-made is left.
    assert not [f for f in pool_files() if f.endswith(".part")]
    vols = conn.storagePoolLookupByName(POOL).listVolumes()
    for host in ("t-bios", "t-uefi"):
        assert f"{VMS[host][1]}-disk0.qcow2" in vols

    # The sources were only read.
    for app, digest in fleet["sources"].items():
        assert file_sha256(fleet["appliances"][app]) == digest, app

    # Validation reported live: the bytes of its content compare, then the guest's console while it booted.
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    end = [e for e in events if e["type"] == "task_end" and e["host"] == "t-bios"
           and e["task"].endswith("Validate the migrated guest")]
    samples = [e for e in events if e["type"] == "progress" and e["host"] == "t-bios" and e["source"] == "validate"]
    assert len(end) == 1 and samples, samples
    compared = [e for e in samples if e["stage"] == "compare %s-disk0.qcow2" % VMS["t-bios"][1]]
    assert compared and compared[-1]["done"] == compared[-1]["total"] == 64 << 20, compared
    booting = [e for e in samples if e["stage"].startswith("boot: ") and e["ts"] <= end[0]["ts"] - 1.0]
    assert booting, samples
    assert any(e["stage"][len("boot: "):] in console(conn, VMS["t-bios"][1]) for e in booting), booting
    # Data migrated counts what was converted, not the bytes validation read again.
    converted = sum(item["virtual_size"] for host in VMS
                    for item in (run.result_of(host, "Convert each disk into the pool") or {"result": {}})
                    ["result"].get("results", []) if item.get("changed"))
    summary = json.loads(summary_file.read_text())
    assert converted > 0 and summary["metrics"]["data_processed"] == converted, summary["metrics"]


def test_second_run_changes_nothing(fleet):
    assert "first" in fleet, "needs the real run"
    run = run_playbook("migrate.yml", fleet["inventory"], extra_args=["--limit", "t-bios,t-twodisk,t-uefi"])
    assert run.rc == 0, run.output[-3000:]
    for host in ("t-bios", "t-twodisk", "t-uefi"):
        assert run.stats[host]["changed"] == 0, run.changed_tasks(host)
        assert run.stats[host]["failures"] == 0
        # The target's metadata says the migration is finished: every phase is skipped.
        state = run.result_of(host, "Look for a finished migration of this source on the target")
        assert [item["complete"] for item in state["result"]["results"]] == [True], state["result"]
        ran = [r["task"] for r in run.task_results(host)
               if r["status"] != "skipped" and not r["task"].startswith("Validating arguments")]
        assert ran == ["Look for a finished migration of this source on the target"], ran


def test_redo_goes_through_every_phase_and_still_changes_nothing(fleet):
    assert "first" in fleet, "needs the real run"
    run = run_playbook("migrate.yml", fleet["inventory"],
                       extra_args=["--limit", "t-bios,t-twodisk", "-e", "migrate_vm_redo=true"])
    assert run.rc == 0, run.output[-3000:]
    for host in ("t-bios", "t-twodisk"):
        assert run.stats[host]["changed"] == 0, run.changed_tasks(host)
        convert = run.result_of(host, "Convert each disk into the pool")
        assert convert["status"] == "ok" and not convert["changed"]
        verdict = run.result_of(host, "Validate the migrated guest")["result"]["verdict"]
        assert verdict["booted"] is True


def test_two_sources_declaring_one_name_both_fail_and_nothing_is_created(libvirt_daemon, appliances, tmp_path):
    pool = f"v2kvm-test-dup-{RUN}"
    inventory = write_inventory(tmp_path / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": pool,
        "migrate_vm_storage_pool_path": f"/var/lib/libvirt/images/{pool}",
    }, {
        # Two copies of one OVA: both declare the VM name "demo-bios", so two VMs would share one domain
        # and one set of volumes. (Copies, so no earlier migration of the cached appliance is found.)
        "dup-a": {"migrate_vm_source_path": str(shutil.copy(appliances["demo-bios"], tmp_path / "a.ova"))},
        "dup-b": {"migrate_vm_source_path": str(shutil.copy(appliances["demo-bios"], tmp_path / "b.ova"))},
    })
    run = run_playbook("migrate.yml", inventory)
    for host in ("dup-a", "dup-b"):
        assert run.stats[host]["failures"] == 1, run.output[-3000:]
        msg = " ".join(run.failure_messages(host))
        assert "declared by several sources" in msg and "migrate_vm_name" in msg, msg
    assert not os.path.exists(f"/var/lib/libvirt/images/{pool}/demo-bios-disk0.qcow2")
