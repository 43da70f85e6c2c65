# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Digests of disk images: of the file bytes, and of the content a guest sees.

content_digest() is defined on the guest-visible bytes only, so the same content gives
the same digest whether it is stored as raw, qcow2 or vmdk, sparse or fully allocated:

    the virtual disk is cut into 1 MiB chunks (the last one may be shorter);
    each chunk contributes one record: b"\\x00" if all its bytes are zero,
    else b"\\x01" + H(chunk bytes);
    digest = H(b"v2kvm-content-vN\\n" + virtual_size (8 bytes, big-endian)
               + chunk_size (8 bytes, big-endian) + all records in order),
    written as "content-vN:" + hex.

Version 2 (H = BLAKE3, 32-byte output) is used when the Python package blake3 is installed
where the digest is computed; it hashes about three times as fast as sha256 with SHA-NI on
one core. Otherwise version 1 (H = sha256). The prefix says which, and only digests of the
same version compare.

Only the data extents reported by `qemu-img map` are read, so holes cost nothing. Raw and
qcow2 files are read directly at the host offsets qemu-img reports; any other layout
(compressed clusters, backing files, vmdk, json: sources) is first converted by qemu-img to
a sparse raw scratch file. hashlib releases the GIL, so chunks are hashed on a small
thread pool.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img

try:
    from blake3 import blake3 as _blake3
except ImportError:  # version 1 (sha256) then; nothing else needs the package
    _blake3 = None

CHUNK_SIZE = 1 << 20
_HASHES = {1: hashlib.sha256, 2: _blake3}
NEWEST = 2 if _blake3 is not None else 1
PREFIX = "content-v%d:" % NEWEST
_ZERO_RECORD = b"\x00"
_DATA_MARK = b"\x01"
_BATCH = 16  # chunks per pool task: large enough to amortise scheduling, small enough to balance
_ZEROS = bytes(CHUNK_SIZE)
_READ_BLOCK = 4 << 20


def file_sha256(path: str, offset: int = 0, size: int | None = None) -> str:
    """sha256 hex of ``size`` bytes of ``path`` from ``offset`` (to the end when size is None)."""
    digest = hashlib.sha256()
    buf = bytearray(_READ_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        remaining = size
        while remaining is None or remaining > 0:
            want = _READ_BLOCK if remaining is None else min(_READ_BLOCK, remaining)
            got = handle.readinto(view[:want])
            if not got:
                break
            digest.update(view[:got])
            if remaining is not None:
                remaining -= got
    if remaining:
        raise OSError("%s ended %d bytes before offset %d + size %d" % (path, remaining, offset, size))
    return digest.hexdigest()


def _direct_segments(source, fmt, image_info, extents):
    """(guest_start, length, file_offset) of every data extent, or None if not directly readable."""
    if source.startswith("json:") or fmt not in ("raw", "qcow2"):
        return None
    specific = (image_info.get("format-specific") or {}).get("data") or {}
    if image_info.get("backing-filename") or specific.get("data-file") or image_info.get("encrypted"):
        return None
    segments = []
    for extent in extents:
        if not extent.get("data") or extent.get("zero"):
            continue
        if "offset" not in extent or extent.get("depth", 0) != 0:
            return None
        segments.append((int(extent["start"]), int(extent["length"]), int(extent["offset"])))
    return segments


def _chunk_jobs(segments, virtual_size):
    """Group data segments by chunk: [(chunk_index, [(pos_in_chunk, length, file_offset)])]."""
    jobs = {}
    for start, length, file_offset in segments:
        end = min(start + length, virtual_size)
        pos = start
        while pos < end:
            index = pos // CHUNK_SIZE
            chunk_end = min((index + 1) * CHUNK_SIZE, end)
            jobs.setdefault(index, []).append((pos - index * CHUNK_SIZE, chunk_end - pos,
                                               file_offset + (pos - start)))
            pos = chunk_end
    return sorted(jobs.items())


def prefix(version: int) -> str:
    return "content-v%d:" % version


def _hash_batch(fd, virtual_size, batch, hasher):
    records = []
    for index, pieces in batch:
        length = min(CHUNK_SIZE, virtual_size - index * CHUNK_SIZE)
        buf = bytearray(length)
        view = memoryview(buf)
        for pos, size, file_offset in pieces:
            got = os.preadv(fd, [view[pos:pos + size]], file_offset)
            if got != size:
                raise OSError("short read at offset %d (got %d of %d bytes)" % (file_offset, got, size))
        if buf == _ZEROS[:length]:
            records.append((index, _ZERO_RECORD))
        else:
            records.append((index, _DATA_MARK + hasher(buf).digest()))
    return records


def _digest_direct(path, virtual_size, segments, workers, version):
    hasher = _HASHES[version]
    jobs = _chunk_jobs(segments, virtual_size)
    batches = [jobs[i:i + _BATCH] for i in range(0, len(jobs), _BATCH)]
    total = hasher()
    header = b"v2kvm-content-v%d\n" % version
    total.update(header + virtual_size.to_bytes(8, "big") + CHUNK_SIZE.to_bytes(8, "big"))
    chunk_count = (virtual_size + CHUNK_SIZE - 1) // CHUNK_SIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            next_index = 0
            for records in pool.map(lambda batch: _hash_batch(fd, virtual_size, batch, hasher), batches):
                for index, record in records:
                    if index > next_index:
                        total.update(_ZERO_RECORD * (index - next_index))
                    total.update(record)
                    next_index = index + 1
    finally:
        os.close(fd)
    if chunk_count > next_index:
        total.update(_ZERO_RECORD * (chunk_count - next_index))
    return prefix(version) + total.hexdigest()


def content_digest(source: str, fmt: str, *, scratch_dir: str | None = None,
                   workers: int | None = None, version: int | None = None) -> str:
    """Digest of the guest-visible content of an image (see the module docstring); the newest
    version this host can compute unless ``version`` asks for another."""
    version = version or NEWEST
    if _HASHES.get(version) is None:
        raise ValueError("content digest version %s needs the Python package blake3 on this host" % version)
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    image_info = _qemu_img.info(source, fmt)
    virtual_size = int(image_info["virtual-size"])
    extents = _qemu_img.map_extents(source, fmt)
    segments = _direct_segments(source, fmt, image_info, extents)
    if segments is not None:
        return _digest_direct(source, virtual_size, segments, workers, version)
    if scratch_dir is None and not source.startswith("json:"):
        scratch_dir = os.path.dirname(os.path.abspath(source))
    handle, scratch = tempfile.mkstemp(prefix=".v2kvm-digest-", suffix=".raw", dir=scratch_dir)
    os.close(handle)
    try:
        _qemu_img.convert(source, fmt, scratch, "raw")
        return content_digest(scratch, "raw", workers=workers, version=version)
    finally:
        os.unlink(scratch)
