"""Hostile and broken sources for v2kvm.migrate.ova_info, each built for real inside tmp_path.

Every case must be refused with a message that names the problem and the fix, and must leave
the source files byte-identical and the whole temporary tree (tmp_path's parent) unchanged.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.module_utils._ova_source import run_module

MIB = 1 << 20
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           ".work", "collections")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real disk images made once: raw bytes converted by qemu-img."""
    base = tmp_path_factory.mktemp("images")
    raw = base / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(8 * MIB)
        handle.write(b"boot sector " * 40)
        handle.seek(3 * MIB)
        handle.write(os.urandom(300_000))
    made = {"raw": str(raw)}
    for subformat in ("streamOptimized", "monolithicSparse"):
        made[subformat] = pkg.to_vmdk(str(raw), str(base / f"{subformat}.vmdk"), subformat)
    made["qcow2"] = str(base / "disk.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), made["qcow2"]], check=True)
    return made


def _copy(images, kind, dest):
    shutil.copyfile(images[kind], dest)
    return str(dest)


def _ovf(src, disks, name="web01", firmware="bios", **options):
    return pkg.write_ovf(str(src / f"{name if ' ' not in name else 'vm'}.ovf"), name=name, vcpus=2, memory_mib=512,
                         firmware=firmware, os_type="debian11_64Guest", disks=disks,
                         nics=[{"mac": "00:50:56:aa:bb:cc", "network": "VM Network"}], **options)


def _one_disk(src, images, kind="streamOptimized", **extra):
    vmdk = _copy(images, kind, src / "web01-disk1.vmdk")
    return vmdk, [pkg.disk_entry(vmdk, disk_id="vmdisk1", **extra)]


def _good_ova(src, images, **make_kwargs):
    vmdk, disks = _one_disk(src, images)
    ovf = _ovf(src, disks)
    return pkg.make_ova(str(src / "web01.ova"), ovf, [vmdk], **make_kwargs)


def _mutated_ovf_folder(src, images, old, new, *, count=1, **ovf_options):
    vmdk, disks = _one_disk(src, images)
    ovf = _ovf(src, disks, **ovf_options)
    with open(ovf, encoding="utf-8") as handle:
        text = handle.read()
    assert text.count(old) >= count, "test set-up: %r not in the OVF" % old
    with open(ovf, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, new))
    return pkg.make_ovf_folder(str(src), ovf, [vmdk])


def _ova_with_special(src, images, info):
    """A good OVA plus one crafted tar header (link, device, hostile name...)."""
    path = _good_ova(src, images, digest=None)
    with tarfile.open(path, "a", format=tarfile.USTAR_FORMAT) as tar:
        data = b"" if info.type != tarfile.REGTYPE else b"evil\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _special(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


# ----------------------------------------------------------------------------------- the cases


def case_tar_traversal(src, images):
    return _ova_with_special(src, images, _special("../escaped.txt", tarfile.REGTYPE)), {}


def case_absolute_member(src, images):
    return _ova_with_special(src, images, _special("/tmp/v2kvm-absolute.txt", tarfile.REGTYPE)), {}


def case_symlink_member(src, images):
    return _ova_with_special(src, images, _special("passwd", tarfile.SYMTYPE, "/etc/passwd")), {}


def case_hardlink_member(src, images):
    return _ova_with_special(src, images, _special("copy.vmdk", tarfile.LNKTYPE, "web01-disk1.vmdk")), {}


def case_device_member(src, images):
    info = _special("sda", tarfile.BLKTYPE)
    info.devmajor, info.devminor = 8, 0
    return _ova_with_special(src, images, info), {}


def case_fifo_member(src, images):
    return _ova_with_special(src, images, _special("pipe", tarfile.FIFOTYPE)), {}


def case_duplicate_members(src, images):
    path = _good_ova(src, images, digest=None)
    with tarfile.open(path, "a", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(str(src / "web01-disk1.vmdk"), arcname="./web01-disk1.vmdk")
    return path, {}


def case_no_ovf_in_ova(src, images):
    vmdk = _copy(images, "streamOptimized", src / "web01-disk1.vmdk")
    path = str(src / "web01.ova")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(vmdk, arcname="web01-disk1.vmdk")
    return path, {}


def case_two_ovfs_in_ova(src, images):
    return _good_ova(src, images, extra_members={"second.ovf": b"<Envelope/>"}), {}


def case_not_a_tar(src, images):
    path = src / "web01.ova"
    path.write_text("this is a README, not an OVA\n" * 40)
    return str(path), {}


def case_gzipped_ova(src, images):
    plain = _good_ova(src, images)
    path = str(src / "gz.ova")
    with open(plain, "rb") as handle, gzip.open(path, "wb") as out:
        shutil.copyfileobj(handle, out)
    return path, {}


def case_truncated_ova(src, images):
    path = _good_ova(src, images)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    return path, {}


def _xxe_folder(src, images, doctype, reference):
    path = _mutated_ovf_folder(src, images, "<Annotation>", "<Annotation>" + reference, annotation="note")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace("?>\n", "?>\n" + doctype + "\n", 1))
    return path


