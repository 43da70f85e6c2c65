# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disk files of an OVA/OVF/VMDK source: what their bytes are, and what qemu-img says of them.

``classify_disk_bytes`` sets a disk's format from its magic bytes and refuses what cannot be a
disk of the kind the descriptor declares; ``probe`` fills capacity, subformat and populated size
from qemu-img and refuses delta, external-data, multi-extent and damaged images.
"""

from __future__ import annotations

import os
import re
import struct

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img as qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils import _source_references as references
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DiskFileError,
    UnsupportedSourceError,
)

_ADAPTER_TYPE = re.compile(r'^\s*ddb\.adapterType\s*=\s*"([^"]*)"', re.MULTILINE)


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "an empty file"
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in head[:256])
    if printable == len(head[:256]):
        return "a text file starting with %r" % head[:40].decode("ascii", "replace")
    return "a file starting with bytes %s" % head[:8].hex()


def adapter_controller(path: str, offset: int, kind: str) -> str:
    """Controller of a bare VMDK from its descriptor's ddb.adapterType (qemu-img does not report it)."""
    try:
        text = references.vmdk_descriptor_text(path, offset, kind)
    except OSError:
        return "scsi"
    match = _ADAPTER_TYPE.search(text)
    return "ide" if match and match.group(1).lower() == "ide" else "scsi"


def _refuse_foreign_extents(disk_name: str, details: dict, base_dir: str | None) -> None:
    extents = ((details.get("format-specific") or {}).get("data") or {}).get("extents") or []
    for extent in extents:
        filename = extent.get("filename", "")
        if base_dir is None:
            if len(extents) != 1:
                raise UnsupportedSourceError(
                    "disk %s inside the OVA has %d extents; only single-extent VMDKs can be read from an OVA"
                    % (disk_name, len(extents)),
                    "re-export the VM with ovftool, which writes single-extent streamOptimized disks",
                )
            continue
        real = os.path.realpath(filename)
        if os.path.commonpath([real, base_dir]) != base_dir:
            raise UnsupportedSourceError(
                "VMDK descriptor %s points at extent file %s outside its own directory %s"
                % (disk_name, filename, base_dir),
                "copy the extent files next to the descriptor and use relative names in its extent lines",
            )


def probe(disk: dict, container: str | None, expected: str, descriptor_dir: str | None, force: bool) -> list[str]:
    """Fill format details of one disk from qemu-img; returns warnings. Raises DiskFileError."""
    source = qemu_img.image_source(disk, container)
    details = _qemu_details(disk, source, expected)
    _refuse_chained_image(disk["file"], details)
    if disk["format"] == "vmdk":
        _check_vmdk_layout(disk, details, container, descriptor_dir)
    warnings = _take_virtual_size(disk, details, force)
    if disk["populated_bytes"] is None:
        # What the disk's data takes once converted, for free-space checks that do not treat a sparse
        # 80 GiB disk holding 6 GiB as 80 (qcow2's metadata included: a bound on a sparse raw copy too).
        disk["populated_bytes"] = int(qemu_img.measure(source, disk["format"], "qcow2")["required"])
    if disk["format"] in ("vmdk", "qcow2"):
        _require_clean_check(disk, source)
    return warnings


def _qemu_details(disk: dict, source, expected: str) -> dict:
    try:
        return qemu_img.info(source, disk["format"])
    except qemu_img.QemuImgError as exc:
        raise DiskFileError(
            "disk file %s is not a readable %s image (truncated or damaged?): %s" % (disk["file"], expected, exc),
            "copy the export again from the original and compare sizes/checksums "
            "(probe_disks=false skips this check, for inspecting a known-bad export only)",
        ) from None


def _refuse_chained_image(name: str, details: dict) -> None:
    """A disk whose data lives partly in another file (backing file, external data file) is refused."""
    if details.get("backing-filename") or details.get("full-backing-filename"):
        raise UnsupportedSourceError(
            "disk file %s is a delta image with backing file %r" % (name, details.get("backing-filename")),
            "consolidate the snapshot chain on the source and export again",
        )
    data_file = ((details.get("format-specific") or {}).get("data") or {}).get("data-file")
    if data_file:
        raise UnsupportedSourceError(
            "disk file %s keeps its data in the external file %r" % (name, data_file),
            "convert it to a self-contained image first (qemu-img convert -O qcow2)",
        )


