"""Whole sources (OVA, OVF folder, bare VMDK) read into specs in place, with real qemu-img."""

import gzip
import hashlib
import os
import shutil

import pytest
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils._ova_source import read_source_spec, run_module
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import ManifestError

MIB = 1 << 20


@pytest.fixture(scope="module")
def raws(tmp_path_factory):
    base = tmp_path_factory.mktemp("raws")
    made = {}
    for name, size, seed in (("boot", 8 * MIB, b"boot"), ("data", 6 * MIB, b"data")):
        path = base / f"{name}.raw"
        with open(path, "wb") as handle:
            handle.truncate(size)
            handle.write(hashlib.sha512(seed).digest() * 2000)
            handle.seek(size - 4096)
            handle.write(seed * 1024)
        made[name] = str(path)
    return made


def _two_disk_ovf(src, raws, *, name="app01", firmware="bios"):
    boot = pkg.to_vmdk(raws["boot"], str(src / f"{name}-disk1.vmdk"), "monolithicSparse", adapter_type="ide")
    data = pkg.to_vmdk(raws["data"], str(src / f"{name}-disk2.vmdk"), "streamOptimized")
    disks = [
        pkg.disk_entry(data, disk_id="vmdisk2", controller="scsi", unit=3),
        pkg.disk_entry(boot, disk_id="vmdisk1", controller="ide", unit=0),
    ]
    ovf = pkg.write_ovf(str(src / f"{name}.ovf"), name=name, vcpus=2, memory_mib=1024, firmware=firmware,
                        os_type="debian12_64Guest", os_description="Debian GNU/Linux 12 (64-bit)", disks=disks,
                        nics=[{"mac": "00:50:56:01:02:03", "network": "VM Network"}])
    return ovf, [boot, data]


def test_ovf_folder_with_sha1_manifest(tmp_path, raws):
    ovf, vmdks = _two_disk_ovf(tmp_path, raws)
    pkg.make_ovf_folder(str(tmp_path), ovf, vmdks, digest="sha1")

    spec, warnings = read_source_spec(ovf)

    assert warnings == []
    assert spec["source"] == {"type": "ovf", "path": ovf, "manifest": "sha1"}
    assert spec["guest_os"]["family"] == "linux"
    # The data disk's SCSI controller comes first in the descriptor, so it is listed first.
    placement = [(d["id"], d["controller"], d["unit"]) for d in spec["disks"]]
    assert placement == [("vmdisk2", "scsi", 3), ("vmdisk1", "ide", 0)]
    by_id = {d["id"]: d for d in spec["disks"]}
    assert by_id["vmdisk1"]["subformat"] == "monolithicSparse"
    assert by_id["vmdisk2"]["subformat"] == "streamOptimized"
    assert by_id["vmdisk1"]["capacity_bytes"] == 8 * MIB and by_id["vmdisk2"]["capacity_bytes"] == 6 * MIB
    for disk, vmdk in zip(sorted(spec["disks"], key=lambda d: d["id"]), vmdks):
        assert disk["path"] == vmdk and disk["member"] is None and disk["offset"] == 0
        assert disk["size"] == os.path.getsize(vmdk)
        assert disk["sha1"] == pkg.file_digest(vmdk, "sha1") and disk["sha256"] is None


def test_ova_disks_are_read_in_place_with_the_same_bytes(tmp_path, raws):
    ovf, vmdks = _two_disk_ovf(tmp_path, raws)
    ova = pkg.make_ova(str(tmp_path / "app01.ova"), ovf, vmdks)

    result = run_module({"path": ova, "require_manifest": True})

    spec = result["spec"]
    assert spec["source"]["manifest"] == "sha256"
    assert not os.path.exists(tmp_path / "app01-disk1.vmdk.part")
    for disk in spec["disks"]:
        assert disk["path"] is None and disk["member"] == disk["file"] and disk["offset"] > 0
        assert disk["sha256"] == pkg.file_digest(str(tmp_path / disk["file"]))
        raw = raws["boot"] if disk["id"] == "vmdisk1" else raws["data"]
        same, verdict = _qemu_img.compare(_qemu_img.image_source(disk, ova), None, raw, "raw")
        assert same, verdict


