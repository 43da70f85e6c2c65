"""content_digest: same guest content -> same digest in any format or allocation; one byte -> different."""

import hashlib
import os
import subprocess

import blake3
import pytest
from rig.raw_images import write_sparse

from ansible_collections.v2kvm.migrate.plugins.module_utils._content_digest import (
    CHUNK_SIZE, NEWEST, PREFIX, content_digest, file_sha256)

HASHES = {1: hashlib.sha256, 2: blake3.blake3}  # blake3 is in requirements.txt: both versions are checked

MIB = 1 << 20
SIZE = 24 * MIB + 12345  # not a whole number of chunks
PATTERN = {0: b"MBR" * 100, 5 * MIB - 3: os.urandom(3 * MIB), 20 * MIB + 1: b"x", SIZE - 7: b"the end"}


def make_raw(path, pattern=None, size=SIZE):
    return write_sparse(path, size, PATTERN if pattern is None else pattern)


def convert(src, dst, fmt, *options):
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, *options, src, str(dst)], check=True)
    return str(dst)


def reference_digest(raw_path, version=NEWEST):
    """The documented definition, computed naively over every byte."""
    # A guest sees whole sectors: qemu rounds a raw file's size up to 512 bytes, zero-filled.
    size = (os.path.getsize(raw_path) + 511) // 512 * 512
    hasher = HASHES[version]
    total = hasher(b"v2kvm-content-v%d\n" % version + size.to_bytes(8, "big") + CHUNK_SIZE.to_bytes(8, "big"))
    with open(raw_path, "rb") as handle:
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                break
            if len(chunk) < CHUNK_SIZE:
                chunk += bytes(min(CHUNK_SIZE, size - handle.tell() + len(chunk)) - len(chunk))
            total.update(b"\x00" if chunk.count(0) == len(chunk) else b"\x01" + hasher(chunk).digest())
    return "content-v%d:" % version + total.hexdigest()


@pytest.fixture
def raw(tmp_path):
    return make_raw(tmp_path / "sparse.raw")


def test_matches_the_documented_definition(raw):
    assert NEWEST == 2 and PREFIX == "content-v2:"  # blake3 is installed here
    assert content_digest(raw, "raw") == reference_digest(raw)


@pytest.mark.parametrize("version", [1, 2])
def test_each_version_matches_its_definition_in_any_format(tmp_path, raw, version):
    qcow2 = convert(raw, tmp_path / "v.qcow2", "qcow2")
    expected = reference_digest(raw, version)
    assert expected.startswith("content-v%d:" % version)
    assert content_digest(raw, "raw", version=version) == content_digest(qcow2, "qcow2", version=version) == expected


@pytest.mark.parametrize("fmt, options", [
    ("qcow2", ()),
    ("qcow2", ("-c",)),  # compressed clusters: no host offsets, so the scratch-raw path
    ("vmdk", ("-o", "subformat=streamOptimized")),
    ("vmdk", ("-o", "subformat=monolithicSparse")),
])
def test_same_content_same_digest_in_every_format(tmp_path, raw, fmt, options):
    image = convert(raw, tmp_path / ("image." + fmt), fmt, *options)
    assert content_digest(image, fmt) == content_digest(raw, "raw")
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".v2kvm-digest-")]


def test_allocated_zeros_equal_holes(tmp_path, raw):
    full = tmp_path / "full.raw"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", "-S", "0", raw, str(full)], check=True)
    assert os.stat(full).st_blocks * 512 >= SIZE - 4096, "test needs a fully allocated copy"
    preallocated = convert(raw, tmp_path / "pre.qcow2", "qcow2", "-o", "preallocation=full")
    assert content_digest(str(full), "raw") == content_digest(raw, "raw") == content_digest(preallocated, "qcow2")


@pytest.mark.parametrize("offset", [0, 5 * MIB + 77, SIZE - 1])
def test_one_changed_byte_changes_the_digest(tmp_path, raw, offset):
    changed = make_raw(tmp_path / "changed.raw")
    with open(changed, "r+b") as handle:
        handle.seek(offset)
        old = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([old[0] ^ 0x40]))
    assert content_digest(changed, "raw") != content_digest(raw, "raw")
    qcow2 = convert(changed, tmp_path / "changed.qcow2", "qcow2")
    assert content_digest(qcow2, "qcow2") != content_digest(convert(raw, tmp_path / "same.qcow2", "qcow2"), "qcow2")


def test_virtual_size_is_part_of_the_content(tmp_path):
    small = make_raw(tmp_path / "a.raw", pattern={0: b"a"}, size=4 * MIB)
    bigger = make_raw(tmp_path / "b.raw", pattern={0: b"a"}, size=5 * MIB)
    assert content_digest(small, "raw") != content_digest(bigger, "raw")


def test_file_sha256_of_a_window(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(9 * MIB + 3)
    path.write_bytes(data)
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path), 1000, 5 * MIB) == hashlib.sha256(data[1000:1000 + 5 * MIB]).hexdigest()
    with pytest.raises(OSError, match="ended"):
        file_sha256(str(path), 1000, len(data))
