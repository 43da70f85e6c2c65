# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files a disk image names, checked before any tool opens the image.

qemu-img follows what an image's header says: a VMDK descriptor's extent lines and its
``parentFileNameHint``, a qcow2 backing file or external data file. ``qemu-img info`` would open
those files to describe the image, so the check that they stay inside the export cannot be
left to its answer: it reads the few header bytes itself, here, first.
"""

from __future__ import annotations

import os
import re
import struct

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DiskFileError,
    UnsupportedSourceError,
)

MAGIC_GZIP = b"\x1f\x8b"
MAGIC_VMDK_SPARSE = b"KDMV"
MAGIC_VMDK_COWD = b"COWD"
MAGIC_VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
MAGIC_QCOW2 = b"QFI\xfb"
# VMDK kinds whose embedded descriptor names the file itself: their extent line is no reference.
SELF_CONTAINED_VMDK = ("streamOptimized", "monolithicSparse")

_MAX_DESCRIPTOR = 64 * 1024
_EXTENT_LINE = re.compile(r'^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+[A-Z]+(?:\s+"([^"]*)")?', re.MULTILINE)
_PARENT_HINT = re.compile(r'^\s*parentFileNameHint\s*=\s*"([^"]*)"', re.MULTILINE)
_CREATE_TYPE = re.compile(r'^\s*createType\s*=\s*"([^"]*)"', re.MULTILINE)
_QCOW2_DATA_FILE_EXTENSION = 0x44415441
_QCOW2_EXTENSION_SCAN = 64 * 1024


def read_head(path: str, offset: int = 0, length: int = 512) -> bytes:
    """``length`` bytes of a file from ``offset`` (a member inside an OVA starts there)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def image_kind(head: bytes) -> str:
    """gzip | vmdk | vmdk-descriptor | qcow2 | unknown, from an image's first bytes."""
    if head.startswith(MAGIC_GZIP):
        return "gzip"
    if head.startswith((MAGIC_VMDK_SPARSE, MAGIC_VMDK_COWD)):
        return "vmdk"
    if head.startswith(MAGIC_VMDK_DESCRIPTOR):
        return "vmdk-descriptor"
    if head.startswith(MAGIC_QCOW2):
        return "qcow2"
    return "unknown"


def vmdk_descriptor_text(path: str, offset: int, kind: str) -> str:
    """The descriptor of a VMDK: the whole file for a descriptor file, the embedded one of a sparse
    VMDK, or "" when there is none."""
    if kind == "vmdk-descriptor":
        data = read_head(path, offset, _MAX_DESCRIPTOR)
    else:
        header = read_head(path, offset, 512)
        if not header.startswith(MAGIC_VMDK_SPARSE) or len(header) < 44:
            return ""
        sector, sectors = struct.unpack_from("<QQ", header, 28)
        if not sector or not 0 < sectors <= _MAX_DESCRIPTOR // 512:
            return ""
        data = read_head(path, offset + sector * 512, sectors * 512)
    return data.split(b"\x00", 1)[0].decode("utf-8", "replace")


def _vmdk_references(path: str, offset: int, kind: str, name: str, base_dir: str | None) -> None:
    text = vmdk_descriptor_text(path, offset, kind)
    parent = _PARENT_HINT.search(text)
    if parent and parent.group(1).strip():
        raise UnsupportedSourceError(
            "disk file %s is a delta (snapshot) VMDK whose parent is %r" % (name, parent.group(1)),
            "consolidate the snapshot chain on the source and export again",
        )
    create_type = _CREATE_TYPE.search(text)
    if kind == "vmdk" and create_type and create_type.group(1) in SELF_CONTAINED_VMDK:
        return
    files = [match.group(1) for match in _EXTENT_LINE.finditer(text) if match.group(1)]
    if not files:
        return
    if base_dir is None:
        raise UnsupportedSourceError(
            "disk %s inside the OVA is a VMDK descriptor that names separate extent files (%s)"
            % (name, files[0]),
            "re-export the VM with ovftool (it writes self-contained streamOptimized disks)",
        )
    for extent in files:
        real = os.path.realpath(os.path.join(base_dir, extent))
        if os.path.commonpath([real, base_dir]) != base_dir:
            raise UnsupportedSourceError(
                "VMDK descriptor %s points at extent file %s outside its own directory %s" % (name, extent, base_dir),
                "copy the extent files next to the descriptor and use relative names in its extent lines",
            )


def _qcow2_references(path: str, offset: int, name: str) -> None:
    header = read_head(path, offset, _QCOW2_EXTENSION_SCAN)
    if len(header) < 72:
        raise DiskFileError("disk file %s is a truncated qcow2 image (%d header bytes)" % (name, len(header)),
                            "copy the image again from the original")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", header, 4)
    if backing_offset:
        backing = header[backing_offset:backing_offset + min(backing_size, 1023)].decode("utf-8", "replace")
        raise UnsupportedSourceError(
            "disk file %s is a delta image with backing file %r" % (name, backing or "(beyond the header)"),
            "consolidate the snapshot chain on the source and export again",
        )
    position = struct.unpack_from(">I", header, 100)[0] if version >= 3 and len(header) >= 104 else 72
    while position + 8 <= len(header):
        kind, length = struct.unpack_from(">II", header, position)
        if kind == 0:
            return
        if kind == _QCOW2_DATA_FILE_EXTENSION:
            data_file = header[position + 8:position + 8 + min(length, 1023)].decode("utf-8", "replace")
            raise UnsupportedSourceError(
                "disk file %s keeps its data in the external file %r" % (name, data_file),
                "convert it to a self-contained image first (qemu-img convert -O qcow2)",
            )
        position += 8 + (length + 7) // 8 * 8


def refuse_outside_references(path: str, offset: int = 0, *, name: str | None = None,
                              base_dir: str | None = None, head: bytes | None = None) -> str:
    """Refuse an image that names a file a tool would open beside it; returns the image's kind.

    ``base_dir`` is the real directory an export's files must stay in; None for a disk read from
    inside an archive, which may name no file at all.
    """
    name = name or os.path.basename(path)
    kind = image_kind(head if head is not None else read_head(path, offset, 512))
    if kind in ("vmdk", "vmdk-descriptor"):
        _vmdk_references(path, offset, kind, name, base_dir)
    elif kind == "qcow2":
        _qcow2_references(path, offset, name)
    return kind


def check_image_file(path: str, offset: int = 0, inside_archive: bool = False, name: str | None = None) -> str:
    """``refuse_outside_references`` for an image file on its own: its references must stay in its directory."""
    base_dir = None if inside_archive else os.path.dirname(os.path.realpath(path))
    return refuse_outside_references(path, offset, name=name, base_dir=base_dir)
