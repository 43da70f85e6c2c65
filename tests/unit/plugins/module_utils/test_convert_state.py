"""Sidecar state: where it lives, what makes a conversion stale, and that it is written atomically."""

import json
import os

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store


@pytest.fixture
def world(tmp_path):
    source = tmp_path / "src.vmdk"
    source.write_bytes(b"s" * 4096)
    dest = tmp_path / "vm-disk1.qcow2"
    dest.write_bytes(b"d" * 8192)
    fingerprint = state_store.source_fingerprint(str(source), fmt="vmdk")
    state = {"source": fingerprint, "source_sha256": "ab" * 32, "content_digest": "content-v1:00",
             "dest_format": "qcow2", "virtual_size": 1 << 30, "dest": state_store.dest_fingerprint(str(dest)),
             "qemu_img_version": "7.2.22"}
    state_store.write_sidecar(str(dest), state)
    return source, dest, fingerprint


def test_sidecar_is_hidden_beside_dest(tmp_path):
    assert state_store.sidecar_path(str(tmp_path / "a.qcow2")) == str(tmp_path / ".a.qcow2.v2kvm.json")
    assert state_store.part_path(str(tmp_path / "a.qcow2")) == str(tmp_path / ".a.qcow2.part")


def test_fresh_state_is_up_to_date_and_round_trips(world):
    source, dest, fingerprint = world
    state = state_store.read_sidecar(str(dest))
    assert state["source"] == fingerprint and state["schema"] == state_store.SCHEMA
    assert state_store.stale_reason(state, fingerprint, str(dest), "qcow2") is None
    assert sorted(os.listdir(dest.parent)) == [".vm-disk1.qcow2.v2kvm.json", "src.vmdk", "vm-disk1.qcow2"]


def test_touched_dest_is_written_since_but_not_stale(world):
    source, dest, fingerprint = world
    state = state_store.read_sidecar(str(dest))
    assert not state_store.dest_written_since(state, str(dest))
    stat = os.stat(dest)
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert state_store.stale_reason(state, fingerprint, str(dest), "qcow2") is None
    assert state_store.dest_written_since(state, str(dest))


def test_missing_dest_changed_source_and_format_are_stale(world):
    source, dest, fingerprint = world
    state = state_store.read_sidecar(str(dest))
    assert "format" in state_store.stale_reason(state, fingerprint, str(dest), "raw")
    source.write_bytes(b"t" * 4097)
    changed = state_store.source_fingerprint(str(source), fmt="vmdk")
    assert "size" in state_store.stale_reason(state, changed, str(dest), "qcow2")
    with_digest = dict(fingerprint, sha256="cd" * 32)
    assert "sha256" in state_store.stale_reason(state, with_digest, str(dest), "qcow2")
    assert state_store.stale_reason(state, dict(fingerprint, sha256="ab" * 32), str(dest),
                                    "qcow2") is None
    os.unlink(dest)
    assert "missing" in state_store.stale_reason(state, fingerprint, str(dest), "qcow2")


def test_unreadable_or_foreign_sidecar_counts_as_none(world):
    source, dest, fingerprint = world
    path = state_store.sidecar_path(str(dest))
    with open(path, "w") as handle:
        handle.write("{not json")
    assert state_store.read_sidecar(str(dest)) is None
    with open(path, "w") as handle:
        json.dump({"schema": 99}, handle)
    assert state_store.read_sidecar(str(dest)) is None
    assert state_store.stale_reason(None, fingerprint, str(dest), "qcow2") == "no sidecar state"


def test_member_fingerprint_uses_offset_and_size(tmp_path):
    ova = tmp_path / "vm.ova"
    ova.write_bytes(b"\0" * 10240)
    fingerprint = state_store.source_fingerprint(str(ova), 1536, 2048, "EF" * 32, "vmdk")
    assert fingerprint == {"path": str(ova), "offset": 1536, "size": 2048, "mtime_ns": os.stat(ova).st_mtime_ns,
                           "format": "vmdk", "sha256": "ef" * 32}


def test_remove_and_summary(world):
    source, dest, fingerprint = world
    summary = state_store.summary(state_store.read_sidecar(str(dest)))
    assert summary["source"] == str(source) and summary["content_digest"] == "content-v1:00"
    assert state_store.remove_sidecar(str(dest)) is True
    assert state_store.remove_sidecar(str(dest)) is False
    assert state_store.summary(None) == {}


def test_touched_source_with_the_same_verified_digest_is_not_stale(world):
    source, dest, fingerprint = world
    state = state_store.read_sidecar(str(dest))
    touched = dict(fingerprint, mtime_ns=fingerprint["mtime_ns"] + 10**9, sha256="ab" * 32)
    assert state_store.stale_reason(state, touched, str(dest), "qcow2") is None
    unverified = dict(touched, sha256=None)
    assert "mtime_ns" in state_store.stale_reason(state, unverified, str(dest), "qcow2")


def test_remove_file_says_whether_there_was_one(tmp_path):
    leftover = tmp_path / ".disk.qcow2.part"
    leftover.write_bytes(b"half")
    assert state_store.remove_file(str(leftover)) is True and not leftover.exists()
    assert state_store.remove_file(str(leftover)) is False
