"""Disk files of an OVA/OVF/VMDK source: kinds told by their bytes, details filled by real qemu-img."""

import os
import subprocess

import pytest
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.module_utils import _ova_disks as disk_files
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DiskFileError,
    UnsupportedSourceError,
)

MIB = 1 << 20


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "disk.raw"
    with open(path, "wb") as handle:
        handle.truncate(4 * MIB)
        handle.write(b"boot sector " * 64)
    return str(path)


def _disk(path, file_name=None, **fields):
    disk = disk_files.new_disk("vmdisk1", file_name or os.path.basename(path), path, None, 0, os.path.getsize(path))
    disk.update(fields)
    return disk


def _head(path):
    with open(path, "rb") as handle:
        return handle.read(512)


def test_qcow2_bytes_under_a_vmdk_name_are_refused(tmp_path, raw):
    qcow2 = str(tmp_path / "web01-disk1.vmdk")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2], check=True)
    disk = _disk(qcow2)

    with pytest.raises(DiskFileError, match="is not a VMDK: it is a qcow2 image"):
        disk_files.classify_disk_bytes(disk, _head(qcow2), True, False)


def test_undeclared_gzip_is_refused_and_a_raw_img_is_raw(tmp_path):
    packed = tmp_path / "disk.vmdk"
    packed.write_bytes(b"\x1f\x8b" + b"\0" * 510)
    with pytest.raises(DiskFileError, match="does not declare ovf:compression"):
        disk_files.classify_disk_bytes(_disk(str(packed)), _head(packed), True, False)

    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    disk = _disk(str(image))
    assert disk_files.classify_disk_bytes(disk, _head(image), False, False) == "unknown"
    assert disk["format"] == "raw"


def test_probe_takes_the_images_virtual_size_and_warns_on_a_mismatch(tmp_path, raw):
    vmdk = pkg.to_vmdk(raw, str(tmp_path / "db01-disk1.vmdk"), "streamOptimized")
    disk = _disk(vmdk, capacity_bytes=8 * MIB)

    warnings = disk_files.probe(disk, None, "VMDK", str(tmp_path), force=False)

    assert len(warnings) == 1 and "capacity %d bytes" % (8 * MIB) in warnings[0]
    assert (disk["capacity_bytes"], disk["subformat"]) == (4 * MIB, "streamOptimized")
    assert disk["populated_bytes"] > 0

    forced = _disk(vmdk, capacity_bytes=8 * MIB)
    assert disk_files.probe(forced, None, "VMDK", str(tmp_path), force=True) == []
    assert forced["capacity_bytes"] == 4 * MIB


def test_probe_refuses_a_delta_image(tmp_path, raw):
    base = str(tmp_path / "base.qcow2")
    delta = str(tmp_path / "delta.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, base], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", delta], check=True)
    disk = _disk(delta, format="qcow2")

    with pytest.raises(UnsupportedSourceError, match="delta image with backing file"):
        disk_files.probe(disk, None, "qcow2", str(tmp_path), force=False)


def test_sparse_capacity_reads_the_monolithic_sparse_header(tmp_path, raw):
    sparse = pkg.to_vmdk(raw, str(tmp_path / "app01.vmdk"), "monolithicSparse")

    assert disk_files.sparse_capacity(_head(sparse), sparse) == 4 * MIB
    with pytest.raises(DiskFileError, match="cannot be read without qemu-img"):
        disk_files.sparse_capacity(b"# Disk DescriptorFile\n", sparse)