def test_descriptor_not_first_warns_and_unverified_manifest_is_null(tmp_path, raws):
    ovf, vmdks = _two_disk_ovf(tmp_path, raws)
    names = [os.path.basename(p) for p in vmdks] + ["app01.mf", "app01.ovf"]
    ova = pkg.make_ova(str(tmp_path / "app01.ova"), ovf, vmdks, order=names,
                       manifest_override={"app01-disk2.vmdk": "0" * 64})

    spec, warnings = read_source_spec(ova, verify_manifest=False)

    assert spec["source"]["manifest"] is None
    assert [d["sha256"] for d in spec["disks"]] == [None, None]
    assert len(warnings) == 1 and "not the first member" in warnings[0]


def test_gzip_disk_is_recorded_not_probed(tmp_path, raws):
    vmdk = pkg.to_vmdk(raws["data"], str(tmp_path / "plain.vmdk"), "streamOptimized")
    packed = str(tmp_path / "gz01-disk1.vmdk")
    with open(vmdk, "rb") as handle, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(handle, out)
    disks = [{"file": "gz01-disk1.vmdk", "disk_id": "vmdisk1", "capacity_bytes": 6 * MIB,
              "size": os.path.getsize(packed), "controller": "scsi", "unit": 0, "compression": "gzip"}]
    ovf = pkg.write_ovf(str(tmp_path / "gz01.ovf"), name="gz01", vcpus=1, memory_mib=256, firmware="bios",
                        os_type="otherLinux64Guest", disks=disks, nics=[])
    ova = pkg.make_ova(str(tmp_path / "gz01.ova"), ovf, [packed])

    spec, warnings = read_source_spec(ova)

    disk = spec["disks"][0]
    assert (disk["compression"], disk["format"], disk["subformat"]) == ("gzip", "vmdk", "streamOptimized")
    assert disk["capacity_bytes"] == 6 * MIB
    assert any("gzip" in warning and "decompress" in warning for warning in warnings)


def test_bare_vmdk_takes_hardware_from_options(tmp_path, raws):
    vmdk = pkg.to_vmdk(raws["boot"], str(tmp_path / "db01.vmdk"), "monolithicSparse", adapter_type="lsilogic")
    before = pkg.file_digest(vmdk)

    for probe in (True, False):
        spec, _warnings = read_source_spec(vmdk, vcpus=4, memory_mib=4096, firmware="uefi", probe_disks=probe)
        assert spec["name"] == "db01"
        assert (spec["vcpus"], spec["memory_mib"], spec["firmware"]) == (4, 4096, "uefi")
        assert spec["source"] == {"type": "vmdk", "path": vmdk, "manifest": None}
        disk = spec["disks"][0]
        assert (disk["controller"], disk["capacity_bytes"], disk["path"]) == ("scsi", 8 * MIB, vmdk)
        assert disk["subformat"] == ("monolithicSparse" if probe else None)
    assert pkg.file_digest(vmdk) == before


def test_bare_vmdk_adapter_type_ide_gives_ide(tmp_path, raws):
    vmdk = pkg.to_vmdk(raws["data"], str(tmp_path / "old01.vmdk"), "streamOptimized", adapter_type="ide")
    assert read_source_spec(vmdk)[0]["disks"][0]["controller"] == "ide"


def test_name_override_replaces_the_source_name(tmp_path, raws):
    ovf, vmdks = _two_disk_ovf(tmp_path, raws)
    assert read_source_spec(ovf, name="app01-migrated")[0]["name"] == "app01-migrated"


def test_required_manifest_must_be_verified(tmp_path):
    with pytest.raises(ManifestError, match="verify_manifest=false"):
        read_source_spec(str(tmp_path / "x.ova"), require_manifest=True, verify_manifest=False)
