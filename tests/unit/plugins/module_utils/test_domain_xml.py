"""Spec -> domain XML: stable bytes, the decisions the options ask for, and clear refusals."""

import copy

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_xml as dxml

SPEC = {
    "name": "web01",
    "source": {"type": "ova", "path": "/data/web01.ova", "manifest": "sha256"},
    "vcpus": 4,
    "cores_per_socket": 2,
    "memory_mib": 2048,
    "firmware": "bios",
    "secure_boot": False,
    "guest_os": {"id": "debian11_64Guest", "description": "Debian", "family": "linux"},
    "disks": [{"id": "d0", "format": "vmdk"}, {"id": "d1", "format": "vmdk"}],
    "nics": [{"mac": "00:50:56:AA:BB:CC", "network": "VM Network", "model": "vmxnet3"},
             {"mac": None, "network": "DMZ", "model": "e1000"}],
    "annotation": "web server",
}
DISKS = [
    {"path": "/pool/web01-0.qcow2", "format": "qcow2", "pool": "migrated", "volume": "web01-0.qcow2"},
    {"path": "/elsewhere/web01-1.raw", "format": "raw", "pool": None, "volume": None},
]


def plan(spec=None, **overrides):
    spec = SPEC if spec is None else spec
    args = dict(name="web01", disks=DISKS, network_map={"VM Network": "prod", "DMZ": "user"}, domain_type="qemu")
    args.update(overrides)
    return dxml.plan_from_spec(copy.deepcopy(spec), **args)


def test_rendering_is_byte_stable_and_digest_follows_content():
    assert dxml.build_domain_xml(plan()) == dxml.build_domain_xml(plan())
    assert dxml.config_digest(plan()) == dxml.config_digest(plan())
    bigger = dict(SPEC, memory_mib=4096)
    assert dxml.config_digest(plan(spec=bigger)) != dxml.config_digest(plan())


def test_bios_guest_on_pool_volume_and_file_with_mapped_networks():
    xml = dxml.build_domain_xml(plan())
    summary = dxml.summarize(xml)
    assert summary["machine"] == "q35" and summary["firmware"] == "bios"
    assert summary["memory_kib"] == 2048 * 1024 and summary["vcpus"] == 4
    assert summary["topology"] == "2 sockets x 2 cores x 1 threads"
    assert summary["cpu_mode"] is None
    assert summary["disks"] == [
        {"dev": "vda", "bus": "virtio", "format": "qcow2", "source": "migrated/web01-0.qcow2"},
        {"dev": "vdb", "bus": "virtio", "format": "raw", "source": "/elsewhere/web01-1.raw"},
    ]
    assert summary["nics"] == [
        {"type": "network", "network": "prod", "mac": "00:50:56:aa:bb:cc", "model": "virtio"},
        {"type": "user", "network": None, "mac": None, "model": "virtio"},
    ]
    assert summary["serial_log"] == "/var/log/libvirt/qemu/web01-serial0.log"
    assert '<bios useserial="yes" />' in xml and '<boot order="1" />' in xml
    assert dxml.serial_log_path(xml) == ("/var/log/libvirt/qemu/web01-serial0.log", False)


def test_uefi_secure_boot_kvm_and_ide_choices():
    secure = dict(SPEC, firmware="uefi", secure_boot=True)
    xml = dxml.build_domain_xml(plan(spec=secure, domain_type="kvm"))
    summary = dxml.summarize(xml)
    assert summary["firmware"] == "uefi" and summary["secure_boot"] is True
    assert summary["cpu_mode"] == "host-model" and summary["type"] == "kvm"
    assert '<smm state="on" />' in xml
    insecure = dxml.summarize(dxml.build_domain_xml(plan(spec=dict(SPEC, firmware="uefi"))))
    assert insecure["firmware"] == "uefi" and insecure["secure_boot"] is False
    ide = dxml.summarize(dxml.build_domain_xml(plan(disk_bus="ide")))
    assert ide["machine"] == "pc" and [d["dev"] for d in ide["disks"]] == ["hda", "hdb"]
    scsi_xml = dxml.build_domain_xml(plan(disk_bus="scsi"))
    assert 'model="virtio-scsi"' in scsi_xml and dxml.summarize(scsi_xml)["disks"][1]["dev"] == "sdb"


def test_keep_macs_false_takes_fallback_macs_without_changing_the_digest():
    p = plan(keep_macs=False)
    assert all(n["mac"] is None for n in p["nics"])
    with_macs = dxml.build_domain_xml(p, fallback_macs=["52:54:00:00:00:01", "52:54:00:00:00:02"])
    assert dxml.interface_macs(with_macs) == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    wanted = dxml.summarize(dxml.build_domain_xml(p))
    assert dxml.comparable(dxml.summarize(with_macs), wanted) == wanted


def test_target_dev_names_go_past_z():
    assert [dxml.target_dev("virtio", i) for i in (0, 25, 26, 27)] == ["vda", "vdz", "vdaa", "vdab"]


def test_libvirt_expansions_are_not_drift():
    wanted = dxml.summarize(dxml.build_domain_xml(plan()))
    live = dxml.build_domain_xml(plan()).replace('machine="q35"', 'machine="pc-q35-7.2"')
    live = live.replace('<cpu>', '<cpu mode="custom" match="exact"><model>qemu64</model>')
    live = live.replace('<memory unit="MiB">2048</memory>', '<memory unit="KiB">2097152</memory>')
    assert dxml.comparable(dxml.summarize(live), wanted) == wanted


@pytest.mark.parametrize("overrides, words", [
    ({"network_map": {}}, ["'VM Network'", "network_map", "default_network"]),
    ({"disks": DISKS[:1]}, ["disks has 1", "spec.disks has 2"]),
    ({"name": "bad name"}, ["name option"]),
    ({"disk_bus": "ide", "machine": "q35"}, ["no IDE controller", "sata"]),
    ({"disks": [dict(DISKS[0], format="vmdk"), DISKS[1]]}, ["vmdk", "disk_convert"]),
])
def test_refusals_name_the_option_to_fix(overrides, words):
    with pytest.raises(dxml.DomainSpecError) as info:
        plan(**overrides)
    for word in words:
        assert word in str(info.value)


def test_default_network_catches_unmapped_sources():
    summary = dxml.summarize(dxml.build_domain_xml(plan(network_map={}, default_network="default")))
    assert [n["network"] for n in summary["nics"]] == ["default", "default"]
