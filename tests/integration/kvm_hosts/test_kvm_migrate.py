"""kvm_host_info and kvm_migrate against three real libvirt hosts with real TCG guests."""

import json
import os

import pytest
from kvm_hosts.conftest import boot_lines, libvirt, read_log, run_module, ticks, wait_for

pytestmark = pytest.mark.integration


def test_host_info_reports_capacity_pools_and_domains(kvm_hosts, guests):
    h1, h2 = kvm_hosts[0], kvm_hosts[1]
    name = guests.define(h1, "info", start=False)
    one = run_module("kvm_host_info", uri=h1.uri, name="h1", probe_domain_type=False)
    two = run_module("kvm_host_info", uri=h2.uri, name="h2", probe_domain_type=False)
    assert not one.get("failed"), one
    facts = one["host"]
    assert facts["name"] == "h1" and facts["cpus"] >= 1 and facts["memory_total_mib"] > 0
    assert facts["host_uuid"] == h1.host_uuid != two["host"]["host_uuid"]
    pool = next(p for p in facts["pools"] if p["name"] == "v2kvm")
    assert pool["active"] and pool["available_bytes"] > 0
    assert "qemu" in facts["domain_types_offered"]
    dom = next(d for d in facts["domains"] if d["name"] == name)
    assert dom["memory_mib"] == 96 and dom["vcpus"] == 1 and not dom["active"]
    assert name not in [d["name"] for d in two["host"]["domains"]]


def test_refusals_touch_nothing(kvm_hosts, guests, nodes):
    h1 = kvm_hosts[0]
    name = guests.define(h1, "refuse", start=False)
    cases = [
        (dict(source="h1", target="h1"), "Target node must be different from source node"),
        (dict(source="h1", target="h9"), "Node h9 not found in cluster"),
        (dict(source="h1", target="h2"), "VM must be running for live migration"),
    ]
    for extra, message in cases:
        result = run_module("kvm_migrate", name=name, nodes=nodes, **extra)
        assert result.get("failed") and message in result["msg"], result
    # Two node names for one daemon are still the same node.
    alias = nodes + [{"name": "h1-again", "uri": h1.uri.replace("127.0.0.1", "localhost")}]
    result = run_module("kvm_migrate", name=name, nodes=alias, source="h1", target="h1-again", mode="cold")
    assert result.get("failed") and "Target node must be different from source node" in result["msg"], result
    # A VM larger than the target's free memory.
    conn = libvirt.open(h1.uri)
    try:
        dom = conn.lookupByName(name)
        xml = dom.XMLDesc(0).replace("<memory unit='KiB'>98304</memory>", "<memory unit='TiB'>64</memory>")
        xml = xml.replace("<currentMemory unit='KiB'>98304</currentMemory>", "")
        conn.defineXML(xml)
    finally:
        conn.close()
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h2", mode="cold")
    assert result.get("failed") and "Not enough capacity on node h2" in result["msg"], result
    assert guests.where(name) == ["h1"]


def test_live_migration_keeps_the_guest_running(kvm_hosts, guests, nodes, tmp_path):
    h1, h2 = kvm_hosts[0], kvm_hosts[1]
    name = guests.define(h1, "live")
    guests.wait_ticking(h1, name, 2)
    progress = tmp_path / "progress.jsonl"
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h2",
                        migrate_uri="tcp://127.0.0.1", max_downtime_ms=300, progress_file=str(progress))
    assert result.get("changed") and not result.get("failed"), result
    assert guests.where(name) == ["h2"]
    before = ticks(read_log(h1, name))
    wait_for(lambda: len(ticks(read_log(h2, name))) >= 3, 30, "ticks on the target")
    after = ticks(read_log(h2, name))
    # The same guest goes on counting on the target: no reboot, no second boot line anywhere.
    assert after[0] <= before[-1] + 2 and after == list(range(after[0], after[0] + len(after)))
    assert len(boot_lines(read_log(h1, name))) == 1 and boot_lines(read_log(h2, name)) == []
    conn = libvirt.open(h2.uri)
    try:
        dom = conn.lookupByName(name)
        assert dom.isActive() and dom.isPersistent()
    finally:
        conn.close()
    assert isinstance(result["downtime_ms"], int) and result["downtime_ms"] > 0
    samples = [json.loads(line) for line in progress.read_text().splitlines()]
    assert samples[-1]["stage"] == "done" and samples[-1]["done"] == samples[-1]["total"] > 0
    # Running it again finds the VM already there.
    again = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h2")
    assert not again.get("failed") and not again["changed"], again


