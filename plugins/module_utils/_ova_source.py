# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read an OVA, an OVF export folder or a bare VMDK into a normalized VM spec (docs/vm-spec.md).

``read_source_spec`` / ``run_module`` are the source-info phase behind ``v2kvm.migrate.ova_info``:
they read and verify a source in place (tar members by offset, OVF descriptor, .mf manifest,
disk files probed with qemu-img) and write nothing. The spec's rules are ``_vm_spec``'s.
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _ova_archive as archive
from ansible_collections.v2kvm.migrate.plugins.module_utils import _ova_disks as disk_files
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
from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import (
    FIRMWARES,
    check_vm_name,
    guest_family,
    name_source_vm,
    validate_spec,
)

MAX_MANIFEST_BYTES = 1024 * 1024


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
    disk = disk_files.new_disk(entry["id"], file_entry["href"], path, member, offset, size)
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
        kind = disk_files.classify_disk_bytes(disk, head, expect_vmdk, container is not None)
        if disk["compression"] is None:
            references.refuse_outside_references(container or disk["path"], disk["offset"], name=disk["file"],
                                                 base_dir=descriptor_dir, head=head)
        if disk["compression"] == "gzip":
            warnings.append(
                "disk %s is gzip-compressed inside the export (ovf:compression=gzip): it was not probed, "
                "and the convert phase must decompress it first" % disk["file"]
            )
        elif probe or kind == "vmdk-descriptor":
            expected = "VMDK" if expect_vmdk else disk["format"]
            warnings += disk_files.probe(disk, container, expected, descriptor_dir, force=False)
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
    disk = disk_files.new_disk("vmdisk1", file_name, path, None, 0, _file_size(path, "VMDK"))
    head = references.read_head(path, 0, 512)
    kind = disk_files.classify_disk_bytes(disk, head, True, False)
    references.check_image_file(path, name=file_name)
    disk["controller"] = disk_files.adapter_controller(path, 0, kind)
    warnings = []
    if probe or kind == "vmdk-descriptor":
        warnings = disk_files.probe(disk, None, "VMDK", os.path.dirname(os.path.realpath(path)), force=True)
    else:
        disk["capacity_bytes"] = disk_files.sparse_capacity(head, path)
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