def case_ovf_xxe(src, images):
    return _xxe_folder(src, images, '<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "&xxe;"), {}


def case_billion_laughs(src, images):
    entities = '<!ENTITY lol "lol">' + "".join(
        '<!ENTITY lol%d "%s">' % (n, ("&lol%d;" % (n - 1) if n > 1 else "&lol;") * 10) for n in range(1, 10)
    )
    return _xxe_folder(src, images, "<!DOCTYPE Envelope [%s]>" % entities, "&lol9;"), {}


def case_dtd(src, images):
    doctype = '<!DOCTYPE Envelope SYSTEM "http://example.invalid/ovf.dtd">'
    return _mutated_ovf_folder(src, images, "?>\n", "?>\n" + doctype + "\n"), {}


def case_descriptor_too_large(src, images):
    path = _mutated_ovf_folder(src, images, "</Envelope>", "<!--" + "x" * (17 * MIB) + "--></Envelope>")
    return path, {}


def case_missing_disk_file_folder(src, images):
    vmdk, disks = _one_disk(src, images)
    ovf = _ovf(src, disks)
    os.remove(vmdk)
    return ovf, {}


def case_missing_disk_member(src, images):
    vmdk, disks = _one_disk(src, images)
    ovf = _ovf(src, disks)
    return pkg.make_ova(str(src / "web01.ova"), ovf, [vmdk], digest=None, order=["web01.ovf"]), {}


def case_wrong_manifest_digest(src, images):
    return _good_ova(src, images, manifest_override={"web01-disk1.vmdk": "0" * 64}), {}


def case_manifest_misses_a_file(src, images):
    return _good_ova(src, images, manifest_override={"web01-disk1.vmdk": None}), {}


def case_manifest_names_missing_file(src, images):
    return _good_ova(src, images, manifest_override={"ghost-disk2.vmdk": "1" * 64}), {}


def case_manifest_required_but_absent(src, images):
    return _good_ova(src, images, digest=None), {"require_manifest": True}


def case_size_mismatch(src, images):
    vmdk, disks = _one_disk(src, images)
    disks[0]["size"] += 512
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks), [vmdk]), {}


def case_truncated_vmdk(src, images):
    vmdk = _copy(images, "monolithicSparse", src / "web01-disk1.vmdk")
    with open(vmdk, "r+b") as handle:
        handle.truncate(200 * 1024)
    disks = [{"file": "web01-disk1.vmdk", "disk_id": "vmdisk1", "capacity_bytes": 8 * MIB,
              "size": os.path.getsize(vmdk), "controller": "scsi", "unit": 0}]
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks), [vmdk]), {}


def case_truncated_bare_vmdk(src, images):
    vmdk = _copy(images, "streamOptimized", src / "db01.vmdk")
    with open(vmdk, "r+b") as handle:
        handle.truncate(1000)
    return vmdk, {}


def case_text_named_vmdk(src, images):
    path = src / "db01.vmdk"
    path.write_text("hello, I am not a disk\n")
    return str(path), {}


def case_qcow2_named_vmdk_in_ovf(src, images):
    vmdk = _copy(images, "qcow2", src / "web01-disk1.vmdk")
    disks = [{"file": "web01-disk1.vmdk", "disk_id": "vmdisk1", "capacity_bytes": 8 * MIB,
              "size": os.path.getsize(vmdk), "controller": "scsi", "unit": 0}]
    return pkg.make_ovf_folder(str(src), _ovf(src, disks), [vmdk]), {}


def case_vmdk_extent_outside_folder(src, images):
    outside = src.parent / "secret-flat.vmdk"
    outside.write_bytes(b"\0" * MIB)
    path = src / "db01.vmdk"
    path.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 2048 FLAT "../secret-flat.vmdk" 0\n\nddb.adapterType = "lsilogic"\n'
    )
    return str(path), {}


def case_descriptor_vmdk_inside_ova(src, images):
    descriptor = src / "web01-disk1.vmdk"
    descriptor.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 2048 FLAT "/etc/hostname" 0\n'
    )
    disks = [{"file": "web01-disk1.vmdk", "disk_id": "vmdisk1", "capacity_bytes": MIB,
              "size": os.path.getsize(descriptor), "controller": "scsi", "unit": 0}]
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks), [str(descriptor)]), {}