def test_live_migration_that_cannot_converge_escalates_to_post_copy(kvm_hosts, guests, nodes):
    h1, h2 = kvm_hosts[0], kvm_hosts[1]
    # The guest rewrites 48 MiB of RAM without pause, faster than 16 MiB/s can send it: pre-copy never
    # converges under a 20 ms downtime, so only the switch to post-copy can finish the migration.
    name = guests.define(h1, "postcopy", memory_mib=128, dirty_mib=48)
    guests.wait_ticking(h1, name, 3)
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h2",
                        migrate_uri="tcp://127.0.0.1", bandwidth_mib=16, max_downtime_ms=20,
                        post_copy=True, post_copy_after=2, timeout=600)
    assert not result.get("failed"), result
    assert result["escalated"] == ["post-copy"], result
    assert guests.where(name) == ["h2"]
    count = len(ticks(read_log(h2, name)))
    wait_for(lambda: len(ticks(read_log(h2, name))) >= count + 2, 30, "ticks on the target after post-copy")
    assert boot_lines(read_log(h2, name)) == [] and len(boot_lines(read_log(h1, name))) == 1


def test_aborted_live_migration_leaves_the_guest_on_the_source(kvm_hosts, guests, nodes):
    h2, h3 = kvm_hosts[1], kvm_hosts[2]
    # The guest rewrites 48 MiB of RAM without pause: at 1 MiB/s pre-copy can never converge, so the job can
    # only end by the abort the time limit sends (asked again at every poll until libvirt accepts it). A quiet
    # guest is not enough: its memory is mostly zero pages, sent almost for free, and on a loaded machine the
    # job once finished before libvirt took the abort.
    name = guests.define(h2, "abort", memory_mib=128, dirty_mib=48)
    guests.wait_ticking(h2, name, 2)
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h2", target="h3",
                        migrate_uri="tcp://127.0.0.1", bandwidth_mib=1, timeout=2)
    assert result.get("failed"), result
    assert "aborted" in result["msg"] and "the guest keeps running on the source node" in result["msg"], result
    assert guests.where(name) == ["h2"]
    count = len(ticks(read_log(h2, name)))
    wait_for(lambda: len(ticks(read_log(h2, name))) >= count + 2, 20, "ticks on the source after the abort")
    assert len(boot_lines(read_log(h2, name))) == 1
    conn = libvirt.open(h3.uri)
    try:
        assert not [v for v in conn.storagePoolLookupByName("v2kvm").listAllVolumes(0) if name in v.name()]
    finally:
        conn.close()


def test_cold_migration_moves_disk_and_boots_on_target(kvm_hosts, guests, nodes):
    h1, h3 = kvm_hosts[0], kvm_hosts[2]
    name = guests.define(h1, "cold")
    guests.wait_ticking(h1, name, 1)
    source_disk = h1.path(f"/var/lib/libvirt/images/v2kvm/{name}.raw")
    with open(source_disk, "rb") as handle:
        source_bytes = handle.read()
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h3", mode="cold",
                        shutdown_timeout=2, force_shutdown=True, validate_seconds=90, require_success_pattern=True)
    assert result.get("changed") and not result.get("failed"), result
    assert guests.where(name) == ["h3"]
    # The verdict came from the target's console, read through libvirt over TCP.
    assert result["validated"]["method"] == "console", result["validated"]
    assert result["validated"]["matched_line"] == f"V2KVM-BOOT-OK {name}", result["validated"]
    # The busybox guest ignores ACPI: only the allowed power-off stopped it.
    assert result["stopped"].startswith("powered off")
    with open(h3.path(f"/var/lib/libvirt/images/v2kvm/{name}.raw"), "rb") as handle:
        target_bytes = handle.read()
    assert len(target_bytes) == len(source_bytes)
    wait_for(lambda: boot_lines(read_log(h3, name)), 60, "the guest to boot on the target")
    assert boot_lines(read_log(h3, name)) == [f"V2KVM-BOOT-OK {name}"]
    # The source disk stays (remove_source_storage=false); the source definition is gone.
    assert os.path.exists(source_disk)


def test_cold_migration_of_a_guest_that_panics_on_the_target_keeps_the_source(kvm_hosts, guests, nodes):
    h1, h2 = kvm_hosts[0], kvm_hosts[1]
    name = guests.define(h1, "coldpanic", broken=True)
    wait_for(lambda: "Kernel panic" in read_log(h1, name), 90, "the broken guest to panic on the source")
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h1", target="h2", mode="cold",
                        shutdown_timeout=1, force_shutdown=True, validate_seconds=90)
    assert result.get("failed"), result
    assert "did not boot on the target" in result["msg"] and "Kernel panic" in result["msg"], result["msg"]
    assert "rolled back" in result["msg"] and "the guest runs on the source node again" in result["msg"], result["msg"]
    assert guests.where(name) == ["h1"]
    conn = libvirt.open(h2.uri)
    try:
        assert not [v for v in conn.storagePoolLookupByName("v2kvm").listAllVolumes(0) if name in v.name()]
    finally:
        conn.close()


def test_cold_migration_refuses_to_power_off_without_force(kvm_hosts, guests, nodes):
    h2 = kvm_hosts[1]
    name = guests.define(h2, "noforce")
    guests.wait_ticking(h2, name, 1)
    result = run_module("kvm_migrate", name=name, nodes=nodes, source="h2", target="h3", mode="cold",
                        shutdown_timeout=2)
    assert result.get("failed") and "did not shut down within 2 s: set force_shutdown=true" in result["msg"], result
    assert guests.where(name) == ["h2"]
