# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read an OVA (a plain tar) in place, and check .mf manifests.

Nothing is ever extracted: members are located by their data offset so that qemu-img can
read a disk through a raw driver with ``offset``/``size``. Every member must be a plain,
uniquely named regular file with a relative path; anything else is refused before any
other phase can act on the archive.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from dataclasses import dataclass

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DiskFileError,
    ManifestError,
    NotAnArchiveError,
    UnsafeArchiveError,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_references import read_head
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import listing

DIGEST_CHUNK = 4 * 1024 * 1024
# Every digest OVF 2.0 (DSP0243) allows in a manifest.
SUPPORTED_DIGESTS = {"SHA1": ("sha1", 40), "SHA256": ("sha256", 64), "SHA384": ("sha384", 96),
                     "SHA512": ("sha512", 128)}

_COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_MANIFEST_LINE = re.compile(r"^(?P<algo>[A-Za-z0-9-]+)\s*\((?P<name>.+)\)\s*=\s*(?P<digest>[0-9A-Fa-f]+)$")


@dataclass(frozen=True)
class OvaMember:
    """A regular file inside the OVA: where its bytes start and how many there are."""

    name: str
    offset: int
    size: int


def _compression_of(head: bytes) -> str | None:
    for magic, name in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            return name
    return None


def _normalized_member_name(ova: str, name: str) -> str:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(
            "OVA %s has a member with an absolute path: %r" % (ova, name),
            "rebuild the OVA with relative member names (ovftool writes them that way); "
            "absolute paths are refused because they point outside any work directory",
        )
    if "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(
            "OVA %s has a member name with a backslash or NUL byte: %r" % (ova, name),
            "rebuild the OVA with plain relative member names",
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            "OVA %s has a member whose path climbs out of the archive with '..' (path traversal): %r" % (ova, name),
            "rebuild the OVA from its .ovf and disk files with relative names that contain no '..'",
        )
    if not parts:
        raise UnsafeArchiveError(
            "OVA %s has a member with an empty name" % ova,
            "rebuild the OVA from its .ovf and disk files",
        )
    return "/".join(parts)


def _refuse_non_regular(ova: str, member: tarfile.TarInfo) -> None:
    kinds = (
        (member.issym, "a symbolic link (to %r)" % member.linkname),
        (member.islnk, "a hard link (to %r)" % member.linkname),
        (member.ischr, "a character device"),
        (member.isblk, "a block device"),
        (member.isfifo, "a FIFO (named pipe)"),
        (member.isdir, "a directory"),
        (member.issparse, "a GNU sparse file (its bytes are not stored contiguously)"),
    )
    matching = [kind for test, kind in kinds if test()]
    if not matching and member.isreg():
        return
    kind = matching[0] if matching else "of tar type %r" % member.type
    raise UnsafeArchiveError(
        "OVA %s member %r is %s; an OVA may only hold regular files" % (ova, member.name, kind),
        "rebuild the OVA with only the .ovf, .mf, .cert and disk files as plain files "
        "(for example `ovftool vm.ovf vm.ova`, or `tar -cf vm.ova vm.ovf vm.mf *.vmdk`)",
    )


