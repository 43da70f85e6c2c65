"""Files an image names are refused before any tool opens them; untrusted text is escaped; names derived."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
from rig import ovf_package as pkg

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError, SpecError
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_references import check_image_file
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import listing, neutral, untrusted
from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import (
    NAME_PATTERN,
    domain_name_for,
    name_source_vm,
)

COLLECTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[os.pardir] * 4, ".work", "collections")


def _ova_info(tmp_path, path):
    """The real module in a process of its own: a tool that opened a FIFO would hang it, and the timeout shows."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"path": str(path)}}))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.v2kvm.migrate.plugins.modules.ova_info", str(args)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.realpath(COLLECTIONS)),
        cwd=str(tmp_path), check=False, timeout=60,
    )
    return json.loads(proc.stdout)


def test_a_vmdk_extent_outside_is_refused_before_qemu_img_opens_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(tmp_path / "pipe")  # opening it for reading blocks until a writer comes: none will
    vmdk = src / "db01.vmdk"
    vmdk.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\n\nRW 16 FLAT "../pipe" 0\n')

    result = _ova_info(tmp_path, vmdk)

    assert result["failed"] and "extent file ../pipe outside its own directory" in result["msg"]


def test_a_qcow2_data_file_is_refused_before_qemu_img_opens_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    disk = src / "db01-disk1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=%s" % (tmp_path / "data"),
                    str(disk), "1M"], check=True)
    os.remove(tmp_path / "data")
    os.mkfifo(tmp_path / "data")
    disks = [{"file": disk.name, "disk_id": "vmdisk1", "capacity_bytes": 1 << 20, "size": os.path.getsize(disk),
              "controller": "scsi", "unit": 0, "format": "http://www.gnome.org/~markmc/qcow-image-format.html"}]
    ovf = pkg.write_ovf(str(src / "db01.ovf"), name="db01", vcpus=1, memory_mib=256, firmware="bios",
                        os_type="debian11_64Guest", disks=disks, nics=[])

    with pytest.raises(SourceError, match="keeps its data in the external file"):
        check_image_file(str(disk))
    result = _ova_info(tmp_path, pkg.make_ovf_folder(str(src), ovf, [str(disk)]))
    assert result["failed"] and "keeps its data in the external file" in result["msg"]


def test_self_contained_vmdks_and_plain_images_pass(tmp_path):
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * (1 << 20))
    for fmt, options in (("vmdk", "subformat=streamOptimized"), ("vmdk", "subformat=monolithicSparse"),
                         ("qcow2", "")):
        out = tmp_path / ("out.%s" % fmt)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt] + (["-o", options] if options else [])
                       + [str(raw), str(out)], check=True)
        assert check_image_file(str(out)) in ("vmdk", "qcow2")
        # Inside an archive a sparse VMDK names only itself, which is no reference.
        assert check_image_file(str(out), inside_archive=True) in ("vmdk", "qcow2")
    assert check_image_file(str(raw)) == "unknown"


def test_a_descriptor_with_extents_inside_an_archive_is_refused(tmp_path):
    vmdk = tmp_path / "d.vmdk"
    vmdk.write_text('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 16 FLAT "d-flat.vmdk" 0\n')
    assert check_image_file(str(vmdk)) == "vmdk-descriptor"
    with pytest.raises(SourceError, match="names separate extent files"):
        check_image_file(str(vmdk), inside_archive=True)


@pytest.mark.parametrize("raw, shown", [
    ("plain name", "plain name"),
    ("a\x1b[31mred", "a\\x1b[31mred"),
    ("line\r\nFAKE", "line\\r\\nFAKE"),
    ("rlo\u202etxt.exe", "rlo\\u202etxt.exe"),
    ("Mönch ünï 東京", "Mönch ünï 東京"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
])
def test_untrusted_escapes_what_cannot_be_shown(raw, shown):
    assert untrusted(raw) == shown
    assert untrusted(raw).isprintable()


def test_listing_caps_and_neutral_reaches_every_string():
    assert listing(["a", "b"]) == "a, b"
    assert listing("n%d" % i for i in range(10_000)).endswith("n9 and 9990 more")
    assert neutral({"k\n": ["x\x1b", {"y": "\r"}], "n": 3}) == {"k\\n": ["x\\x1b", {"y": "\\r"}], "n": 3}


@pytest.mark.parametrize("original", ["Web Server 01", "Mönch", "db/01", "東京", "-lead", "x" * 200, "a\nb"])
def test_derived_names_are_valid_stable_and_keep_the_original(original):
    name, kept = name_source_vm(original, "test")
    assert NAME_PATTERN.fullmatch(name) and kept == original
    assert name.endswith("-" + hashlib.sha256(original.encode()).hexdigest()[:8])
    assert name_source_vm(original, "test") == (name, kept) and domain_name_for(original) == name


def test_derived_names_fold_letters_and_differ_for_different_originals():
    assert name_source_vm("Mönch", "t")[0].startswith("Monch-")
    assert name_source_vm("Web Server 01", "t")[0].startswith("Web-Server-01-")
    assert name_source_vm("web 01", "t")[0] != name_source_vm("web_01 ", "t")[0]
    assert name_source_vm("web01", "t") == ("web01", None)
    with pytest.raises(SpecError, match="no name"):
        name_source_vm("  ", "t")
