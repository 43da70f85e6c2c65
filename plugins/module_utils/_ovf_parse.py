# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse an OVF descriptor (the dialect VMware ovftool writes, OVF 1.x and 2.x) into plain data.

The result of :func:`parse_ovf` is a dict with the spec-shaped hardware (vcpus, memory,
firmware, disks in controller order, NICs) plus the ``References`` files, so the caller only
has to locate the files and verify them. XML goes through defusedxml: DTDs, entity
declarations and external references are refused, never resolved.
"""

from __future__ import annotations

import math
import re
import traceback

from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import (
    DescriptorError,
    UnsafeXmlError,
    UnsupportedSourceError,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import listing

try:
    from defusedxml import ElementTree as SafeElementTree
    from defusedxml.common import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
    from xml.etree.ElementTree import ParseError

    HAS_DEFUSEDXML = True
    DEFUSEDXML_IMPORT_ERROR = None
except ImportError:
    HAS_DEFUSEDXML = False
    DEFUSEDXML_IMPORT_ERROR = traceback.format_exc()

MAX_DESCRIPTOR_BYTES = 16 * 1024 * 1024
# The largest VMDK VMware supports is 62 TiB; anything above 64 TiB is a units mistake.
MAX_CAPACITY_BYTES = 64 * 1024**4

OVF_NAMESPACES = (
    "http://schemas.dmtf.org/ovf/envelope/1",
    "http://schemas.dmtf.org/ovf/envelope/2",
)
VMW_NAMESPACE = "http://www.vmware.com/schema/ovf"

RESOURCE_CPU = 3
RESOURCE_MEMORY = 4
RESOURCE_IDE = 5
RESOURCE_SCSI = 6
RESOURCE_NIC = 10
RESOURCE_DISK = 17
RESOURCE_OTHER_STORAGE = 20

_NAMED_UNITS = {
    "byte": 1,
    "bytes": 1,
    "kilobytes": 1024,
    "kb": 1024,
    "megabytes": 1024**2,
    "mb": 1024**2,
    "gigabytes": 1024**3,
    "gb": 1024**3,
    "terabytes": 1024**4,
    "tb": 1024**4,
}
# DSP0004 programmatic units as OVF writers use them: "byte", "byte * 2^20", "byte * 1024".
_PROGRAMMATIC_UNIT = re.compile(r"^bytes?\s*(?:\*\s*(\d+)\s*(?:\^\s*(\d+))?)?$", re.IGNORECASE)
_HOST_RESOURCE_DISK = re.compile(r"^(?:ovf:)?/disk/(.+)$")
_HOST_RESOURCE_FILE = re.compile(r"^(?:ovf:)?/file/(.+)$")
_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$", re.IGNORECASE)
_VMDK_FORMAT_URL = re.compile(r"vmdk", re.IGNORECASE)


def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element, name: str) -> list:
    return [child for child in element if _local(child.tag) == name]


def _child(element, name: str):
    found = _children(element, name)
    return found[0] if found else None


def _child_text(element, name: str) -> str | None:
    child = _child(element, name)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _attr(element, name: str) -> str | None:
    """An attribute in any OVF or VMware namespace, or unqualified (VirtualBox, hand-written OVFs)."""
    for namespace in OVF_NAMESPACES + (VMW_NAMESPACE,):
        value = element.get("{%s}%s" % (namespace, name))
        if value is not None:
            return value.strip()
    value = element.get(name)
    return value.strip() if value is not None else None


def _int(value: str | None, what: str, where: str, minimum: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise DescriptorError(
            "OVF %s: %s is %r, not an integer" % (where, what, value),
            "fix the value in the descriptor (OVF properties like ${...} are not expanded), "
            "then regenerate the manifest",
        ) from None
    if minimum is not None and number < minimum:
        raise DescriptorError(
            "OVF %s: %s is %d, it must be at least %d" % (where, what, number, minimum),
            "fix the value in the descriptor, then regenerate the manifest",
        )
    return number


def allocation_units_bytes(units: str | None, where: str, what: str) -> int:
    """Bytes per unit for an OVF AllocationUnits/capacityAllocationUnits string ("byte * 2^30")."""
    if units is None or not units.strip():
        return 1
    text = " ".join(units.split())
    named = _NAMED_UNITS.get(text.lower())
    if named:
        return named
    match = _PROGRAMMATIC_UNIT.match(text)
    if match:
        base, exponent = match.group(1), match.group(2)
        if base is None:
            return 1
        value = int(base) ** int(exponent) if exponent is not None else int(base)
        if value >= 1 and (exponent is None or int(exponent) <= 60):
            return value
    raise DescriptorError(
        "OVF %s: unknown %s %r" % (where, what, units),
        'write the units as "byte * 2^N" (for example "byte * 2^20" for MiB, "byte * 2^30" for GiB) or "byte"',
    )


def _parse_xml(data: bytes, where: str):
    if not HAS_DEFUSEDXML:
        raise DescriptorError(
            "defusedxml is not installed, so the OVF descriptor %s cannot be read safely" % where,
            "install the Python package defusedxml on the host running the task (pip install defusedxml)",
        )
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(
            "OVF descriptor %s is %d bytes, above the %d byte limit" % (where, len(data), MAX_DESCRIPTOR_BYTES),
            "check the file is really an OVF descriptor; real ones are a few KiB",
        )
    try:
        return SafeElementTree.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        reason = _classify_dtd(data)
        raise UnsafeXmlError(
            "OVF descriptor %s %s; DTDs, entity declarations and external references are refused "
            "to block XXE and entity-expansion (billion laughs) attacks" % (where, reason),
            "remove the <!DOCTYPE ...> block from the descriptor (VMware and VirtualBox never write one) "
            "and regenerate the manifest, or re-export the VM",
        ) from None
    except (EntitiesForbidden, ExternalReferenceForbidden) as exc:
        raise UnsafeXmlError(
            "OVF descriptor %s declares entities or external references (%s), which are refused" % (where, exc),
            "remove them from the descriptor and regenerate the manifest, or re-export the VM",
        ) from None
    except ParseError as exc:
        raise DescriptorError(
            "OVF descriptor %s is not well-formed XML: %s" % (where, exc),
            "re-export the VM; if the file was edited by hand, fix the XML and regenerate the manifest",
        ) from None


def _classify_dtd(data: bytes) -> str:
    """Say which DTD feature was used; entities stay forbidden during this second look."""
    try:
        SafeElementTree.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        if exc.sysid or exc.pubid:
            return "declares the external entity %r -> %r (XXE)" % (exc.name, exc.sysid or exc.pubid)
        return "declares the XML entity %r (entity expansion, as in a billion laughs bomb)" % exc.name
    except ExternalReferenceForbidden as exc:
        return "references the external resource %r (XXE)" % (exc.sysid or exc.pubid,)
    except Exception:  # the first parse already failed; only the wording is at stake here
        return "contains a DTD (<!DOCTYPE ...>)"
    return "contains a DTD (<!DOCTYPE ...>)"


def _safe_href(href: str | None, where: str) -> str:
    if not href:
        raise DescriptorError(
            "OVF %s: a File element has no ovf:href" % where,
            "fix the References section of the descriptor",
        )
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", href):
        raise UnsupportedSourceError(
            "OVF %s: file %r is a URL; only files shipped with the descriptor are supported" % (where, href),
            "download the file next to the .ovf and change ovf:href to its plain file name",
        )
    parts = [part for part in href.replace("\\", "/").split("/") if part not in ("", ".")]
    if href.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", href) or ".." in parts or not parts:
        raise DescriptorError(
            "OVF %s: file reference %r is absolute or climbs out of the export with '..'" % (where, href),
            "use plain relative file names in ovf:href (as ovftool writes them)",
        )
    return "/".join(parts)


def _parse_references(envelope, where: str) -> dict:
    files = {}
    hrefs = set()
    references = _child(envelope, "References")
    for element in _children(references, "File") if references is not None else []:
        file_id = _attr(element, "id")
        href = _safe_href(_attr(element, "href"), where)
        if not file_id:
            raise DescriptorError(
                "OVF %s: File %r has no ovf:id" % (where, href),
                "fix the References section of the descriptor",
            )
        if file_id in files or href in hrefs:
            raise DescriptorError(
                "OVF %s: file %r (id %r) is listed twice in References" % (where, href, file_id),
                "list every file once in the References section",
            )
        if _attr(element, "chunkSize"):
            raise UnsupportedSourceError(
                "OVF %s: file %r is split into chunks (ovf:chunkSize), which is not supported" % (where, href),
                "re-export without chunking (ovftool: omit --chunkSize)",
            )
        compression = _attr(element, "compression")
        if compression in (None, "", "identity"):
            compression = None
        elif compression.lower() == "gzip":
            compression = "gzip"
        else:
            raise UnsupportedSourceError(
                "OVF %s: file %r uses ovf:compression=%r; only gzip is supported" % (where, href, compression),
                "re-export without compression (ovftool: omit --compress) or with gzip",
            )
        size = _attr(element, "size")
        files[file_id] = {
            "href": href,
            "size": None if size is None else _int(size, "ovf:size of %s" % href, where, 0),
            "compression": compression,
        }
        hrefs.add(href)
    return files


def _parse_disks(envelope, files: dict, where: str) -> dict:
    disks = {}
    used_files = {}
    section = _child(envelope, "DiskSection")
    for element in _children(section, "Disk") if section is not None else []:
        disk_id = _attr(element, "diskId")
        if not disk_id:
            raise DescriptorError("OVF %s: a Disk has no ovf:diskId" % where, "fix the DiskSection of the descriptor")
        if disk_id in disks:
            raise DescriptorError(
                "OVF %s: disk id %r is declared twice in DiskSection" % (where, disk_id),
                "give every Disk a unique ovf:diskId",
            )
        if _attr(element, "parentRef"):
            raise UnsupportedSourceError(
                "OVF %s: disk %r is a delta disk (ovf:parentRef)" % (where, disk_id),
                "consolidate snapshots and re-export the VM",
            )
        file_ref = _attr(element, "fileRef")
        if not file_ref:
            raise UnsupportedSourceError(
                "OVF %s: disk %r has no ovf:fileRef (a blank disk to be created on import)" % (where, disk_id),
                "create the disk on the source VM before exporting, or remove it from the descriptor",
            )
        if file_ref not in files:
            raise DescriptorError(
                "OVF %s: disk %r refers to file id %r, which References does not list" % (where, disk_id, file_ref),
                "fix ovf:fileRef or add the File to References",
            )
        if file_ref in used_files:
            raise DescriptorError(
                "OVF %s: file %r is used by two disks (%r and %r)"
                % (where, files[file_ref]["href"], used_files[file_ref], disk_id),
                "give each Disk its own file",
            )
        used_files[file_ref] = disk_id
        capacity = _disk_capacity(element, disk_id, where)
        populated = _attr(element, "populatedSize")
        if populated is not None:
            populated = _int(populated, "ovf:populatedSize of disk %r" % disk_id, where, 0)
        disks[disk_id] = {
            "id": disk_id,
            "file_id": file_ref,
            "capacity_bytes": capacity,
            "populated_bytes": populated,
            "format_url": _attr(element, "format") or "",
        }
    return disks


def _disk_capacity(element, disk_id: str, where: str) -> int:
    """ovf:capacity times ovf:capacityAllocationUnits, in bytes, within 1 byte .. 64 TiB."""
    what = "capacity of disk %r" % disk_id
    units = allocation_units_bytes(
        _attr(element, "capacityAllocationUnits"), where, "ovf:capacityAllocationUnits of disk %r" % disk_id
    )
    capacity = _int(_attr(element, "capacity"), what, where) * units
    if capacity <= 0 or capacity > MAX_CAPACITY_BYTES:
        raise DescriptorError(
            "OVF %s: %s is %d bytes, outside 1 byte .. 64 TiB" % (where, what, capacity),
            "fix ovf:capacity/ovf:capacityAllocationUnits in the descriptor",
        )
    return capacity


def _virtual_system(envelope, where: str):
    collections = [element for element in envelope.iter() if _local(element.tag) == "VirtualSystemCollection"]
    if collections:
        raise UnsupportedSourceError(
            "OVF %s describes a VirtualSystemCollection (a vApp of several VMs); "
            "only single-VM OVFs are supported" % where,
            "export each VM of the vApp on its own (ovftool vi://.../vm/NAME NAME.ova)",
        )
    systems = [element for element in envelope.iter() if _local(element.tag) == "VirtualSystem"]
    if len(systems) != 1:
        raise DescriptorError(
            "OVF %s contains %d VirtualSystem elements; exactly one is required" % (where, len(systems)),
            "export exactly one VM per OVF/OVA",
        )
    return systems[0]


def _default_configuration(envelope) -> str | None:
    section = _child(envelope, "DeploymentOptionSection")
    if section is None:
        return None
    configurations = _children(section, "Configuration")
    for configuration in configurations:
        if (_attr(configuration, "default") or "").lower() == "true":
            return _attr(configuration, "id")
    return _attr(configurations[0], "id") if configurations else None


def _hardware_items(system, configuration: str | None, where: str) -> tuple:
    section = _child(system, "VirtualHardwareSection")
    if section is None:
        raise DescriptorError(
            "OVF %s: the VirtualSystem has no VirtualHardwareSection" % where,
            "re-export the VM; the descriptor is incomplete",
        )
    items = []
    for element in section:
        if _local(element.tag) not in ("Item", "StorageItem", "EthernetPortItem"):
            continue
        wanted_by = _attr(element, "configuration")
        if wanted_by and configuration and configuration not in wanted_by.split():
            continue
        items.append(element)
    return section, items


def _hardware_config(section, where: str) -> tuple[str, bool, dict]:
    firmware = "bios"
    secure_boot = False
    extra = {}
    for element in section:
        if _local(element.tag) not in ("Config", "ExtraConfig"):
            continue
        key = _attr(element, "key")
        value = _attr(element, "value") or ""
        extra[key] = value
        if key == "firmware":
            if value.lower() == "efi":
                firmware = "uefi"
            elif value.lower() == "bios":
                firmware = "bios"
            else:
                raise DescriptorError(
                    "OVF %s: unknown firmware %r in vmw:Config key=firmware; expected efi or bios" % (where, value),
                    'set vmw:value="efi" or vmw:value="bios" in the descriptor and regenerate the manifest',
                )
        elif key in ("bootOptions.efiSecureBootEnabled", "uefi.secureBoot.enabled"):
            secure_boot = value.lower() == "true"
    return firmware, secure_boot, extra


def _virtualbox_firmware(system) -> str | None:
    for element in system.iter():
        if _local(element.tag) == "Firmware" and element.get("type"):
            return "uefi" if "efi" in element.get("type").lower() else "bios"
    return None


def _controller_kind(resource_type: int, subtype: str) -> str | None:
    subtype = subtype.lower()
    if "nvme" in subtype:
        return "nvme"
    if resource_type == RESOURCE_IDE:
        return "ide"
    if resource_type == RESOURCE_SCSI:
        return "scsi"
    if resource_type == RESOURCE_OTHER_STORAGE:
        return "virtio" if "virtio" in subtype else "sata"
    return None


def _mac(value: str | None) -> str | None:
    if not value or not _MAC.fullmatch(value):
        return None
    digits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _guest_os(system) -> dict:
    section = _child(system, "OperatingSystemSection")
    if section is None:
        return {"id": "", "description": ""}
    os_type = section.get("{%s}osType" % VMW_NAMESPACE) or ""
    description = _child_text(section, "Description") or ""
    return {"id": os_type.strip() or (_attr(section, "id") or ""), "description": description}


def _annotation(system) -> str:
    section = _child(system, "AnnotationSection")
    if section is None:
        return ""
    return _child_text(section, "Annotation") or ""


def parse_ovf(data: bytes, where: str) -> dict:
    """Parse descriptor bytes into a dict (see module docstring); raises SourceError subclasses.

    Keys: name, files ({file id: {href, size, compression}}), disks (list in controller order:
    id, file_id, capacity_bytes, populated_bytes, format_url, controller, unit), vcpus,
    cores_per_socket, memory_mib, firmware, secure_boot, guest_os ({id, description}), nics,
    annotation, vmware_config ({key: value} of vmw:Config/ExtraConfig).
    """
    envelope = _parse_xml(data, where)
    _require_ovf_envelope(envelope, where)
    files = _parse_references(envelope, where)
    declared_disks = _parse_disks(envelope, files, where)
    system = _virtual_system(envelope, where)
    section, items = _hardware_items(system, _default_configuration(envelope), where)
    firmware, secure_boot, vmware_config = _hardware_config(section, where)
    if "firmware" not in vmware_config:
        firmware = _virtualbox_firmware(system) or firmware
    hardware = _read_hardware_items(items, where)
    return {
        "name": _child_text(system, "Name") or _attr(system, "id") or "",
        "files": files,
        "disks": _place_disks(hardware["disk_items"], hardware["controllers"], declared_disks, where),
        "vcpus": hardware["vcpus"],
        "cores_per_socket": hardware["cores_per_socket"],
        "memory_mib": hardware["memory_mib"],
        "firmware": firmware,
        "secure_boot": secure_boot,
        "guest_os": _guest_os(system),
        "nics": hardware["nics"],
        "annotation": _annotation(system),
        "vmware_config": vmware_config,
    }


def _require_ovf_envelope(envelope, where: str) -> None:
    namespace = envelope.tag[1:].split("}", 1)[0] if envelope.tag.startswith("{") else ""
    if _local(envelope.tag) != "Envelope" or namespace not in OVF_NAMESPACES:
        raise DescriptorError(
            "%s is not an OVF descriptor: the root element is %r, expected Envelope in the OVF 1.x or 2.x namespace"
            % (where, envelope.tag),
            "point `path` at the VM's .ovf or .ova as exported by ovftool/vSphere/VirtualBox",
        )


def _read_hardware_items(items: list, where: str) -> dict:
    """CPU and memory, plus controllers ({InstanceID: (order, kind)}), disk items and NICs in document order."""
    hardware = {"vcpus": None, "cores_per_socket": 1, "memory_mib": None, "controllers": {}, "disk_items": [],
                "nics": []}
    controllers = hardware["controllers"]
    for element in items:
        resource_type = _int(_child_text(element, "ResourceType"), "rasd:ResourceType", where)
        subtype = _child_text(element, "ResourceSubType") or ""
        if resource_type == RESOURCE_CPU:
            hardware["vcpus"] = _int(_child_text(element, "VirtualQuantity"), "number of virtual CPUs", where, 1)
            cores = _child_text(element, "CoresPerSocket")
            if cores is not None:
                hardware["cores_per_socket"] = _int(cores, "vmw:CoresPerSocket", where, 1)
        elif resource_type == RESOURCE_MEMORY:
            hardware["memory_mib"] = _memory_mib(element, where)
        elif _controller_kind(resource_type, subtype) and resource_type != RESOURCE_DISK:
            instance = _child_text(element, "InstanceID") or ""
            controllers[instance] = (len(controllers), _controller_kind(resource_type, subtype))
        elif resource_type == RESOURCE_DISK:
            hardware["disk_items"].append(element)
        elif resource_type == RESOURCE_NIC:
            hardware["nics"].append({
                "mac": _mac(_child_text(element, "Address")),
                "network": _child_text(element, "Connection") or "",
                "model": subtype.lower() or None,
            })
    _require_cpu_and_memory(hardware, where)
    return hardware


def _memory_mib(element, where: str) -> int:
    quantity = _int(_child_text(element, "VirtualQuantity"), "memory VirtualQuantity", where, 1)
    unit = allocation_units_bytes(_child_text(element, "AllocationUnits"), where, "memory AllocationUnits")
    return math.ceil(quantity * unit / 1024**2)


def _require_cpu_and_memory(hardware: dict, where: str) -> None:
    if hardware["vcpus"] is None:
        raise DescriptorError(
            "OVF %s: no CPU item (rasd:ResourceType 3) in VirtualHardwareSection" % where,
            "re-export the VM; the descriptor is incomplete",
        )
    if hardware["memory_mib"] is None:
        raise DescriptorError(
            "OVF %s: no memory item (rasd:ResourceType 4) in VirtualHardwareSection" % where,
            "re-export the VM; the descriptor is incomplete",
        )


def _place_disks(disk_items: list, controllers: dict, declared_disks: dict, where: str) -> list:
    """The DiskSection disks with the controller and unit their items give, in controller then unit order.

    Every declared disk must be attached exactly once, to a storage controller item.
    """
    attached = set()
    placed = []
    per_controller_count: dict[str, int] = {}
    for element in disk_items:
        disk_id = _attached_disk_id(element, declared_disks, where)
        if disk_id in attached:
            raise DescriptorError(
                "OVF %s: disk %r is attached twice in VirtualHardwareSection" % (where, disk_id),
                "attach each disk once",
            )
        parent = _child_text(element, "Parent")
        if parent not in controllers:
            raise DescriptorError(
                "OVF %s: disk %r hangs off controller InstanceID %r, which is not an IDE/SCSI/SATA/NVMe controller item"
                % (where, disk_id, parent),
                "fix rasd:Parent of the disk item",
            )
        order, kind = controllers[parent]
        address = _child_text(element, "AddressOnParent")
        if address is None:
            unit = per_controller_count.get(parent, 0)
        else:
            unit = _int(address, "AddressOnParent of disk %r" % disk_id, where, 0)
        per_controller_count[parent] = per_controller_count.get(parent, 0) + 1
        attached.add(disk_id)
        placed.append((order, unit, dict(declared_disks[disk_id], controller=kind, unit=unit)))
    unattached = sorted(set(declared_disks) - attached)
    if unattached:
        raise DescriptorError(
            "OVF %s: disk(s) %s are declared in DiskSection but no hardware item attaches them"
            % (where, listing(unattached)),
            "attach the disk to a controller in VirtualHardwareSection or remove it from DiskSection",
        )
    placed.sort(key=lambda entry: (entry[0], entry[1]))
    return [disk for _order, _unit, disk in placed]


def _attached_disk_id(element, declared_disks: dict, where: str) -> str:
    """The DiskSection id a disk item's rasd:HostResource (ovf:/disk/ID) names."""
    host = _child_text(element, "HostResource") or ""
    match = _HOST_RESOURCE_DISK.match(host)
    if not match:
        if _HOST_RESOURCE_FILE.match(host):
            raise UnsupportedSourceError(
                "OVF %s: a disk item points straight at a file (%r) instead of a DiskSection disk" % (where, host),
                "re-export with ovftool, which writes ovf:/disk/ID references",
            )
        raise DescriptorError(
            "OVF %s: disk item %r has HostResource %r, expected ovf:/disk/ID"
            % (where, _child_text(element, "ElementName"), host),
            "fix rasd:HostResource in the descriptor",
        )
    disk_id = match.group(1)
    if disk_id not in declared_disks:
        raise DescriptorError(
            "OVF %s: a disk item refers to disk %r, which DiskSection does not declare" % (where, disk_id),
            "fix rasd:HostResource or add the Disk to DiskSection",
        )
    return disk_id


def is_vmdk_format_url(url: str) -> bool:
    """True when an ovf:format URL names VMDK (VMware and VirtualBox both use the vmware.com URL)."""
    return bool(_VMDK_FORMAT_URL.search(url or ""))


def subformat_from_url(url: str) -> str | None:
    """VMDK createType implied by the ovf:format URL fragment (#streamOptimized, #sparse)."""
    fragment = (url or "").rpartition("#")[2].lower()
    known = {"streamoptimized": "streamOptimized", "sparse": "monolithicSparse", "monolithicsparse": "monolithicSparse"}
    return known.get(fragment)
