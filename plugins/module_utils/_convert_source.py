# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What disk_convert reads: the ``disk`` (a VM spec entry, maybe inside an OVA) or ``src`` option, resolved once.

``location()`` is the one derivation of the source file and offset from the options: the conversion
fingerprints it, and ``state=absent`` compares it with what a sidecar recorded.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils import _source_references as references
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError


class ConvertError(Exception):
    """disk_convert cannot go on; the message says why and what to do (the module fails with it)."""


class Source(NamedTuple):
    image: str  # what qemu-img opens: a path or a json: window into an OVA
    fmt: str
    fingerprint: dict  # _convert_state.source_fingerprint()
    known_sha256: str | None  # a digest a manifest already proved


def location(params: dict) -> tuple[str | None, int]:
    """(source file, byte offset in it) named by the disk or src option."""
    disk = params["disk"]
    if disk is None:
        return params["src"], 0
    return disk.get("path") or params["container"], int(disk.get("offset") or 0)


def made_from(params: dict, sidecar: dict | None) -> bool:
    """Whether the sidecar records the source the options name (same real path and offset)."""
    path, offset = location(params)
    recorded = (sidecar or {}).get("source") or {}
    return bool(path) and recorded.get("path") == os.path.realpath(path) and recorded.get("offset") == offset


def resolve(params: dict) -> Source:
    """The source to convert, checked to exist and to reference nothing outside its export; raises ConvertError."""
    disk = params["disk"]
    path, offset = location(params)
    if disk is not None:
        try:
            image = _qemu_img.image_source(disk, params["container"])
        except _qemu_img.QemuImgError as exc:
            raise ConvertError(str(exc)) from exc
        fmt, size, known_sha256 = disk.get("format") or "vmdk", disk.get("size"), disk.get("sha256")
    else:
        image, fmt, size, known_sha256 = path, params["src_format"], None, None
    if not os.path.isfile(path):
        raise ConvertError("source %s does not exist or is not a file; check the disk path "
                           "(or container) / src option" % path)
    try:
        # Before qemu-img opens it: a header may name files outside the export (extents, backing files).
        references.check_image_file(path, offset, inside_archive=bool(disk and (disk.get("member") or offset)),
                                    name=(disk or {}).get("file"))
    except SourceError as exc:
        raise ConvertError(str(exc)) from exc
    return Source(image, fmt, state_store.source_fingerprint(path, offset, size, known_sha256, fmt), known_sha256)