def read_ova_members(ova: str) -> list[OvaMember]:
    """Every member of the OVA in archive order, after refusing anything unsafe.

    Refuses: a file that is not an uncompressed tar, members that are not regular files,
    absolute or '..' paths, duplicate names, and members whose bytes run past the end of
    the file (a truncated download).
    """
    try:
        head = read_head(ova, 0, 512)
        archive_size = os.path.getsize(ova)
    except OSError as exc:
        raise NotAnArchiveError(
            "cannot read OVA %s: %s" % (ova, exc.strerror or exc),
            "check that the path exists and is readable by the user running the task",
        ) from exc
    compression = _compression_of(head)
    if compression:
        raise NotAnArchiveError(
            "OVA %s is %s-compressed; an OVA must be a plain (uncompressed) tar so disks can be read in place"
            % (ova, compression),
            "decompress it first (for example `%s -dk FILE`) and point `path` at the plain tar"
            % {"gzip": "gzip", "bzip2": "bzip2", "xz": "xz", "zstd": "zstd"}[compression],
        )
    members: list[OvaMember] = []
    seen: set[str] = set()
    try:
        with tarfile.open(ova, mode="r:") as archive:
            for info in archive:
                _refuse_non_regular(ova, info)
                name = _normalized_member_name(ova, info.name)
                if name in seen:
                    raise UnsafeArchiveError(
                        "OVA %s has two members named %r; which one is meant is ambiguous" % (ova, name),
                        "rebuild the OVA so every file appears once",
                    )
                seen.add(name)
                if info.offset_data + info.size > archive_size:
                    raise NotAnArchiveError(
                        "OVA %s is truncated: member %r needs %d bytes from offset %d but the file has %d bytes"
                        % (ova, name, info.size, info.offset_data, archive_size),
                        "download or copy the OVA again and compare its size/checksum with the original",
                    )
                members.append(OvaMember(name=name, offset=info.offset_data, size=info.size))
    except tarfile.TarError as exc:
        raise NotAnArchiveError(
            "%s is not a readable tar archive (%s); an OVA is a tar of the .ovf, .mf and disk files" % (ova, exc),
            "point `path` at a real .ova (check the download is complete), "
            "or at the .ovf/.vmdk if the export is a folder",
        ) from exc
    if not members:
        raise NotAnArchiveError(
            "OVA %s is an empty tar archive" % ova,
            "export the VM again; an OVA must contain at least the .ovf descriptor and its disks",
        )
    return members


def find_descriptor(ova: str, members: list[OvaMember]) -> tuple[OvaMember, list[str]]:
    """The single .ovf member, and warnings (an .ovf that is not first breaks streaming readers)."""
    descriptors = [member for member in members if member.name.lower().endswith(".ovf")]
    if not descriptors:
        raise NotAnArchiveError(
            "OVA %s contains no .ovf descriptor (members: %s)" % (ova, listing(m.name for m in members)),
            "export the VM again as OVA, or point `path` at a .vmdk and give vcpus/memory_mib/firmware",
        )
    if len(descriptors) > 1:
        raise UnsafeArchiveError(
            "OVA %s contains several .ovf descriptors (%s); which VM is meant is ambiguous"
            % (ova, listing(m.name for m in descriptors)),
            "export one VM per OVA, or unpack it and point `path` at the wanted .ovf",
        )
    warnings = []
    if members[0] is not descriptors[0]:
        warnings.append(
            "OVA %s: the .ovf descriptor %r is not the first member as the OVF specification requires; "
            "it was read anyway" % (ova, descriptors[0].name)
        )
    return descriptors[0], warnings


def find_manifest(ova: str, members: list[OvaMember]) -> OvaMember | None:
    """The .mf member, or None; more than one is ambiguous and refused."""
    manifests = [member for member in members if member.name.lower().endswith(".mf")]
    if len(manifests) > 1:
        raise ManifestError(
            "OVA %s contains several .mf manifests (%s)" % (ova, listing(m.name for m in manifests)),
            "rebuild the OVA with exactly one manifest",
        )
    return manifests[0] if manifests else None


def read_member(path: str, offset: int, size: int, limit: int, what: str) -> bytes:
    """All bytes of a small member (descriptor, manifest), refusing anything above ``limit``."""
    if size > limit:
        raise DiskFileError(
            "%s is %d bytes, above the %d byte limit for this kind of file" % (what, size, limit),
            "check that the file is really an OVF descriptor/manifest; real ones are a few KiB",
        )
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise DiskFileError(
            "%s is truncated: expected %d bytes, read %d" % (what, size, len(data)),
            "copy the source again",
        )
    return data


