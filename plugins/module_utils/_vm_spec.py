# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The normalized VM spec (docs/vm-spec.md): its rules, and reading one from an OVA/OVF/VMDK.

``validate_spec``, ``check_vm_name`` and ``guest_family`` are for every phase.
``read_source_spec`` / ``run_module`` are the source-info phase behind
``v2kvm.migrate.ova_info``: they read and verify a source in place and write nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import unicodedata

from ansible_collections.v2kvm.migrate.plugins.module_utils import _ova_archive as archive
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img as qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils import _source_references as references
from ansible_collections.v2kvm.migrate.plugins.module_utils._ovf_parse import (
    MAX_DESCRIPTOR_BYTES,
    is_vmdk_format_url,
    parse_ovf,
    subformat_from_url,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DiskFileError,
    ManifestError,
    SourceError,
    SpecError,
    UnsupportedSourceError,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import listing

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_DERIVED_STEM = 64 - 9  # a derived name ends in "-" and 8 hex digits
SOURCE_TYPES = ("ova", "ovf", "vmdk", "vsphere", "kvm")
FIRMWARES = ("bios", "uefi")
FAMILIES = ("linux", "windows", "other")
DISK_FORMATS = ("vmdk", "qcow2", "raw")
CONTROLLERS = ("scsi", "ide", "sata", "nvme", "virtio")
MANIFEST_ALGORITHMS = (None, "sha1", "sha256", "sha384", "sha512")
MAX_MANIFEST_BYTES = 1024 * 1024

_ADAPTER_TYPE = re.compile(r'^\s*ddb\.adapterType\s*=\s*"([^"]*)"', re.MULTILINE)

_WINDOWS_WORDS = ("windows", "microsoft", "win2k", "winxp", "winnet", "winvista", "winlonghorn")
_LINUX_WORDS = (
    "linux", "debian", "ubuntu", "rhel", "red hat", "redhat", "centos", "fedora", "sles", "suse",
    "opensuse", "oracle", "mandrake", "mandriva", "turbolinux", "asianux", "coreos", "photon",
    "amazonlinux", "rocky", "alma", "vmware photon", "miraclelinux", "pardus", "gentoo", "arch",
)


# --------------------------------------------------------------------------- spec rules


def check_vm_name(name: str, origin: str) -> str:
    """Return ``name`` if it satisfies the spec's name rule, else refuse naming the override."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            "VM name %r (from %s) does not match %s: it must start with a letter or digit and use only "
            "letters, digits, '_', '.', '+', '-' (at most 64 characters)" % (name, origin, NAME_PATTERN.pattern),
            "pass a valid name with the `name` option (for example name: %s); names are never rewritten silently"
            % (_suggest_name(name),),
        )
    return name


def name_source_vm(original, origin: str) -> tuple[str, str | None]:
    """``(domain name, original name or None)`` for a name found in a source.

    A name that satisfies the rule is kept. Any other ("Web Server 01", "Mönch", "db/01") gets a
    derived one: ASCII-folded, every other character as '-', plus 8 hex digits of the original's
    SHA256, so it is the same on every run and two originals never share it.
    """
    if isinstance(original, str) and NAME_PATTERN.fullmatch(original):
        return original, None
    if not isinstance(original, str) or not original.strip():
        raise SpecError(
            "the VM has no name in %s" % origin,
            "pass one with the `name` option (role variable migrate_vm_name)",
        )
    folded = unicodedata.normalize("NFKD", original).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9_.+]+", "-", folded).strip("-_.+")[:_DERIVED_STEM] or "vm"
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return "%s-%s" % (stem.rstrip("-_.+") or "vm", digest), original


def domain_name_for(source_name):
    """The domain name a source VM called ``source_name`` gets (for lookups before the source is read)."""
    if not isinstance(source_name, str) or not source_name.strip():
        return source_name
    return name_source_vm(source_name, "the lookup")[0]


def _suggest_name(name) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(name or "")).strip("-_.+")[:64]
    return suggestion if NAME_PATTERN.fullmatch(suggestion) else "vm01"


def guest_family(os_id: str, description: str = "") -> str:
    """linux | windows | other, from a VMware guest id (debian11_64Guest) and/or a description."""
    text = ("%s %s" % (os_id or "", description or "")).lower()
    if any(word in text for word in _WINDOWS_WORDS) or re.match(r"^win", (os_id or "").lower()):
        return "windows"
    if any(word in text for word in _LINUX_WORDS):
        return "linux"
    return "other"


def _require(condition: bool, field: str, rule: str, value) -> None:
    if not condition:
        raise SpecError(
            "VM spec field %s is %r; it must be %s" % (field, value, rule),
            "fix the source or the value passed to the module (see docs/vm-spec.md)",
        )


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_abs_path(value) -> bool:
    return isinstance(value, str) and os.path.isabs(value)


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_hex(value, length: int) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[0-9a-f]{%d}" % length, value))


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value)


_MAC_RULE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_SPEC_RULES = (
    ("vcpus", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("cores_per_socket", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("memory_mib", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("firmware", lambda v: v in FIRMWARES, "bios or uefi"),
    ("secure_boot", lambda v: isinstance(v, bool), "true or false"),
    ("annotation", _is_text, "a string"),
    ("original_name", lambda v: v is None or _is_name(v), "null or the source's own name"),
)
_SOURCE_RULES = (
    ("type", lambda v: v in SOURCE_TYPES, "one of %s" % ", ".join(SOURCE_TYPES)),
    ("path", _is_abs_path, "an absolute path"),
    ("manifest", lambda v: v in MANIFEST_ALGORITHMS, "null, sha1, sha256, sha384 or sha512"),
)
_GUEST_RULES = (
    ("id", _is_text, "a string"),
    ("description", _is_text, "a string"),
    ("family", lambda v: v in FAMILIES, "linux, windows or other"),
)
_DISK_RULES = (
    ("id", _is_name, "a non-empty string"),
    ("file", _is_name, "a non-empty string"),
    ("offset", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("size", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("format", lambda v: v in DISK_FORMATS, "vmdk, qcow2 or raw"),
    ("subformat", lambda v: v is None or _is_name(v), "null or a VMDK create type"),
    ("compression", lambda v: v in (None, "gzip"), "null or gzip"),
    ("capacity_bytes", lambda v: _is_int(v, 1), "an integer >= 1"),
    ("populated_bytes", lambda v: v is None or _is_int(v, 0), "null or an integer >= 0"),
    ("controller", lambda v: v in CONTROLLERS, "one of %s" % ", ".join(CONTROLLERS)),
    ("unit", lambda v: _is_int(v, 0), "an integer >= 0"),
    ("sha256", lambda v: v is None or _is_hex(v, 64), "null or a SHA256 hex digest"),
    ("sha1", lambda v: v is None or _is_hex(v, 40), "null or a SHA1 hex digest"),
    ("sha384", lambda v: v is None or _is_hex(v, 96), "null or a SHA384 hex digest"),
    ("sha512", lambda v: v is None or _is_hex(v, 128), "null or a SHA512 hex digest"),
)
_NIC_RULES = (
    ("mac", lambda v: v is None or (_is_text(v) and bool(_MAC_RULE.fullmatch(v))),
     "null or a lower-case aa:bb:cc:dd:ee:ff MAC"),
    ("network", _is_text, "a string"),
    ("model", lambda v: v is None or _is_text(v), "null or a string"),
)


def _apply_rules(mapping, rules, prefix: str) -> None:
    _require(isinstance(mapping, dict), prefix.rstrip(".") or "spec", "a mapping", mapping)
    for field, rule, text in rules:
        _require(rule(mapping.get(field)), prefix + field, text, mapping.get(field))


def validate_spec(spec: dict) -> dict:
    """Check a spec against docs/vm-spec.md; returns it unchanged, raises SpecError on the first problem."""
    _apply_rules(spec, _SPEC_RULES, "")
    check_vm_name(spec.get("name"), "the spec")
    _apply_rules(spec.get("source"), _SOURCE_RULES, "source.")
    _apply_rules(spec.get("guest_os"), _GUEST_RULES, "guest_os.")
    vcpus, cores = spec["vcpus"], spec["cores_per_socket"]
    _require(vcpus % cores == 0, "cores_per_socket", "a divisor of vcpus (%d)" % vcpus, cores)
    _require(not spec["secure_boot"] or spec["firmware"] == "uefi", "secure_boot",
             "false unless firmware is uefi", spec["secure_boot"])
    disks = spec.get("disks")
    _require(isinstance(disks, list) and disks, "disks", "a non-empty list", disks)
    for index, disk in enumerate(disks):
        _apply_rules(disk, _DISK_RULES, "disks[%d]." % index)
        inside = disk.get("member") is not None
        path_ok = disk.get("path") is None if inside else _is_abs_path(disk.get("path"))
        _require(path_ok, "disks[%d].path" % index, "null inside an OVA, else an absolute path", disk.get("path"))
    ids = [disk["id"] for disk in disks]
    _require(len(set(ids)) == len(ids), "disks[].id", "unique", ids)
    nics = spec.get("nics")
    _require(isinstance(nics, list), "nics", "a list", nics)
    for index, nic in enumerate(nics):
        _apply_rules(nic, _NIC_RULES, "nics[%d]." % index)
    return spec


# --------------------------------------------------------------------------- disk probing


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "an empty file"
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in head[:256])
    if printable == len(head[:256]):
        return "a text file starting with %r" % head[:40].decode("ascii", "replace")
    return "a file starting with bytes %s" % head[:8].hex()


def _adapter_controller(path: str, offset: int, kind: str) -> str:
    """Controller of a bare VMDK from its descriptor's ddb.adapterType (qemu-img does not report it)."""
    try:
        text = references.vmdk_descriptor_text(path, offset, kind)
    except OSError:
        return "scsi"
    match = _ADAPTER_TYPE.search(text)
    return "ide" if match and match.group(1).lower() == "ide" else "scsi"


def _refuse_foreign_extents(disk_name: str, details: dict, base_dir: str | None) -> None:
    extents = ((details.get("format-specific") or {}).get("data") or {}).get("extents") or []
    for extent in extents:
        filename = extent.get("filename", "")
        if base_dir is None:
            if len(extents) != 1:
                raise UnsupportedSourceError(
                    "disk %s inside the OVA has %d extents; only single-extent VMDKs can be read from an OVA"
                    % (disk_name, len(extents)),
                    "re-export the VM with ovftool, which writes single-extent streamOptimized disks",
                )
            continue
        real = os.path.realpath(filename)
        if os.path.commonpath([real, base_dir]) != base_dir:
            raise UnsupportedSourceError(
                "VMDK descriptor %s points at extent file %s outside its own directory %s"
                % (disk_name, filename, base_dir),
                "copy the extent files next to the descriptor and use relative names in its extent lines",
            )


def _probe(disk: dict, container: str | None, expected: str, descriptor_dir: str | None, force: bool) -> list[str]:
    """Fill format details of one disk from qemu-img; returns warnings. Raises DiskFileError."""
    name = disk["file"]
    source = qemu_img.image_source(disk, container)
    try:
        details = qemu_img.info(source, disk["format"])
    except qemu_img.QemuImgError as exc:
        raise DiskFileError(
            "disk file %s is not a readable %s image (truncated or damaged?): %s" % (name, expected, exc),
            "copy the export again from the original and compare sizes/checksums "
            "(probe_disks=false skips this check, for inspecting a known-bad export only)",
        ) from None
    if details.get("backing-filename") or details.get("full-backing-filename"):
        raise UnsupportedSourceError(
            "disk file %s is a delta image with backing file %r" % (name, details.get("backing-filename")),
            "consolidate the snapshot chain on the source and export again",
        )
    data_file = ((details.get("format-specific") or {}).get("data") or {}).get("data-file")
    if data_file:
        raise UnsupportedSourceError(
            "disk file %s keeps its data in the external file %r" % (name, data_file),
            "convert it to a self-contained image first (qemu-img convert -O qcow2)",
        )
    warnings = []
    if disk["format"] == "vmdk":
        create_type = ((details.get("format-specific") or {}).get("data") or {}).get("create-type")
        if container is not None and create_type not in references.SELF_CONTAINED_VMDK:
            raise UnsupportedSourceError(
                "disk %s inside the OVA is a %s VMDK; only %s can be read from inside an OVA"
                % (name, create_type, " or ".join(references.SELF_CONTAINED_VMDK)),
                "re-export the VM with ovftool (it writes streamOptimized disks)",
            )
        _refuse_foreign_extents(name, details, descriptor_dir)
        disk["subformat"] = create_type or disk["subformat"]
    if force or not disk["capacity_bytes"]:
        disk["capacity_bytes"] = int(details["virtual-size"])
    elif int(details["virtual-size"]) != disk["capacity_bytes"]:
        warnings.append(
            "disk %s: the OVF says capacity %d bytes but the image's virtual size is %d bytes; using the image's"
            % (name, disk["capacity_bytes"], int(details["virtual-size"]))
        )
        disk["capacity_bytes"] = int(details["virtual-size"])
    if disk["populated_bytes"] is None:
        # What the disk's data takes once converted, for free-space checks that do not treat a sparse
        # 80 GiB disk holding 6 GiB as 80 (qcow2's metadata included: a bound on a sparse raw copy too).
        disk["populated_bytes"] = int(qemu_img.measure(source, disk["format"], "qcow2")["required"])
    if disk["format"] in ("vmdk", "qcow2"):
        try:
            result = qemu_img.check(source, disk["format"])
        except qemu_img.QemuImgError as exc:
            raise DiskFileError(
                "disk file %s failed `qemu-img check` (truncated or damaged): %s" % (name, exc),
                "copy the export again from the original and compare sizes/checksums",
            ) from None
        if not result["ok"]:
            raise DiskFileError(
                "disk file %s failed `qemu-img check` with %d corruption(s): the image is damaged"
                % (name, result["corruptions"]),
                "copy the export again from the original, or repair the disk on the source and export again",
            )
    return warnings


def _classify_disk_bytes(disk: dict, head: bytes, expect_vmdk: bool, in_ova: bool) -> str:
    """Set disk["format"] from the file's magic bytes; refuses what cannot be a disk of the expected kind."""
    kind = references.image_kind(head)
    name = disk["file"]
    if disk["compression"] == "gzip":
        if kind != "gzip":
            raise DiskFileError(
                "disk file %s is declared ovf:compression=\"gzip\" but is not gzip data (%s)"
                % (name, _describe_bytes(head)),
                "remove ovf:compression from the File element (and regenerate the manifest), or re-export the VM",
            )
        disk["format"] = "vmdk" if expect_vmdk else disk["format"]
        return kind
    if kind == "gzip":
        raise DiskFileError(
            "disk file %s is gzip-compressed but the OVF does not declare ovf:compression=\"gzip\"" % name,
            "add ovf:compression=\"gzip\" to its File element, or gunzip the file and fix ovf:size",
        )
    if kind in ("vmdk", "vmdk-descriptor"):
        if kind == "vmdk-descriptor" and in_ova:
            raise UnsupportedSourceError(
                "disk %s inside the OVA is a VMDK descriptor that names separate extent files" % name,
                "re-export the VM with ovftool (it writes self-contained streamOptimized disks)",
            )
        disk["format"] = "vmdk"
    elif kind == "qcow2" and not expect_vmdk:
        disk["format"] = "qcow2"
    elif kind == "unknown" and not expect_vmdk and name.lower().endswith((".img", ".raw")):
        disk["format"] = "raw"
    else:
        raise DiskFileError(
            "disk file %s is not a VMDK: it is %s"
            % (name, "a qcow2 image" if kind == "qcow2" else _describe_bytes(head)),
            "point `path` at the real VMDK, or copy the right file under this name",
        )
    return kind


def _new_disk(disk_id: str, file_name: str, path, member, offset: int, size: int) -> dict:
    return {
        "id": disk_id,
        "file": file_name,
        "path": path,
        "member": member,
        "offset": offset,
        "size": size,
        "format": "vmdk",
        "subformat": None,
        "compression": None,
        "capacity_bytes": 0,
        "populated_bytes": None,
        "controller": "scsi",
        "unit": 0,
        "sha256": None,
        "sha1": None,
        "sha384": None,
        "sha512": None,
    }


# --------------------------------------------------------------------------- sources


def _check_manifest_options(require_manifest: bool, verify_manifest: bool) -> None:
    if require_manifest and not verify_manifest:
        raise ManifestError(
            "require_manifest=true cannot be combined with verify_manifest=false: a required manifest must be verified",
            "set verify_manifest=true (the default), or require_manifest=false",
        )


def _apply_manifest(spec, manifest_bytes, manifest_where, files, verify, require) -> None:
    if manifest_bytes is None:
        if require:
            raise ManifestError(
                "require_manifest=true but %s has no .mf manifest" % spec["source"]["path"],
                "export with a manifest (ovftool writes one by default), or set require_manifest=false",
            )
        return
    if not verify:
        return
    algorithm, entries = archive.parse_manifest(manifest_bytes.decode("utf-8", "replace"), manifest_where)
    verified = archive.verify_manifest(algorithm, entries, files, manifest_where)
    spec["source"]["manifest"] = algorithm
    for disk in spec["disks"]:
        disk[algorithm] = verified.get(disk["file"])


def _check_declared_sizes(descriptor: dict, locate, where: str) -> None:
    """Every References file must exist with its ovf:size, disks or not (nvram, ISO...)."""
    for file_entry in descriptor["files"].values():
        _check_declared_size(file_entry, locate(file_entry["href"])[3], where)


def _check_declared_size(file_entry: dict, size: int, where: str) -> None:
    if file_entry["size"] is not None and file_entry["size"] != size:
        raise DiskFileError(
            "%s: file %s is %d bytes but the OVF declares ovf:size=%d (truncated copy or edited file)"
            % (where, file_entry["href"], size, file_entry["size"]),
            "copy the export again from the original; if the file is right, fix ovf:size and regenerate the manifest",
        )


def _disk_from_ovf(entry: dict, file_entry: dict, located: tuple) -> dict:
    path, member, offset, size = located
    disk = _new_disk(entry["id"], file_entry["href"], path, member, offset, size)
    disk.update(
        compression=file_entry["compression"],
        capacity_bytes=entry["capacity_bytes"],
        populated_bytes=entry["populated_bytes"],
        controller=entry["controller"],
        unit=entry["unit"],
        subformat=subformat_from_url(entry["format_url"]),
    )
    return disk


def _spec_from_descriptor(descriptor: dict, source_type: str, source_path: str) -> dict:
    guest = descriptor["guest_os"]
    return {
        "name": descriptor["name"],
        "source": {"type": source_type, "path": source_path, "manifest": None},
        "vcpus": descriptor["vcpus"],
        "cores_per_socket": descriptor["cores_per_socket"],
        "memory_mib": descriptor["memory_mib"],
        "firmware": descriptor["firmware"],
        "secure_boot": descriptor["secure_boot"],
        "guest_os": dict(guest, family=guest_family(guest["id"], guest["description"])),
        "disks": [],
        "nics": descriptor["nics"],
        "annotation": descriptor["annotation"],
    }


def _finish_disks(spec, descriptor, locate, container, descriptor_dir, probe) -> list[str]:
    warnings = []
    for entry in descriptor["disks"]:
        file_entry = descriptor["files"][entry["file_id"]]
        disk = _disk_from_ovf(entry, file_entry, locate(file_entry["href"]))
        expect_vmdk = is_vmdk_format_url(entry["format_url"]) or disk["file"].lower().endswith(".vmdk")
        head = references.read_head(container or disk["path"], disk["offset"], 512)
        kind = _classify_disk_bytes(disk, head, expect_vmdk, container is not None)
        if disk["compression"] is None:
            references.refuse_outside_references(container or disk["path"], disk["offset"], name=disk["file"],
                                                 base_dir=descriptor_dir, head=head)
        if disk["compression"] == "gzip":
            warnings.append(
                "disk %s is gzip-compressed inside the export (ovf:compression=gzip): it was not probed, "
                "and the convert phase must decompress it first" % disk["file"]
            )
        elif probe or kind == "vmdk-descriptor":
            warnings += _probe(disk, container, "VMDK" if expect_vmdk else disk["format"], descriptor_dir, force=False)
        spec["disks"].append(disk)
    return warnings


def _read_ova(path, probe, verify, require) -> tuple[dict, list[str]]:
    members = archive.read_ova_members(path)
    descriptor_member, warnings = archive.find_descriptor(path, members)
    where = "%s!%s" % (path, descriptor_member.name)
    data = archive.read_member(
        path, descriptor_member.offset, descriptor_member.size, MAX_DESCRIPTOR_BYTES, "OVF descriptor " + where
    )
    descriptor = parse_ovf(data, where)
    by_name = {member.name: member for member in members}
    spec = _spec_from_descriptor(descriptor, "ova", path)

    def locate(href):
        member = by_name.get(href)
        if member is None:
            raise DiskFileError(
                "%s references file %s, which is not in the OVA" % (where, href),
                "export the VM again; the OVA is incomplete (members: %s)" % listing(sorted(by_name)),
            )
        return None, member.name, member.offset, member.size

    _check_declared_sizes(descriptor, locate, where)
    warnings += _finish_disks(spec, descriptor, locate, path, None, probe)
    manifest = archive.find_manifest(path, members)
    manifest_bytes = manifest_where = None
    if manifest is not None:
        manifest_where = "%s!%s" % (path, manifest.name)
        manifest_bytes = archive.read_member(
            path, manifest.offset, manifest.size, MAX_MANIFEST_BYTES, "manifest " + manifest_where
        )
    files = {
        member.name: (path, member.offset, member.size)
        for member in members
        if not member.name.lower().endswith((".mf", ".cert"))
    }
    _apply_manifest(spec, manifest_bytes, manifest_where, files, verify, require)
    return spec, warnings


def _read_ovf_folder(path, probe, verify, require) -> tuple[dict, list[str]]:
    directory = os.path.dirname(path)
    real_directory = os.path.realpath(directory)
    size = _file_size(path, "OVF descriptor")
    data = archive.read_member(path, 0, size, MAX_DESCRIPTOR_BYTES, "OVF descriptor " + path)
    descriptor = parse_ovf(data, path)
    spec = _spec_from_descriptor(descriptor, "ovf", path)

    def locate(href):
        file_path = os.path.join(directory, href)
        if os.path.commonpath([os.path.realpath(file_path), real_directory]) != real_directory:
            raise DiskFileError(
                "%s references %s, which resolves (through a symbolic link) outside the export folder" % (path, href),
                "copy the real file into the export folder instead of linking to it",
            )
        if not os.path.isfile(file_path):
            raise DiskFileError(
                "%s references file %s, but %s does not exist" % (path, href, file_path),
                "copy %s next to the .ovf (the export is incomplete)" % href,
            )
        return os.path.abspath(file_path), None, 0, os.path.getsize(file_path)

    _check_declared_sizes(descriptor, locate, path)
    warnings = _finish_disks(spec, descriptor, locate, None, real_directory, probe)
    manifest_path = os.path.splitext(path)[0] + ".mf"
    manifest_bytes = None
    if os.path.isfile(manifest_path):
        manifest_bytes = archive.read_member(
            manifest_path, 0, os.path.getsize(manifest_path), MAX_MANIFEST_BYTES, "manifest " + manifest_path
        )
    files = {os.path.basename(path): (path, 0, size)}
    for file_entry in descriptor["files"].values():
        file_path = os.path.join(directory, file_entry["href"])
        files[file_entry["href"]] = (file_path, 0, os.path.getsize(file_path))
    _apply_manifest(spec, manifest_bytes, manifest_path, files, verify, require)
    return spec, warnings


def _read_vmdk(path, probe, require, vcpus, memory_mib, firmware) -> tuple[dict, list[str]]:
    if require:
        raise ManifestError(
            "require_manifest=true but %s is a bare VMDK, which has no manifest" % path,
            "point `path` at the .ova/.ovf export, or set require_manifest=false",
        )
    if firmware not in FIRMWARES:
        raise SpecError("firmware %r is not bios or uefi" % firmware, "set firmware to bios or uefi")
    file_name = os.path.basename(path)
    disk = _new_disk("vmdisk1", file_name, path, None, 0, _file_size(path, "VMDK"))
    head = references.read_head(path, 0, 512)
    kind = _classify_disk_bytes(disk, head, True, False)
    references.check_image_file(path, name=file_name)
    disk["controller"] = _adapter_controller(path, 0, kind)
    warnings = []
    if probe or kind == "vmdk-descriptor":
        warnings = _probe(disk, None, "VMDK", os.path.dirname(os.path.realpath(path)), force=True)
    else:
        disk["capacity_bytes"] = _sparse_capacity(head, path)
    spec = {
        "name": os.path.splitext(file_name)[0],
        "source": {"type": "vmdk", "path": path, "manifest": None},
        "vcpus": vcpus,
        "cores_per_socket": 1,
        "memory_mib": memory_mib,
        "firmware": firmware,
        "secure_boot": False,
        "guest_os": {"id": "", "description": "", "family": "other"},
        "disks": [disk],
        "nics": [],
        "annotation": "",
    }
    return spec, warnings


def _sparse_capacity(head: bytes, path: str) -> int:
    if head.startswith(references.MAGIC_VMDK_SPARSE) and len(head) >= 20:
        return struct.unpack_from("<Q", head, 12)[0] * 512
    raise DiskFileError(
        "the virtual size of %s cannot be read without qemu-img" % path,
        "set probe_disks=true (the default)",
    )


def _file_size(path: str, what: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise DiskFileError(
            "cannot read %s %s: %s" % (what, path, exc.strerror or exc),
            "check that `path` exists and is readable by the user running the task",
        ) from None


def read_source_spec(
    path: str,
    *,
    name: str | None = None,
    require_manifest: bool = False,
    verify_manifest: bool = True,
    probe_disks: bool = True,
    vcpus: int = 1,
    memory_mib: int = 1024,
    firmware: str = "bios",
) -> tuple[dict, list[str]]:
    """Read an .ova, .ovf or .vmdk in place into a validated spec; returns ``(spec, warnings)``.

    Raises a SourceError subclass (message names the problem and the fix) and writes nothing.
    """
    _check_manifest_options(require_manifest, verify_manifest)
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise DiskFileError(
            "source %s does not exist or is not a regular file" % path,
            "point `path` at an .ova file, an .ovf file inside an export folder, or a .vmdk",
        )
    extension = os.path.splitext(path)[1].lower()
    if extension == ".ova":
        spec, warnings = _read_ova(path, probe_disks, verify_manifest, require_manifest)
    elif extension == ".ovf":
        spec, warnings = _read_ovf_folder(path, probe_disks, verify_manifest, require_manifest)
    elif extension == ".vmdk":
        spec, warnings = _read_vmdk(path, probe_disks, require_manifest, vcpus, memory_mib, firmware)
    else:
        raise UnsupportedSourceError(
            "source %s is not an .ova, .ovf or .vmdk file" % path,
            "point `path` at an .ova, the .ovf of an export folder, or a .vmdk "
            "(rename the file if only the extension is wrong)",
        )
    if name:
        spec["name"] = check_vm_name(name, "the `name` option")
        spec["original_name"] = None
    else:
        spec["name"], spec["original_name"] = name_source_vm(
            spec["name"], "the OVF VirtualSystem" if extension != ".vmdk" else "the VMDK file name")
    return validate_spec(spec), warnings


def run_module(params: dict) -> dict:
    """The whole of ``v2kvm.migrate.ova_info`` minus AnsibleModule: params in, result dict out.

    Failures come back as ``{"failed": True, "msg": ...}`` so callers (and tests) see the
    exact message the module would print.
    """
    try:
        spec, warnings = read_source_spec(
            params["path"],
            name=params.get("name"),
            require_manifest=bool(params.get("require_manifest", False)),
            verify_manifest=bool(params.get("verify_manifest", True)),
            probe_disks=bool(params.get("probe_disks", True)),
            vcpus=params.get("vcpus") or 1,
            memory_mib=params.get("memory_mib") or 1024,
            firmware=params.get("firmware") or "bios",
        )
    except SourceError as exc:
        return {"changed": False, "failed": True, "msg": str(exc)}
    except qemu_img.QemuImgError as exc:
        return {"changed": False, "failed": True, "msg": "%s. Fix: check the disk files of the export." % exc}
    except OSError as exc:
        return {
            "changed": False,
            "failed": True,
            "msg": "cannot read %s: %s. Fix: check that the export's files exist and are readable "
            "by the user running the task." % (exc.filename or params["path"], exc.strerror or exc),
        }
    return {"changed": False, "spec": spec, "warnings": warnings}