def case_unknown_firmware(src, images):
    return _mutated_ovf_folder(src, images, 'vmw:value="efi"', 'vmw:value="coreboot"', firmware="uefi"), {}


def case_blank_vm_name(src, images):
    vmdk, disks = _one_disk(src, images)
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks, name="   "), [vmdk]), {}


def case_bad_name_override(src, images):
    return _good_ova(src, images), {"name": "../../etc"}


def case_gzip_declared_not_gzip(src, images):
    vmdk, disks = _one_disk(src, images, compression="gzip")
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks), [vmdk]), {}


def case_unsupported_compression(src, images):
    vmdk, disks = _one_disk(src, images, compression="bzip2")
    return pkg.make_ova(str(src / "web01.ova"), _ovf(src, disks), [vmdk]), {}


def case_unknown_allocation_units(src, images):
    return _mutated_ovf_folder(src, images, 'ovf:capacityAllocationUnits="byte"',
                               'ovf:capacityAllocationUnits="furlong * 2^20"'), {}


def case_virtual_system_collection(src, images):
    collection = '<VirtualSystemCollection ovf:id="vapp">\n<VirtualSystem '
    path = _mutated_ovf_folder(src, images, "<VirtualSystem ", collection)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace("</VirtualSystem>", "</VirtualSystem>\n</VirtualSystemCollection>"))
    return path, {}


def case_no_virtual_system(src, images):
    path = _mutated_ovf_folder(src, images, "<VirtualSystem ", "<Unrelated ")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace("</VirtualSystem>", "</Unrelated>"))
    return path, {}


def case_disk_attached_twice(src, images):
    first = _copy(images, "streamOptimized", src / "web01-disk1.vmdk")
    second = _copy(images, "monolithicSparse", src / "web01-disk2.vmdk")
    disks = [pkg.disk_entry(first, disk_id="vmdisk1"), pkg.disk_entry(second, disk_id="vmdisk2", unit=1)]
    ovf = _ovf(src, disks)
    with open(ovf, encoding="utf-8") as handle:
        text = handle.read()
    with open(ovf, "w", encoding="utf-8") as handle:
        handle.write(text.replace("ovf:/disk/vmdisk2", "ovf:/disk/vmdisk1"))
    return pkg.make_ovf_folder(str(src), ovf, [first, second]), {}


def case_sha512_manifest_mismatch(src, images):
    return _good_ova(src, images, digest="sha512", manifest_override={"web01-disk1.vmdk": "0" * 128}), {}


def case_md5_manifest(src, images):
    return _good_ova(src, images, digest="md5"), {}


def case_hostile_member_name(src, images):
    # An extra member the manifest does not list: its name is echoed, and must not paint or break lines.
    path = _good_ova(src, images)
    with tarfile.open(path, "a", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("notes\x1b[2J\x1b[31m\r\nok: [web01] => all fine\u202e.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return path, {}


def case_ten_thousand_members(src, images):
    path = str(src / "web01.ova")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for number in range(10_000):
            info = tarfile.TarInfo("junk-%05d.bin" % number)
            tar.addfile(info, io.BytesIO(b""))
    return path, {}


def case_hostile_firmware_value(src, images):
    return _mutated_ovf_folder(src, images, 'vmw:value="efi"', 'vmw:value="efi&#13;&#10;FAKE&#x202E;&#x9B;"',
                               firmware="uefi"), {}


def _qcow2_folder(src, images, *options):
    disk = src / "web01-disk1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(disk), "8M"], check=True)
    disks = [{"file": disk.name, "disk_id": "vmdisk1", "capacity_bytes": 8 * MIB, "size": os.path.getsize(disk),
              "controller": "scsi", "unit": 0, "format": "http://www.gnome.org/~markmc/qcow-image-format.html"}]
    return pkg.make_ovf_folder(str(src), _ovf(src, disks), [str(disk)])


def case_qcow2_backing_file_outside(src, images):
    return _qcow2_folder(src, images, "-u", "-F", "raw", "-b", "/etc/hostname"), {}


def case_qcow2_external_data_file(src, images):
    outside = src.parent / "data.raw"
    return _qcow2_folder(src, images, "-o", "data_file=%s" % outside), {}


def case_vmdk_parent_hint(src, images):
    path = src / "db01.vmdk"
    flat = src / "db01-flat.vmdk"
    flat.write_bytes(b"\0" * MIB)
    path.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=12345678\ncreateType="monolithicFlat"\n'
        'parentFileNameHint="/vmfs/volumes/ds1/db01/db01-base.vmdk"\n\n'
        'RW 2048 FLAT "db01-flat.vmdk" 0\n\nddb.adapterType = "lsilogic"\n'
    )
    return str(path), {}


def case_vmdk_absolute_extent(src, images):
    path = src / "db01.vmdk"
    path.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 16 FLAT "/etc/hostname" 0\n\nddb.adapterType = "lsilogic"\n'
    )
    return str(path), {"probe_disks": False}


