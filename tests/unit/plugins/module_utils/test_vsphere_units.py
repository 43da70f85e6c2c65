"""Spec building from pyVmomi data objects (no server), pre-flight rules, secret scrubbing."""

import hashlib

import pytest
from pyVmomi import vim

from ansible_collections.v2kvm.migrate.plugins.module_utils import _preflight_rules as rules
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SpecError
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import scrub

PLACE = {"datacenter": "DC0", "folder": "prod", "cluster": "C0", "host": "esx1", "path": "/DC0/vm/prod/web01"}


def _props(name="web01", rdm=None, mode="persistent", guest="debian11_64Guest"):
    dev = vim.vm.device
    if rdm:
        backing = dev.VirtualDisk.RawDiskMappingVer1BackingInfo(
            fileName="[ds1] web01/rdm.vmdk", compatibilityMode=rdm, diskMode=mode)
    else:
        backing = dev.VirtualDisk.FlatVer2BackingInfo(fileName="[ds1] web01/web01.vmdk", diskMode=mode,
                                                      thinProvisioned=True)
    devices = [
        dev.ParaVirtualSCSIController(key=1000, busNumber=0),
        dev.VirtualDisk(key=2001, controllerKey=1000, unitNumber=1, capacityInKB=2048,
                        backing=dev.VirtualDisk.FlatVer2BackingInfo(
                            fileName="[ds1] web01/data.vmdk", diskMode="persistent")),
        dev.VirtualDisk(key=2000, controllerKey=1000, unitNumber=0, capacityInKB=1024, backing=backing),
        dev.VirtualE1000e(key=4000, macAddress="00:50:56:AA:BB:CC",
                          backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="Prod")),
    ]
    config = vim.vm.ConfigInfo(
        name=name, guestId=guest, guestFullName="Debian", firmware="bios", annotation="note",
        instanceUuid="i-1", uuid="b-1", changeTrackingEnabled=False, version="vmx-19",
        files=vim.vm.FileInfo(vmPathName="[ds1] web01/web01.vmx"),
        hardware=vim.vm.VirtualHardware(numCPU=4, numCoresPerSocket=2, memoryMB=2048, device=devices))
    return {"name": name, "config": config, "runtime.powerState": "poweredOn"}


def _spec(**kwargs):
    return vspec.build_spec(vim.VirtualMachine("vm-42"), _props(**kwargs), PLACE, "vc.example")


def test_spec_follows_vm_spec_and_carries_vsphere_keys():
    spec = _spec()
    assert spec["source"]["type"] == "vsphere" and spec["source"]["moid"] == "vm-42"
    assert spec["source"]["path"] == "/DC0/vm/prod/web01" and spec["source"]["folder"] == "prod"
    assert (spec["vcpus"], spec["cores_per_socket"], spec["memory_mib"]) == (4, 2, 2048)
    assert [d["id"] for d in spec["disks"]] == ["scsi0-0", "scsi0-1"], "unit 0 is the boot disk"
    boot = spec["disks"][0]
    assert boot["datastore_path"] == "[ds1] web01/web01.vmdk"
    assert boot["path"] == "/vmfs/volumes/ds1/web01/web01.vmdk" and boot["capacity_bytes"] == 1 << 20
    assert spec["nics"] == [{"mac": "00:50:56:aa:bb:cc", "network": "Prod", "model": "e1000e"}]


def test_a_vcenter_name_that_is_no_domain_name_gets_a_derived_one():
    spec = _spec(name="web 01 (old)")
    assert spec["name"] == "web-01-old-" + hashlib.sha256("web 01 (old)".encode()).hexdigest()[:8]
    assert spec["original_name"] == "web 01 (old)"
    assert _spec()["original_name"] is None


def test_a_bad_name_override_is_refused_naming_the_override():
    with pytest.raises(SpecError, match="name override"):
        vspec.build_spec(vim.VirtualMachine("vm-42"), _props(), PLACE, "vc.example", name="web 01 (old)")


def test_datastore_path_parsing():
    assert vspec.parse_datastore_path("[ds 1] a/b.vmdk") == ("ds 1", "a/b.vmdk")
    with pytest.raises(vspec.VsphereError):
        vspec.parse_datastore_path("/vmfs/volumes/x.vmdk")


def test_rdm_rule_and_ova_spec():
    found = rules.evaluate(_spec(rdm="physicalMode"))
    assert found[0]["rule"] == "rdm" and found[0]["severity"] == "critical" and "Fix:" in found[0]["message"]
    ova = dict(_spec(), source={"type": "ova", "path": "/x.ova", "manifest": None})
    assert rules.evaluate(ova) == []
    assert [f["rule"] for f in rules.evaluate(ova, mode="warm")] == ["cbt"]


def test_independent_disk_is_critical_only_for_warm():
    spec = _spec(mode="independent_persistent")
    assert rules.evaluate(spec)[0]["severity"] == "warning"
    assert rules.evaluate(spec, mode="warm")[0]["severity"] == "critical"


def test_scrub_hides_secrets():
    assert scrub("login pw=hunter2 failed", ["hunter2", None, ""]) == "login pw=******** failed"


def test_custom_attributes_and_soap_tags():
    value = vim.CustomFieldsManager.StringValue
    props = {"customValue": [value(key=101, value="3"), value(key=102, value="db"), value(key=999, value="gone"),
                             value(key=101, value="4")],
             "tag": [vim.Tag(key="SYSTEM/migrate"), vim.Tag(key="SYSTEM/migrate"), vim.Tag(key="gold")]}
    attributes, tags = vspec.attributes_and_tags(props, {101: "wave", 102: "role"})
    # The last value of a key wins; a value whose definition is gone is not shown.
    assert attributes == {"wave": "4", "role": "db"}
    assert tags == ["SYSTEM/migrate", "gold"]
    assert vspec.attributes_and_tags({"name": "web01"}, {}) == ({}, [])
