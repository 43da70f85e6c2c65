# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sidecar that records how a converted disk was made.

``.<dest-file-name>.v2kvm.json`` sits beside the converted disk (hidden, so a libvirt
directory pool does not list it). A later run trusts it, and skips the conversion, only
while the source fingerprint is unchanged and the disk's size and mtime still match what
the sidecar recorded; anything else means the disk must be converted again.
"""

from __future__ import annotations

import json
import os
import tempfile

SCHEMA = 1


def sidecar_path(dest: str) -> str:
    directory, name = os.path.split(os.path.abspath(dest))
    return os.path.join(directory, ".%s.v2kvm.json" % name)


def part_path(dest: str) -> str:
    """Temporary name the conversion writes to before the final rename."""
    directory, name = os.path.split(os.path.abspath(dest))
    return os.path.join(directory, ".%s.part" % name)


def source_fingerprint(path: str, offset: int = 0, size: int | None = None,
                       sha256: str | None = None, fmt: str | None = None) -> dict:
    """Cheap identity of the source bytes: stat() only, plus a digest a manifest already proved."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return {
        "path": real,
        "offset": int(offset or 0),
        "size": int(size) if size is not None else stat.st_size - int(offset or 0),
        "mtime_ns": stat.st_mtime_ns,
        "format": fmt,
        "sha256": sha256.lower() if sha256 else None,
    }


def dest_fingerprint(dest: str) -> dict:
    stat = os.stat(dest)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_sidecar(dest: str) -> dict | None:
    """The recorded state, or None when absent or unreadable (treated as 'never converted')."""
    try:
        with open(sidecar_path(dest), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("schema") != SCHEMA:
        return None
    return state


def write_sidecar(dest: str, state: dict) -> None:
    """Write atomically (temp file, fsync, rename, fsync directory)."""
    path = sidecar_path(dest)
    directory = os.path.dirname(path)
    handle, temp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(dict(state, schema=SCHEMA), out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    fsync_directory(directory)


def remove_file(path: str) -> bool:
    """Remove ``path``; False when it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_sidecar(dest: str) -> bool:
    return remove_file(sidecar_path(dest))


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stale_reason(state: dict | None, source: dict, dest: str, dest_format: str) -> str | None:
    """Why the existing conversion cannot be trusted, or None when it is up to date.

    Compares only stat() results and recorded digests, so it never reads the disks.
    """
    if state is None:
        return "no sidecar state"
    if not os.path.exists(dest):
        return "destination is missing"
    if state.get("dest_format") != dest_format:
        return "destination format was %s" % state.get("dest_format")
    recorded = state.get("source") or {}
    known = source.get("sha256")
    recorded_digest = recorded.get("sha256") or state.get("source_sha256")
    if known and recorded_digest and known != recorded_digest:
        return "source sha256 changed"
    # A digest the manifest verified this run proves the bytes are the same: a copied or touched
    # export (new mtime, same content) is not a reason to convert again.
    proven_same = bool(known) and known == recorded_digest
    for key in ("path", "offset", "size", "mtime_ns", "format"):
        if key == "mtime_ns" and proven_same:
            continue
        if recorded.get(key) != source.get(key):
            return "source %s changed (%r -> %r)" % (key, recorded.get(key), source.get(key))
    return None


def dest_written_since(state: dict | None, dest: str) -> bool:
    """The destination changed after its conversion finished: a guest booted from it (validate does
    that) or someone edited it. Such writes are the guest's data, never a reason to convert again."""
    return bool(state) and os.path.exists(dest) and state.get("dest") != dest_fingerprint(dest)


def summary(state: dict | None) -> dict:
    """The part of the state worth showing in a diff."""
    if not state:
        return {}
    source = state.get("source") or {}
    return {
        "source": source.get("path"),
        "source_offset": source.get("offset"),
        "source_size": source.get("size"),
        "source_sha256": state.get("source_sha256"),
        "dest_format": state.get("dest_format"),
        "virtual_size": state.get("virtual_size"),
        "content_digest": state.get("content_digest"),
        "qemu_img_version": state.get("qemu_img_version"),
    }