def case_ovf_extent_outside_without_probe(src, images):
    descriptor = src / "web01-disk1.vmdk"
    descriptor.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
        'RW 16 FLAT "../../etc/hostname" 0\n'
    )
    disks = [{"file": "web01-disk1.vmdk", "disk_id": "vmdisk1", "capacity_bytes": 8192,
              "size": os.path.getsize(descriptor), "controller": "scsi", "unit": 0}]
    return pkg.make_ovf_folder(str(src), _ovf(src, disks), [str(descriptor)]), {"probe_disks": False}


CASES = {
    # name: (builder, words the message must contain)
    "tar-traversal": (case_tar_traversal, ["'..'", "path traversal", "escaped.txt"]),
    "absolute-member": (case_absolute_member, ["absolute path", "/tmp/v2kvm-absolute.txt"]),
    "symlink-member": (case_symlink_member, ["symbolic link", "/etc/passwd", "regular files"]),
    "hardlink-member": (case_hardlink_member, ["hard link", "copy.vmdk"]),
    "device-member": (case_device_member, ["block device", "sda"]),
    "fifo-member": (case_fifo_member, ["FIFO", "pipe"]),
    "duplicate-members": (case_duplicate_members, ["two members named", "web01-disk1.vmdk"]),
    "no-ovf": (case_no_ovf_in_ova, ["no .ovf descriptor"]),
    "two-ovfs": (case_two_ovfs_in_ova, ["several .ovf descriptors", "second.ovf"]),
    "not-a-tar": (case_not_a_tar, ["not a readable tar archive"]),
    "gzipped-ova": (case_gzipped_ova, ["gzip-compressed", "uncompressed", "gzip -dk"]),
    "truncated-ova": (case_truncated_ova, ["truncated", "download or copy the OVA again"]),
    "ovf-xxe": (case_ovf_xxe, ["external entity", "XXE", "file:///etc/passwd", "<!DOCTYPE"]),
    "billion-laughs": (case_billion_laughs, ["entity expansion", "billion laughs"]),
    "dtd": (case_dtd, ["DTD", "<!DOCTYPE"]),
    "descriptor-too-large": (case_descriptor_too_large, ["byte limit", "OVF descriptor"]),
    "missing-disk-file": (case_missing_disk_file_folder, ["web01-disk1.vmdk", "does not exist", "copy"]),
    "missing-disk-member": (case_missing_disk_member, ["web01-disk1.vmdk", "not in the OVA"]),
    "wrong-mf-digest": (case_wrong_manifest_digest, ["SHA256 digest of web01-disk1.vmdk", "does not match"]),
    "mf-misses-file": (case_manifest_misses_a_file, ["does not list web01-disk1.vmdk"]),
    "mf-names-missing-file": (case_manifest_names_missing_file, ["ghost-disk2.vmdk", "does not contain"]),
    "manifest-required": (case_manifest_required_but_absent, ["require_manifest=true", "no .mf manifest"]),
    "size-mismatch": (case_size_mismatch, ["ovf:size", "web01-disk1.vmdk"]),
    "truncated-vmdk": (case_truncated_vmdk, ["web01-disk1.vmdk", "qemu-img check", "points after EOF"]),
    "truncated-bare-vmdk": (case_truncated_bare_vmdk, ["db01.vmdk", "truncated"]),
    "text-named-vmdk": (case_text_named_vmdk, ["not a VMDK", "text file", "db01.vmdk"]),
    "qcow2-named-vmdk": (case_qcow2_named_vmdk_in_ovf, ["not a VMDK", "qcow2"]),
    "vmdk-extent-outside": (case_vmdk_extent_outside_folder, ["extent file", "outside its own directory"]),
    "descriptor-vmdk-in-ova": (case_descriptor_vmdk_inside_ova, ["VMDK descriptor", "extent files"]),
    "unknown-firmware": (case_unknown_firmware, ["unknown firmware", "coreboot", 'vmw:value="efi"']),
    "blank-vm-name": (case_blank_vm_name, ["has no name", "`name` option", "migrate_vm_name"]),
    "sha512-mismatch": (case_sha512_manifest_mismatch, ["SHA512 digest of web01-disk1.vmdk", "does not match"]),
    "md5-manifest": (case_md5_manifest, ["MD5", "SHA384 and SHA512", "migrate_vm_verify_manifest"]),
    "hostile-member-name": (case_hostile_member_name, ["does not list", "notes\\x1b[2J\\x1b[31m\\r\\nok:",
                                                       "\\u202e.txt"]),
    "ten-thousand-members": (case_ten_thousand_members, ["no .ovf descriptor", "junk-00009.bin and 9990 more"]),
    "hostile-firmware-value": (case_hostile_firmware_value, ["unknown firmware", "efi\\r\\nFAKE\\u202e\\x9b"]),
    "qcow2-backing-outside": (case_qcow2_backing_file_outside, ["backing file", "/etc/hostname", "consolidate"]),
    "qcow2-data-file": (case_qcow2_external_data_file, ["external file", "data.raw", "self-contained"]),
    "vmdk-parent-hint": (case_vmdk_parent_hint, ["delta (snapshot) VMDK", "db01-base.vmdk", "consolidate"]),
    "vmdk-absolute-extent": (case_vmdk_absolute_extent, ["extent file /etc/hostname", "outside its own directory"]),
    "ovf-extent-outside-no-probe": (case_ovf_extent_outside_without_probe, ["../../etc/hostname", "outside"]),
    "bad-name-override": (case_bad_name_override, ["'../../etc'", "`name` option"]),
    "gzip-declared-not-gzip": (case_gzip_declared_not_gzip, ["ovf:compression=\"gzip\"", "not gzip data"]),
    "unsupported-compression": (case_unsupported_compression, ["bzip2", "only gzip"]),
    "unknown-allocation-units": (case_unknown_allocation_units, ["furlong * 2^20", "byte * 2^N"]),
    "virtual-system-collection": (case_virtual_system_collection, ["VirtualSystemCollection", "each VM"]),
    "no-virtual-system": (case_no_virtual_system, ["0 VirtualSystem", "exactly one"]),
    "disk-attached-twice": (case_disk_attached_twice, ["vmdisk1", "attached twice"]),
}


