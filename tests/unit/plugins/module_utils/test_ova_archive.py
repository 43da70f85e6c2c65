"""Reading OVA members in place and checking .mf manifests, on tars built here with tarfile."""

import hashlib
import io
import os
import tarfile

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _ova_archive as archive
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    ManifestError,
    NotAnArchiveError,
    SourceError,
)


def _tar(path, members, tar_format=tarfile.USTAR_FORMAT):
    with tarfile.open(path, "w", format=tar_format) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_member_offsets_point_at_the_member_bytes(tmp_path, tar_format):
    long_name = "d" * 150 + ".vmdk"  # needs a PAX or GNU long-name header before the data
    members = [("vm.ovf", b"<Envelope/>"), ("disk1.vmdk", os.urandom(70_001)), ("vm.mf", b"x")]
    if tar_format != tarfile.USTAR_FORMAT:
        members.append((long_name, os.urandom(513)))
    path = _tar(tmp_path / "vm.ova", members, tar_format)

    found = archive.read_ova_members(path)

    assert [member.name for member in found] == [name for name, _data in members]
    with open(path, "rb") as handle:
        for member, (_name, data) in zip(found, members):
            handle.seek(member.offset)
            assert member.size == len(data)
            assert handle.read(member.size) == data


def test_dot_slash_names_are_normalized(tmp_path):
    path = _tar(tmp_path / "vm.ova", [("./vm.ovf", b"<Envelope/>")])
    assert archive.read_ova_members(path)[0].name == "vm.ovf"


def test_empty_tar_is_refused(tmp_path):
    path = _tar(tmp_path / "vm.ova", [])
    with pytest.raises(NotAnArchiveError, match="empty tar archive"):
        archive.read_ova_members(path)


def test_missing_ova_names_the_path(tmp_path):
    with pytest.raises(NotAnArchiveError, match="cannot read OVA .*nope.ova"):
        archive.read_ova_members(str(tmp_path / "nope.ova"))


def test_descriptor_not_first_is_read_with_a_warning(tmp_path):
    path = _tar(tmp_path / "vm.ova", [("disk1.vmdk", b"KDMV"), ("vm.ovf", b"<Envelope/>")])
    members = archive.read_ova_members(path)
    descriptor, warnings = archive.find_descriptor(path, members)
    assert descriptor.name == "vm.ovf"
    assert len(warnings) == 1 and "not the first member" in warnings[0]


def test_descriptor_first_has_no_warning(tmp_path):
    path = _tar(tmp_path / "vm.ova", [("vm.ovf", b"<Envelope/>"), ("disk1.vmdk", b"KDMV")])
    assert archive.find_descriptor(path, archive.read_ova_members(path))[1] == []


def test_two_manifests_are_refused(tmp_path):
    path = _tar(tmp_path / "vm.ova", [("vm.ovf", b"<x/>"), ("a.mf", b""), ("b.mf", b"")])
    with pytest.raises(ManifestError, match="several .mf manifests"):
        archive.find_manifest(path, archive.read_ova_members(path))


def test_file_digest_of_a_window_matches_hashlib(tmp_path):
    data = os.urandom(3 * archive.DIGEST_CHUNK + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert archive.file_digest(str(path), "sha256") == hashlib.sha256(data).hexdigest()
    window = data[1000:1000 + archive.DIGEST_CHUNK + 5]
    assert archive.file_digest(str(path), "sha1", 1000, len(window)) == hashlib.sha1(window).hexdigest()  # noqa: S324


@pytest.mark.parametrize("line, algorithm", [
    ("SHA256(disk1.vmdk)= " + "ab" * 32, "sha256"),
    ("SHA1(disk1.vmdk)= " + "AB" * 20, "sha1"),
    ("SHA256 (disk1.vmdk) = " + "ab" * 32, "sha256"),
    ("SHA384(disk1.vmdk)= " + "cd" * 48, "sha384"),
    ("SHA512(disk1.vmdk)= " + "ef" * 64, "sha512"),
])
def test_manifest_lines_ovftool_and_openssl_style(line, algorithm):
    assert archive.parse_manifest(line + "\n\n", "vm.mf") == (algorithm, {"disk1.vmdk": line.split()[-1].lower()})


@pytest.mark.parametrize("text, words", [
    ("MD5(a)= " + "0" * 32, "only SHA1, SHA256, SHA384 and SHA512"),
    ("SHA512(a)= " + "0" * 96, "128"),
    ("MD5 of a is 1234", "not of the form"),
    ("SHA256(a)= abc", "64"),
    ("SHA256(a)= %s\nSHA1(b)= %s" % ("0" * 64, "0" * 40), "mixes digest algorithms"),
    ("SHA256(a)= %s\nSHA256(a)= %s" % ("0" * 64, "1" * 64), "names 'a' twice"),
    ("\n\n", "is empty"),
])
def test_bad_manifests_are_refused(text, words):
    with pytest.raises(ManifestError, match=words.replace("(", r"\(")) as caught:
        archive.parse_manifest(text, "vm.mf")
    assert caught.value.fix


def test_verify_manifest_reads_members_in_place(tmp_path):
    disk = os.urandom(10_000)
    path = _tar(tmp_path / "vm.ova", [("vm.ovf", b"<Envelope/>"), ("disk1.vmdk", disk)])
    files = {m.name: (path, m.offset, m.size) for m in archive.read_ova_members(path)}
    entries = {"vm.ovf": hashlib.sha256(b"<Envelope/>").hexdigest(), "disk1.vmdk": hashlib.sha256(disk).hexdigest()}

    assert archive.verify_manifest("sha256", entries, files, "vm.mf") == entries

    entries["disk1.vmdk"] = hashlib.sha256(disk[:-1] + b"!").hexdigest()
    with pytest.raises(ManifestError, match="digest of disk1.vmdk does not match"):
        archive.verify_manifest("sha256", entries, files, "vm.mf")


def test_read_member_refuses_oversized_and_short_reads(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(b"12345")
    with pytest.raises(SourceError, match="above the 4 byte limit"):
        archive.read_member(str(path), 0, 5, 4, "descriptor")
    with pytest.raises(SourceError, match="truncated"):
        archive.read_member(str(path), 2, 5, 100, "descriptor")
    assert archive.read_member(str(path), 1, 3, 100, "descriptor") == b"234"
