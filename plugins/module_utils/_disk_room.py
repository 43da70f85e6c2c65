# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the file system of a destination has room for a converted disk.

Asked before anything is written, so a full file system is reported up front, with the sizes
and the fix, instead of as ENOSPC halfway through a long conversion.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img

# Bound on qcow2 metadata per byte of disk (64 KiB clusters: 8-byte L2 entries and 2-byte
# refcounts per cluster, well under 1/4096) plus room for the header and the tables' slack.
_METADATA_FRACTION = 4096
_FIXED_SLACK = 16 << 20


def human(size: int) -> str:
    """1536 -> '1.5 KiB'; exact bytes are in the message too where it matters."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "bytes" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d bytes" % size  # not reached


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the file system that holds, or would hold, ``path``
    (a path not made yet counts on its nearest existing parent)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def allocated_bytes(path: str) -> int:
    """Bytes the file at ``path`` takes on its file system (0 when there is none): what removing it frees."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def needed_bytes(disk: dict) -> int:
    """Bytes a spec disk takes once converted: its populated (allocated) bytes when the source told or
    ``qemu-img measure`` found them, else its whole capacity. A sparse 80 GiB disk holding 6 GiB needs 6."""
    populated = disk.get("populated_bytes")
    return int(populated) if populated is not None else int(disk.get("capacity_bytes") or 0)


def converted_bytes(source: str, fmt: str, dest_format: str) -> int:
    """Bytes the converted disk takes on its file system (``qemu-img measure``'s ``required``)."""
    # qemu-img writes a raw dest sparse (zero blocks become holes), but measure counts it fully allocated:
    # the data plus qcow2's metadata is what it really takes, and a bound on it.
    return int(_qemu_img.measure(source, fmt, "qcow2" if dest_format == "raw" else dest_format)["required"])


def missing(need: int, free: int) -> int:
    """Bytes to free before ``need`` bytes fit in ``free``: 0 when they fit. The one rule of both messages."""
    return max(0, need - free)


def shortfall_message(dest: str, need: int, free: int) -> str | None:
    """None when ``need`` bytes fit in ``free``, else why ``dest`` cannot be written, with both sizes and the fix."""
    lack = missing(need, free)
    if not lack:
        return None
    return ("not enough free space for %s: the converted disk needs %s (%d bytes, qemu-img measure) but the file "
            "system holding %s has %s (%d bytes) free; free at least %s there, or choose a dest (storage pool) "
            "on another file system" % (dest, human(need), need, os.path.dirname(dest), human(free), free,
                                        human(lack)))


def filled_up_message(source_name: str, dest: str, dest_format: str, need: int, free: int) -> str:
    """The file system of ``dest`` filled up during the conversion although the check before it passed: another
    writer took the space. Says which file system, what the disk needs, what is free now (the partial file
    is already removed) and the fix."""
    directory = os.path.dirname(dest)
    lack = missing(need, free)
    if lack:
        fix = ("free at least %s on the file system holding %s (or choose a dest on another file system), then "
               "run again" % (human(lack), directory))
    else:
        fix = "enough space is free again now: keep it free (stop what else writes there) and run again"
    return ("converting %s to %s ran out of space: the file system holding %s filled up while the disk was "
            "written, after the free-space check had passed (something else wrote there meanwhile). Nothing was "
            "left at %s (the partial file was removed). The converted disk needs %s (%d bytes, qemu-img measure) "
            "and the file system has %s (%d bytes) free now. Fix: %s"
            % (source_name, dest_format, directory, dest, human(need), need, human(free), free, fix))


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full file system (or quota), reported by qemu-img or by our own writes."""
    if isinstance(exc, _qemu_img.QemuImgError):
        return exc.no_space
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def shortfall(source: str, fmt: str, dest: str, dest_format: str, virtual_size: int,
              reclaimable: str | None = None) -> str | None:
    """None when ``dest`` fits, else a message with both sizes and what to do.

    ``reclaimable`` is a file the conversion removes before it writes (a stale temporary);
    its blocks count as free. An upper bound on the output size is tried first, so the common
    case costs one statvfs; only a tight fit asks ``qemu-img measure`` for the exact need.
    """
    free = free_bytes(os.path.dirname(dest)) + (allocated_bytes(reclaimable) if reclaimable else 0)
    if not missing(virtual_size + virtual_size // _METADATA_FRACTION + _FIXED_SLACK, free):
        return None
    return shortfall_message(dest, converted_bytes(source, fmt, dest_format), free)


def filled_up(source: str, fmt: str, dest: str, dest_format: str, virtual_size: int) -> str:
    """filled_up_message() with the need measured now (the virtual size when qemu-img cannot tell) and the
    space free now."""
    try:
        need = converted_bytes(source, fmt, dest_format)
    except (_qemu_img.QemuImgError, KeyError, ValueError):
        need = virtual_size
    return filled_up_message(_qemu_img.describe_source(source), dest, dest_format, need,
                             free_bytes(os.path.dirname(dest)))