def _tree_snapshot(root):
    """Every path under root with its size and mtime: any write, anywhere in the tree, changes it."""
    found = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            stat = os.lstat(path)
            found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _outside_snapshot(tmp_path):
    """Everything in this test's own directory, and the names beside it: a write anywhere in there shows.
    Other tests' directories are only named, not walked: their late writes (a server closing its
    database) are not this module's doing."""
    return _tree_snapshot(tmp_path), sorted(os.listdir(tmp_path.parent))


def _digests(directory):
    digests = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digests[name] = hashlib.sha256(handle.read()).hexdigest()
    return digests


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_and_nothing_is_written(case, tmp_path, images):
    build, words = CASES[case]
    src = tmp_path / "src"
    src.mkdir()
    path, extra = build(src, images)
    tree_before, sources_before = _outside_snapshot(tmp_path), _digests(src)
    cwd_before = sorted(os.listdir(os.getcwd()))

    result = run_module(dict({"path": str(path)}, **extra))

    assert result.get("failed") is True, result
    assert result["changed"] is False
    assert "spec" not in result
    for word in words:
        assert word in result["msg"], "%r missing from: %s" % (word, result["msg"])
    assert ". Fix: " in result["msg"]
    assert result["msg"].isprintable(), "raw control characters reach the message: %r" % result["msg"]
    assert len(result["msg"]) < 2000, "an unbounded message: %d characters" % len(result["msg"])
    assert _digests(src) == sources_before
    assert _outside_snapshot(tmp_path) == tree_before
    assert sorted(os.listdir(os.getcwd())) == cwd_before
    assert not os.path.exists("/tmp/v2kvm-absolute.txt")  # where the absolute member would have landed


def test_there_are_enough_bad_inputs():
    assert len(CASES) >= 40


def test_bad_input_through_the_real_module_entry_point(tmp_path, images):
    src = tmp_path / "src"
    src.mkdir()
    path, _extra = case_symlink_member(src, images)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": path}}))
    tree_before, sources_before = _outside_snapshot(tmp_path), _digests(src)

    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.v2kvm.migrate.plugins.modules.ova_info", str(args)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False, timeout=120,
    )

    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["failed"] is True
    assert "symbolic link" in result["msg"] and "/etc/passwd" in result["msg"]
    assert _digests(src) == sources_before
    assert _outside_snapshot(tmp_path) == tree_before
