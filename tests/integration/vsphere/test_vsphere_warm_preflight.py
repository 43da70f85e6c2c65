"""Warm migration with CBT (only changed blocks copied, counted in bytes; the final copy equals the source)
and the pre-flight rules, one simulated VM per rule."""

import json
import os
import random

import pytest
import sim_rig
from vsphere.conftest import vsphere_args
from helpers import run_module
from pyVmomi import vim

pytestmark = pytest.mark.integration
BLOCK = 64 * 1024  # the simulator's CBT granularity


def test_warm_sync_copies_only_changed_blocks_and_cutover_is_exact(vsim, make_vm, tmp_path):
    vm, name, flat = make_vm(power_on=True)
    args = vsphere_args(vsim, name=name, dest=str(tmp_path), method="warm", shutdown_timeout=30)
    full, raw = run_module("vsphere_export", tmp_path, **args)
    assert not full.get("failed"), full
    assert full["sync"]["kind"] == "full" and vm.runtime.powerState == "poweredOn"
    assert "enabled change tracking" in full["power_actions"] and vm.config.changeTrackingEnabled
    assert vm.snapshot is None, "the sync snapshot is removed"
    assert 0 < full["sync"]["bytes"] < os.path.getsize(flat), "only allocated areas are read"
    state = json.loads((tmp_path / f".{name}.v2kvm-warm.json").read_text())
    assert state["disks"]["scsi0-0"]["change_id"] == full["change_ids"]["scsi0-0"]

    # The guest writes 7 blocks (two of them adjacent) while it keeps running.
    rng = random.Random(7)
    blocks = sorted(rng.sample(range(0, os.path.getsize(flat) // BLOCK, 2), 6)) + []
    blocks.append(blocks[0] + 1)
    with open(flat, "r+b") as handle:
        for block in blocks:
            handle.seek(block * BLOCK + 100)
            handle.write(os.urandom(300))
    delta, unused = run_module("vsphere_export", tmp_path, **args)
    assert delta["sync"]["kind"] == "delta"
    assert delta["sync"]["bytes"] == len(set(blocks)) * BLOCK, "exactly the changed blocks are copied"

    with open(flat, "r+b") as handle:
        handle.seek(blocks[2] * BLOCK)
        handle.write(b"last words before cutover")
    final, raw = run_module("vsphere_export", tmp_path, **dict(args, cutover=True))
    assert not final.get("failed"), final
    assert final["sync"]["bytes"] == BLOCK and vm.runtime.powerState == "poweredOff"
    assert final["power_actions"] == ["guest shutdown"]
    with open(final["disks"][0]["path"], "rb") as got, open(flat, "rb") as want:
        assert got.read() == want.read(), "the warm copy equals the source disk"
    assert vsim.password not in raw


def test_downtime_budget_syncs_until_the_last_delta_fits(vsim, make_vm, tmp_path):
    vm, name, unused = make_vm(power_on=True)
    result, unused = run_module("vsphere_export", tmp_path, **vsphere_args(
        vsim, name=name, dest=str(tmp_path), method="warm", downtime_budget=30, max_syncs=5))
    assert not result.get("failed"), result
    # A full copy says nothing about the cutover, so a delta follows; that one fits and the loop stops.
    assert [sync["kind"] for sync in result["syncs"]] == ["full", "delta"], result["syncs"]
    assert result["budget_met"] is True and result["estimated_cutover_seconds"] <= 30
    assert not result.get("warnings") and vm.runtime.powerState == "poweredOn"


def test_tiny_downtime_budget_stops_at_max_syncs_with_a_clear_message(sim_binary, boot_raw, tmp_path):
    # Each sync queries the changed areas once, so a slow QueryChangedDiskAreas makes every delta last > 1 s.
    slow = sim_rig.start_simulator(sim_binary, "-api-version", "8.0.0.0", "-method-delay",
                                   "QueryChangedDiskAreas:1500")
    try:
        si = slow.connect()
        dsp, unused, size = sim_rig.write_esxi_disk(si, "v2kvm-test-budget", "v2kvm-test-budget", boot_raw)
        sim_rig.create_vm(si, "v2kvm-test-budget", [sim_rig.disk_spec(dsp, size, key=2000)], power_on=True)
        result, unused = run_module("vsphere_export", tmp_path, **vsphere_args(
            slow, name="v2kvm-test-budget", dest=str(tmp_path), method="warm", downtime_budget=1, max_syncs=3))
        power = sim_rig.find_vm(si, "v2kvm-test-budget").runtime.powerState
        sim_rig.disconnect(si)
    finally:
        slow.stop()
    assert not result.get("failed"), result
    assert [sync["kind"] for sync in result["syncs"]] == ["full", "delta", "delta"], "max_syncs caps the loop"
    assert result["budget_met"] is False and result["estimated_cutover_seconds"] > 1
    assert "downtime_budget not met after 3 sync(s)" in result["msg"] and "raise max_syncs" in result["msg"]
    assert any(result["msg"] in str(warning) for warning in result["warnings"]), "shown as a warning too"
    assert power == "poweredOn", "without cutover the VM keeps running"


def _rule_vm(make_vm, rule):
    dev = vim.vm.device
    if rule == "rdm":
        vm, name, flat = make_vm()
        return sim_rig.attach_as_rdm(vm, "physicalMode"), name, flat
    if rule == "independent_disk":
        return make_vm(disk_options={"mode": "independent_persistent"})
    if rule == "shared_disk":
        return make_vm(disk_options={"sharing": "sharingMultiWriter"})
    if rule == "vtpm":
        tpm = dev.VirtualDeviceSpec(operation="add", device=dev.VirtualTPM(key=11000))
        return make_vm(firmware="efi", extra_devices=[tpm])
    if rule == "pci_passthrough":
        backing = dev.VirtualPCIPassthrough.DeviceBackingInfo(id="0000:03:00.0", deviceId="1", systemId="x",
                                                              vendorId=1, deviceName="gpu")
        return make_vm(extra_devices=[dev.VirtualDeviceSpec(operation="add", device=dev.VirtualPCIPassthrough(
            key=13000, backing=backing))])
    if rule == "usb_controller":
        return make_vm(extra_devices=[dev.VirtualDeviceSpec(operation="add",
                                                            device=dev.VirtualUSBController(key=7000))])
    if rule == "secure_boot":
        return make_vm(firmware="efi", secure_boot=True)
    if rule == "guest_os":
        return make_vm(guest_id="darwin64Guest")
    if rule == "snapshots":
        vm, name, flat = make_vm()
        sim_rig.wait_task(vm.CreateSnapshot_Task(name="before-upgrade", memory=False, quiesce=False))
        return vm, name, flat
    return make_vm()


@pytest.mark.parametrize("rule,severity,mode", [
    ("rdm", "critical", "cold"), ("independent_disk", "critical", "warm"), ("shared_disk", "critical", "cold"),
    ("snapshots", "warning", "cold"), ("cbt", "info", "warm"), ("vtpm", "critical", "cold"),
    ("pci_passthrough", "critical", "cold"), ("usb_controller", "info", "cold"), ("secure_boot", "warning", "cold"),
    ("guest_os", "critical", "cold"), ("target_space", "critical", "cold"), ("name_conflict", "critical", "cold"),
])
def test_preflight_rule_triggers_on_its_vm(vsim, make_vm, tmp_path, rule, severity, mode):
    name = _rule_vm(make_vm, rule)[1]
    info, unused = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, name=name))
    spec = info["spec"]
    extra = {}
    if rule == "target_space":
        spec["disks"][0]["capacity_bytes"] = 1 << 60  # an exabyte never fits
        extra["target_path"] = str(tmp_path / "pool-not-made-yet")
    if rule == "name_conflict":
        extra["existing_names"] = [name]
    result, unused = run_module("preflight", tmp_path, spec=spec, mode=mode, fail_on_critical=False, **extra)
    found = [f for f in result["findings"] if f["rule"] == rule]
    assert found and found[0]["severity"] == severity, result["findings"]
    assert "Fix:" in found[0]["message"]
    assert result["blocked"] is (any(f["severity"] == "critical" for f in result["findings"]))
    if severity == "critical":
        stopped, unused = run_module("preflight", tmp_path, spec=spec, mode=mode, **extra)
        assert stopped["failed"] and "critical" in stopped["msg"]


def test_clean_vm_has_no_blocking_finding(vsim, make_vm, tmp_path):
    name = make_vm()[1]
    info, unused = run_module("vsphere_vm_info", tmp_path, **vsphere_args(vsim, name=name))
    result, unused = run_module("preflight", tmp_path, spec=info["spec"], target_path=str(tmp_path))
    assert not result.get("failed") and result["blocked"] is False and result["findings"] == []
