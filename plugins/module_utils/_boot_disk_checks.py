# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disk checks a boot check runs while the domain is shut off: ``qemu-img check`` of each disk and
``qemu-img compare`` of each source against its converted target.

Each check is a dict {"name", "target", "ok", "detail"} (compares also carry "source"); ``ok`` is None
when the check was skipped.
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img as qemu_img

COMPARE = "qemu-img compare"
CHECK = "qemu-img check"


def image_checks(disks, running):
    """A ``qemu-img check`` per disk ({"path", "format"} dicts), skipped while the domain runs."""
    checks = []
    for disk in disks:
        entry = {"name": CHECK, "target": disk["path"]}
        if running:
            entry.update(ok=None, detail="skipped: the domain is running and qemu holds the image lock")
        else:
            entry.update(_check_one(disk["path"], disk["format"]))
        checks.append(entry)
    return checks


def _check_one(path, fmt):
    try:
        res = qemu_img.check(path, fmt)
    except qemu_img.QemuImgError as exc:
        return {"ok": False, "detail": str(exc)}
    if not res.get("supported", True):
        detail = "%s has no metadata to check" % fmt
    elif res["ok"]:
        detail = "clean (%d leaked clusters)" % res["leaks"] if res["leaks"] else "clean"
    else:
        detail = "%d corruptions, %d leaks" % (res["corruptions"], res["leaks"])
    return {"ok": res["ok"], "detail": detail}


def skipped_compares(items):
    # The guest has written to its disks since its first boot, which was validated then: a re-run
    # must neither fail on that nor stop a good guest to compare stale content.
    return [{"name": COMPARE, "target": item["target"], "ok": None,
             "detail": "skipped: the domain is running, so its disks have moved on from the source"}
            for item in items]


def content_checks(items, bytes_of):
    """A ``qemu-img compare`` per content_compare item; ``bytes_of(stage, size)`` gives the progress
    callback of each (ProgressJob.bytes_of)."""
    return [_compare_one(item, bytes_of) for item in items]


def _compare_one(item, bytes_of):
    source = item["source"]
    label = source.get("file") or source.get("path") if isinstance(source, dict) else str(source)
    entry = {"name": COMPARE, "source": label, "target": item["target"]}
    try:
        if isinstance(source, dict):
            src = qemu_img.image_source(source, item.get("container"))
            src_fmt = item.get("source_format") or source.get("format")
        else:
            src = str(source)
            src_fmt = item.get("source_format") or qemu_img.info(src)["format"]
        target_info = qemu_img.info(item["target"], item.get("target_format"))
        dst_fmt = item.get("target_format") or target_info["format"]
        stage = "compare %s" % os.path.basename(item["target"])
        same, message = qemu_img.compare(src, src_fmt, item["target"], dst_fmt,
                                         on_progress=bytes_of(stage, int(target_info["virtual-size"])))
    except qemu_img.QemuImgError as exc:
        return dict(entry, ok=False, detail=str(exc))
    return dict(entry, ok=same, detail=message or ("identical" if same else "content differs"))


def failure_reason(checks):
    """The sentence naming every failed check, or None when none failed."""
    failed = [c for c in checks if c["ok"] is False]
    if not failed:
        return None
    return "; ".join("%s of %s failed: %s" % (c["name"], c["target"], c["detail"]) for c in failed)