def _check_vmdk_layout(disk: dict, details: dict, container: str | None, descriptor_dir: str | None) -> None:
    """Only self-contained VMDKs inside an OVA, extents only next to the descriptor; records the create type."""
    name = disk["file"]
    create_type = ((details.get("format-specific") or {}).get("data") or {}).get("create-type")
    if container is not None and create_type not in references.SELF_CONTAINED_VMDK:
        raise UnsupportedSourceError(
            "disk %s inside the OVA is a %s VMDK; only %s can be read from inside an OVA"
            % (name, create_type, " or ".join(references.SELF_CONTAINED_VMDK)),
            "re-export the VM with ovftool (it writes streamOptimized disks)",
        )
    _refuse_foreign_extents(name, details, descriptor_dir)
    disk["subformat"] = create_type or disk["subformat"]


def _take_virtual_size(disk: dict, details: dict, force: bool) -> list[str]:
    """The image's virtual size wins over the OVF's capacity; a mismatch is a warning."""
    virtual_size = int(details["virtual-size"])
    if force or not disk["capacity_bytes"]:
        disk["capacity_bytes"] = virtual_size
        return []
    warnings = []
    if virtual_size != disk["capacity_bytes"]:
        warnings.append(
            "disk %s: the OVF says capacity %d bytes but the image's virtual size is %d bytes; using the image's"
            % (disk["file"], disk["capacity_bytes"], virtual_size)
        )
        disk["capacity_bytes"] = virtual_size
    return warnings


def _require_clean_check(disk: dict, source) -> None:
    name = disk["file"]
    try:
        result = qemu_img.check(source, disk["format"])
    except qemu_img.QemuImgError as exc:
        raise DiskFileError(
            "disk file %s failed `qemu-img check` (truncated or damaged): %s" % (name, exc),
            "copy the export again from the original and compare sizes/checksums",
        ) from None
    if not result["ok"]:
        raise DiskFileError(
            "disk file %s failed `qemu-img check` with %d corruption(s): the image is damaged"
            % (name, result["corruptions"]),
            "copy the export again from the original, or repair the disk on the source and export again",
        )


def classify_disk_bytes(disk: dict, head: bytes, expect_vmdk: bool, in_ova: bool) -> str:
    """Set disk["format"] from the file's magic bytes; refuses what cannot be a disk of the expected kind."""
    kind = references.image_kind(head)
    name = disk["file"]
    if disk["compression"] == "gzip":
        if kind != "gzip":
            raise DiskFileError(
                "disk file %s is declared ovf:compression=\"gzip\" but is not gzip data (%s)"
                % (name, _describe_bytes(head)),
                "remove ovf:compression from the File element (and regenerate the manifest), or re-export the VM",
            )
        disk["format"] = "vmdk" if expect_vmdk else disk["format"]
        return kind
    if kind == "gzip":
        raise DiskFileError(
            "disk file %s is gzip-compressed but the OVF does not declare ovf:compression=\"gzip\"" % name,
            "add ovf:compression=\"gzip\" to its File element, or gunzip the file and fix ovf:size",
        )
    if kind in ("vmdk", "vmdk-descriptor"):
        if kind == "vmdk-descriptor" and in_ova:
            raise UnsupportedSourceError(
                "disk %s inside the OVA is a VMDK descriptor that names separate extent files" % name,
                "re-export the VM with ovftool (it writes self-contained streamOptimized disks)",
            )
        disk["format"] = "vmdk"
    elif kind == "qcow2" and not expect_vmdk:
        disk["format"] = "qcow2"
    elif kind == "unknown" and not expect_vmdk and name.lower().endswith((".img", ".raw")):
        disk["format"] = "raw"
    else:
        raise DiskFileError(
            "disk file %s is not a VMDK: it is %s"
            % (name, "a qcow2 image" if kind == "qcow2" else _describe_bytes(head)),
            "point `path` at the real VMDK, or copy the right file under this name",
        )
    return kind


def new_disk(disk_id: str, file_name: str, path, member, offset: int, size: int) -> dict:
    """A spec disk entry with every field present; the readers fill in what the source tells."""
    return {
        "id": disk_id,
        "file": file_name,
        "path": path,
        "member": member,
        "offset": offset,
        "size": size,
        "format": "vmdk",
        "subformat": None,
        "compression": None,
        "capacity_bytes": 0,
        "populated_bytes": None,
        "controller": "scsi",
        "unit": 0,
        "sha256": None,
        "sha1": None,
        "sha384": None,
        "sha512": None,
    }


def sparse_capacity(head: bytes, path: str) -> int:
    """Virtual size from a monolithicSparse header, for when qemu-img is not asked."""
    if head.startswith(references.MAGIC_VMDK_SPARSE) and len(head) >= 20:
        return struct.unpack_from("<Q", head, 12)[0] * 512
    raise DiskFileError(
        "the virtual size of %s cannot be read without qemu-img" % path,
        "set probe_disks=true (the default)",
    )