def file_digest(path: str, algorithm: str, offset: int = 0, size: int | None = None) -> str:
    """Hex digest of a file, or of ``size`` bytes at ``offset`` inside it, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        handle.seek(offset)
        remaining = size
        while remaining is None or remaining > 0:
            chunk = handle.read(DIGEST_CHUNK if remaining is None else min(DIGEST_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def parse_manifest(text: str, where: str) -> tuple[str, dict[str, str]]:
    """``(algorithm, {file name: hex digest})`` from an ovftool-style .mf.

    Lines look like ``SHA256(disk1.vmdk)= 3f...``; ovftool writes one algorithm per
    manifest, so a mix is refused rather than guessed at.
    """
    algorithms = set()
    entries: dict[str, str] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line:
            continue
        match = _MANIFEST_LINE.match(line)
        if not match:
            raise ManifestError(
                "manifest %s line %d is not of the form 'SHA256(file)= hexdigest': %r" % (where, number, line[:120]),
                "regenerate the manifest (ovftool does this on export) or set verify_manifest=false to skip it",
            )
        algo = match.group("algo").upper()
        if algo not in SUPPORTED_DIGESTS:
            raise ManifestError(
                "manifest %s line %d uses digest %s; only SHA1, SHA256, SHA384 and SHA512 are supported"
                % (where, number, algo),
                "re-export with `ovftool --shaAlgorithm=SHA256`, or set verify_manifest=false "
                "(role variable migrate_vm_verify_manifest) to skip the manifest",
            )
        hashlib_name, length = SUPPORTED_DIGESTS[algo]
        digest = match.group("digest").lower()
        if len(digest) != length:
            raise ManifestError(
                "manifest %s line %d has a %s digest of %d hex digits, expected %d"
                % (where, number, algo, len(digest), length),
                "regenerate the manifest",
            )
        name = match.group("name").strip()
        if name in entries:
            raise ManifestError(
                "manifest %s names %r twice" % (where, name),
                "regenerate the manifest",
            )
        algorithms.add(hashlib_name)
        entries[name] = digest
    if not entries:
        raise ManifestError(
            "manifest %s is empty" % where,
            "regenerate the manifest, or delete it and set require_manifest=false",
        )
    if len(algorithms) > 1:
        raise ManifestError(
            "manifest %s mixes digest algorithms (%s)" % (where, ", ".join(sorted(algorithms))),
            "regenerate the manifest with one algorithm",
        )
    return algorithms.pop(), entries


def verify_manifest(
    algorithm: str, entries: dict[str, str], files: dict[str, tuple[str, int, int]], where: str
) -> dict[str, str]:
    """Check every package file against the manifest; returns ``{file name: verified hex digest}``.

    ``files`` maps each file of the package (descriptor and disks, never the .mf or .cert
    themselves) to ``(path, offset, size)``. A file the manifest does not list, a listed file
    that does not exist and a digest mismatch are all refused.
    """
    unlisted = sorted(name for name in files if name not in entries)
    if unlisted:
        raise ManifestError(
            "manifest %s does not list %s, so it cannot be verified" % (where, listing(unlisted)),
            "regenerate the manifest over all files of the export, or set verify_manifest=false to skip verification",
        )
    missing = sorted(name for name in entries if name not in files)
    if missing:
        raise ManifestError(
            "manifest %s lists %s, which the export does not contain" % (where, listing(missing)),
            "copy the missing file(s) next to the descriptor (or into the OVA), or regenerate the manifest",
        )
    verified = {}
    for name, (path, offset, size) in sorted(files.items()):
        actual = file_digest(path, algorithm, offset, size)
        if actual != entries[name]:
            raise ManifestError(
                "%s digest of %s does not match manifest %s (manifest %s, file %s): the file is damaged or was changed"
                % (algorithm.upper(), name, where, entries[name], actual),
                "copy the export again from the original; if the change was intended, regenerate the manifest",
            )
        verified[name] = actual
    return verified
