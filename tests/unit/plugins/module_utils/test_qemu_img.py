"""qemu-img wrapper against the real qemu-img, on images made here with known bytes."""

import json
import os
import re
import subprocess
import tarfile

import pytest
from rig.raw_images import write_sparse

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img

MIB = 1 << 20
PATTERN = {0: b"boot sector" * 40, 3 * MIB + 17: os.urandom(70000), 9 * MIB - 5: b"tail!"}


def make_raw(path, size=16 * MIB, pattern=None):
    return write_sparse(path, size, PATTERN if pattern is None else pattern)


def qemu_convert(src, src_fmt, dst, dst_fmt, *options):
    subprocess.run(["qemu-img", "convert", "-f", src_fmt, "-O", dst_fmt, *options, str(src), str(dst)],
                   check=True)
    return str(dst)


def read_at(path, offset, size):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


@pytest.fixture
def raw(tmp_path):
    return make_raw(tmp_path / "disk.raw")


@pytest.fixture
def stream_vmdk(tmp_path, raw):
    return qemu_convert(raw, "raw", tmp_path / "disk.vmdk", "vmdk", "-o", "subformat=streamOptimized")


def test_version_is_a_dotted_number():
    assert _qemu_img.qemu_img_version().split(".")[0].isdigit()


def test_info_reports_virtual_size_and_format(stream_vmdk):
    result = _qemu_img.info(stream_vmdk, "vmdk")
    assert result["virtual-size"] == 16 * MIB
    assert result["format"] == "vmdk"
    assert result["format-specific"]["data"]["create-type"] == "streamOptimized"


def test_error_names_the_file_and_repeats_qemu_img(tmp_path):
    missing = str(tmp_path / "nope.vmdk")
    with pytest.raises(_qemu_img.QemuImgError) as caught:
        _qemu_img.info(missing, "vmdk")
    assert missing in str(caught.value)
    assert "No such file" in str(caught.value)
    assert caught.value.file == missing and caught.value.returncode != 0


def test_convert_reports_rising_progress_and_keeps_bytes(tmp_path, stream_vmdk):
    seen = []
    out = str(tmp_path / "out.raw")
    _qemu_img.convert(stream_vmdk, "vmdk", out, "raw", on_progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    for offset, data in PATTERN.items():
        assert read_at(out, offset, len(data)) == data
    assert os.stat(out).st_blocks * 512 < 2 * MIB, "raw output must stay sparse"


def test_convert_failure_names_source_and_stderr(tmp_path, stream_vmdk):
    broken = tmp_path / "broken.vmdk"
    whole = open(stream_vmdk, "rb").read()
    broken.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(_qemu_img.QemuImgError) as caught:
        _qemu_img.convert(str(broken), "vmdk", str(tmp_path / "o.qcow2"), "qcow2")
    assert str(broken) in str(caught.value)
    assert caught.value.stderr


def test_compare_sees_identity_and_a_changed_byte(tmp_path, raw, stream_vmdk):
    qcow2 = qemu_convert(stream_vmdk, "vmdk", tmp_path / "c.qcow2", "qcow2")
    assert _qemu_img.compare(stream_vmdk, "vmdk", qcow2, "qcow2")[0] is True
    other = make_raw(tmp_path / "other.raw", pattern={**PATTERN, 9 * MIB - 5: b"tail?"})
    same, message = _qemu_img.compare(raw, "raw", other, "raw")
    assert same is False
    mismatch = int(re.search(r"offset (\d+)", message).group(1))
    assert 9 * MIB - 512 <= mismatch <= 9 * MIB - 1


def test_check_ok_on_fresh_qcow2_and_finds_corruption(tmp_path, raw):
    qcow2 = qemu_convert(raw, "raw", tmp_path / "c.qcow2", "qcow2")
    result = _qemu_img.check(qcow2, "qcow2")
    assert result["ok"] and result["corruptions"] == 0 and result["supported"]
    # Point the first L2 table entry somewhere absurd: a refcount/cluster corruption.
    l1_offset = int.from_bytes(read_at(qcow2, 40, 8), "big")
    l2_offset = int.from_bytes(read_at(qcow2, l1_offset, 8), "big") & ((1 << 56) - 512)
    with open(qcow2, "r+b") as handle:
        handle.seek(l2_offset)
        handle.write(((1 << 63) | (7 * 65536)).to_bytes(8, "big"))
    damaged = _qemu_img.check(qcow2, "qcow2")
    assert not damaged["ok"] and damaged["corruptions"] > 0


def test_check_raw_is_unsupported_but_ok(raw):
    assert _qemu_img.check(raw, "raw") == {"ok": True, "corruptions": 0, "leaks": 0, "supported": False,
                                           "raw": {}}


def test_map_extents_lists_data_and_holes(raw):
    extents = _qemu_img.map_extents(raw, "raw")
    data = [e for e in extents if e["data"]]
    assert data[0]["start"] == 0
    assert any(e["start"] <= 3 * MIB + 17 < e["start"] + e["length"] for e in data)
    assert any(not e["data"] and e["start"] <= 6 * MIB < e["start"] + e["length"] for e in extents)


def test_image_source_plain_file_is_its_path(tmp_path):
    disk = {"path": "/x/d.vmdk", "offset": 0, "member": None, "format": "vmdk", "size": 5}
    assert _qemu_img.image_source(disk) == "/x/d.vmdk"


def test_image_source_reads_a_disk_inside_a_tar_in_place(tmp_path, stream_vmdk):
    ova = tmp_path / "vm.ova"
    (tmp_path / "vm.ovf").write_text("<Envelope/>" * 100)
    with tarfile.open(ova, "w") as tar:
        tar.add(tmp_path / "vm.ovf", "vm.ovf")
        tar.add(stream_vmdk, "vm-disk1.vmdk")
    with tarfile.open(ova) as tar:
        member = tar.getmember("vm-disk1.vmdk")
    disk = {"id": "vmdisk1", "file": "vm-disk1.vmdk", "path": None, "member": member.name,
            "offset": member.offset_data, "size": member.size, "format": "vmdk", "compression": None}
    source = _qemu_img.image_source(disk, container=str(ova))
    assert source.startswith("json:")
    assert json.loads(source[5:])["file"]["offset"] == member.offset_data
    out = str(tmp_path / "out.raw")
    _qemu_img.convert(source, "vmdk", out, "raw")
    for offset, data in PATTERN.items():
        assert read_at(out, offset, len(data)) == data
    assert str(ova) in _qemu_img.describe_source(source)


def test_image_source_refuses_gzip_and_missing_container():
    with pytest.raises(_qemu_img.QemuImgError, match="gzip-compressed.*decompress"):
        _qemu_img.image_source({"file": "d.vmdk", "compression": "gzip", "path": "/x.ova", "offset": 512})
    with pytest.raises(_qemu_img.QemuImgError, match="container"):
        _qemu_img.image_source({"file": "d.vmdk", "path": None, "member": "d.vmdk", "offset": 512})
