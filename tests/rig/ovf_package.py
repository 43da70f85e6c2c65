"""OVF 1.0 descriptors, VMDKs, OVA archives and OVF folders in the dialect VMware ovftool writes.

The knobs that make *bad* packages (lying sizes, wrong digests, extra or reordered members) are
plain arguments so tests can build each failure case with one call.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from xml.sax.saxutils import escape, quoteattr

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW_NS = "http://www.vmware.com/schema/ovf"
CIM_NS = "http://schemas.dmtf.org/wbem/wscim/1/common"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

VMDK_FORMAT_URL = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
VMDK_SUBFORMATS = ("monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse")

# (ResourceType, ResourceSubType, ElementName prefix) as vCenter writes them.
CONTROLLERS = {
    "scsi": ("6", "lsilogic", "SCSI controller"),
    "ide": ("5", None, "IDE"),
    "sata": ("20", "vmware.sata.ahci", "SATA controller"),
}
NIC_SUBTYPES = {"vmxnet3": "VmxNet3", "e1000": "E1000", "e1000e": "E1000e", "vmxnet2": "VmxNet2"}
# CIM_OperatingSystem ids ovftool pairs with common vmw:osType values; anything else is "Other" (1).
OS_CIM_IDS = {
    "debian10_64Guest": "96",
    "debian11_64Guest": "96",
    "debian12_64Guest": "96",
    "ubuntu64Guest": "94",
    "rhel8_64Guest": "80",
    "rhel9_64Guest": "80",
    "otherLinux64Guest": "101",
    "other3xLinux64Guest": "101",
    "other4xLinux64Guest": "101",
    "other5xLinux64Guest": "101",
}
CAPACITY_UNITS = {"byte": 1, "byte * 2^10": 1 << 10, "byte * 2^20": 1 << 20, "byte * 2^30": 1 << 30}
DIGESTS = {"sha256": ("SHA256", hashlib.sha256), "sha1": ("SHA1", hashlib.sha1),
           "sha384": ("SHA384", hashlib.sha384), "sha512": ("SHA512", hashlib.sha512), "md5": ("MD5", hashlib.md5)}


class PackagingError(RuntimeError):
    """A package could not be built from the given inputs; the message names the fix."""


# --- VMDK -----------------------------------------------------------------------------------------


def to_vmdk(raw_path, out_path, subformat="streamOptimized", *, adapter_type="lsilogic"):
    """Convert a raw image to a VMDK with qemu-img and return ``out_path``."""
    if subformat not in VMDK_SUBFORMATS:
        raise PackagingError(f"subformat {subformat!r} is not one of {', '.join(VMDK_SUBFORMATS)}")
    tmp = f"{out_path}.partial"
    options = f"subformat={subformat},adapter_type={adapter_type}"
    try:
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", options, raw_path, tmp],
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise PackagingError(f"qemu-img convert of {raw_path} to vmdk failed: {exc.stderr.strip()}") from exc
    os.replace(tmp, out_path)
    return out_path


def image_info(path):
    """qemu-img's JSON description of an image (format, virtual-size, ...)."""
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", path], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def populated_bytes(raw_path):
    """Bytes of ``raw_path`` that hold data (not holes), the figure ovftool puts in populatedSize."""
    out = subprocess.run(
        ["qemu-img", "map", "--output=json", "-f", "raw", raw_path], check=True, capture_output=True, text=True
    ).stdout
    return sum(extent["length"] for extent in json.loads(out) if extent.get("data"))


def disk_entry(vmdk_path, *, disk_id, controller="scsi", unit=0, raw_path=None, **extra):
    """A ``disks`` item for :func:`write_ovf` measured from the real files."""
    entry = {
        "file": os.path.basename(vmdk_path),
        "disk_id": disk_id,
        "capacity_bytes": image_info(vmdk_path)["virtual-size"],
        "size": os.path.getsize(vmdk_path),
        "controller": controller,
        "unit": unit,
    }
    if raw_path is not None:
        entry["populated_bytes"] = populated_bytes(raw_path)
    entry.update(extra)
    return entry


# --- OVF descriptor -------------------------------------------------------------------------------


class _Node:
    def __init__(self, tag, attrs=None, text=None, children=None):
        self.tag = tag
        self.attrs = attrs or {}
        self.text = text
        self.children = children or []

    def add(self, tag, attrs=None, text=None):
        child = _Node(tag, attrs, text)
        self.children.append(child)
        return child

    def render(self, depth=0):
        pad = "  " * depth
        attrs = "".join(f" {key}={quoteattr(str(value))}" for key, value in self.attrs.items())
        if self.text is None and not self.children:
            return f"{pad}<{self.tag}{attrs}/>\n"
        if not self.children:
            return f"{pad}<{self.tag}{attrs}>{escape(str(self.text))}</{self.tag}>\n"
        inner = "".join(child.render(depth + 1) for child in self.children)
        return f"{pad}<{self.tag}{attrs}>\n{inner}{pad}</{self.tag}>\n"


def _item(parent, fields, configs=()):
    # rasd elements must appear in the schema's alphabetical order.
    item = parent.add("Item")
    for key in sorted(fields):
        if fields[key] is not None:
            item.add(f"rasd:{key}", text=fields[key])
    for key, value in configs:
        item.add("vmw:Config", {"ovf:required": "false", "vmw:key": key, "vmw:value": value})
    return item


def _capacity(disk):
    units = disk.get("capacity_allocation_units", "byte")
    if units not in CAPACITY_UNITS:
        raise PackagingError(f"capacity_allocation_units {units!r} is not one of {', '.join(CAPACITY_UNITS)}")
    return str(disk["capacity_bytes"] // CAPACITY_UNITS[units]), units


def render_ovf(
    *, name, vcpus, memory_mib, firmware, os_type, disks, nics, annotation="",
    cores_per_socket=1, secure_boot=False, os_cim_id=None, os_description=None, vmx_version="vmx-13",
):
    """The OVF descriptor text; see :func:`write_ovf` for the arguments."""
    firmware = {"uefi": "efi"}.get(firmware, firmware)
    if firmware not in ("bios", "efi"):
        raise PackagingError(f"firmware {firmware!r} is not supported: use 'bios' or 'efi' (or 'uefi')")
    envelope = _Node("Envelope", {
        "vmw:buildId": "build-v2kvm-rig",
        "xmlns": OVF_NS,
        "xmlns:cim": CIM_NS,
        "xmlns:ovf": OVF_NS,
        "xmlns:rasd": RASD_NS,
        "xmlns:vmw": VMW_NS,
        "xmlns:vssd": VSSD_NS,
        "xmlns:xsi": XSI_NS,
    })

    references = envelope.add("References")
    disk_section = envelope.add("DiskSection")
    disk_section.add("Info", text="Virtual disk information")
    for index, disk in enumerate(disks, start=1):
        file_attrs = {"ovf:href": disk["file"], "ovf:id": f"file{index}", "ovf:size": str(disk["size"])}
        if disk.get("compression"):
            file_attrs["ovf:compression"] = disk["compression"]
        references.add("File", file_attrs)
        capacity, units = _capacity(disk)
        disk_attrs = {
            "ovf:capacity": capacity,
            "ovf:capacityAllocationUnits": units,
            "ovf:diskId": disk["disk_id"],
            "ovf:fileRef": f"file{index}",
            "ovf:format": disk.get("format", VMDK_FORMAT_URL),
        }
        if disk.get("populated_bytes") is not None:
            disk_attrs["ovf:populatedSize"] = str(disk["populated_bytes"])
        disk_section.add("Disk", disk_attrs)

    network_section = envelope.add("NetworkSection")
    network_section.add("Info", text="The list of logical networks")
    for network in dict.fromkeys(nic["network"] for nic in nics):
        net = network_section.add("Network", {"ovf:name": network})
        net.add("Description", text=f"The {network} network")

    system = envelope.add("VirtualSystem", {"ovf:id": name})
    system.add("Info", text="A virtual machine")
    system.add("Name", text=name)
    os_section = system.add("OperatingSystemSection", {
        "ovf:id": os_cim_id or OS_CIM_IDS.get(os_type, "1"),
        "vmw:osType": os_type,
    })
    os_section.add("Info", text="The kind of installed guest operating system")
    os_section.add("Description", text=os_description or os_type)

    hardware = system.add("VirtualHardwareSection")
    hardware.add("Info", text="Virtual hardware requirements")
    vssd = hardware.add("System")
    vssd.add("vssd:ElementName", text="Virtual Hardware Family")
    vssd.add("vssd:InstanceID", text="0")
    vssd.add("vssd:VirtualSystemIdentifier", text=name)
    vssd.add("vssd:VirtualSystemType", text=vmx_version)

    instance = iter(range(1, 10_000))
    cpu = _item(hardware, {
        "AllocationUnits": "hertz * 10^6",
        "Description": "Number of Virtual CPUs",
        "ElementName": f"{vcpus} virtual CPU(s)",
        "InstanceID": str(next(instance)),
        "ResourceType": "3",
        "VirtualQuantity": str(vcpus),
    })
    cpu.add("vmw:CoresPerSocket", {"ovf:required": "false"}, text=str(cores_per_socket))
    _item(hardware, {
        "AllocationUnits": "byte * 2^20",
        "Description": "Memory Size",
        "ElementName": f"{memory_mib}MB of memory",
        "InstanceID": str(next(instance)),
        "ResourceType": "4",
        "VirtualQuantity": str(memory_mib),
    })

    # One controller per (kind, bus) the disks use, in order of first use.
    controller_ids = {}
    for disk in disks:
        kind = disk["controller"]
        if kind not in CONTROLLERS:
            raise PackagingError(
                f"controller {kind!r} of disk {disk['disk_id']} is not one of {', '.join(CONTROLLERS)}"
            )
        bus = int(disk.get("controller_bus", 0))
        if (kind, bus) in controller_ids:
            continue
        resource_type, subtype, label = CONTROLLERS[kind]
        subtype = disk.get("controller_model", subtype)
        controller_ids[(kind, bus)] = str(next(instance))
        _item(hardware, {
            "Address": str(bus),
            "Description": f"{label} Controller" if kind == "ide" else label,
            "ElementName": f"{label} {bus}",
            "InstanceID": controller_ids[(kind, bus)],
            "ResourceSubType": subtype,
            "ResourceType": resource_type,
        })

    for number, disk in enumerate(disks, start=1):
        parent = controller_ids[(disk["controller"], int(disk.get("controller_bus", 0)))]
        _item(hardware, {
            "AddressOnParent": str(disk["unit"]),
            "ElementName": f"Hard disk {number}",
            "HostResource": f"ovf:/disk/{disk['disk_id']}",
            "InstanceID": str(next(instance)),
            "Parent": parent,
            "ResourceType": "17",
        }, configs=[("backing.writeThrough", "false")])

    for number, nic in enumerate(nics, start=1):
        model = nic.get("model", "vmxnet3")
        subtype = NIC_SUBTYPES.get(model.lower(), model)
        _item(hardware, {
            "Address": nic.get("mac"),
            "AddressOnParent": str(6 + number),
            "AutomaticAllocation": "true",
            "Connection": nic["network"],
            "Description": f'{subtype} ethernet adapter on "{nic["network"]}"',
            "ElementName": f"Network adapter {number}",
            "InstanceID": str(next(instance)),
            "ResourceSubType": subtype,
            "ResourceType": "10",
        }, configs=[("wakeOnLanEnabled", "true")])

    if firmware == "efi":
        hardware.add("vmw:Config", {"ovf:required": "false", "vmw:key": "firmware", "vmw:value": "efi"})
        if secure_boot:
            hardware.add("vmw:Config", {"ovf:required": "false", "vmw:key": "uefi.secureBoot.enabled",
                                        "vmw:value": "true"})
    if annotation:
        section = system.add("AnnotationSection", {"ovf:required": "false"})
        section.add("Info", text="A human-readable annotation")
        section.add("Annotation", text=annotation)

    return '<?xml version="1.0" encoding="UTF-8"?>\n' + envelope.render()


def write_ovf(out_path, *, name, vcpus, memory_mib, firmware, os_type, disks, nics, annotation="", **options):
    """Write an OVF 1.0 descriptor and return ``out_path``.

    disks: dicts with file, disk_id, capacity_bytes, size (file bytes), controller
    ("scsi" | "ide" | "sata"), unit, and optionally populated_bytes, controller_bus (default 0),
    controller_model, compression, format, capacity_allocation_units (default "byte").
    nics: dicts with mac, network, model (vmxnet3 | e1000 | e1000e).
    options: cores_per_socket, secure_boot, os_cim_id, os_description, vmx_version.
    """
    text = render_ovf(name=name, vcpus=vcpus, memory_mib=memory_mib, firmware=firmware, os_type=os_type,
                      disks=disks, nics=nics, annotation=annotation, **options)
    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return out_path


# --- manifests, OVA and OVF folder ---------------------------------------------------------------


def file_digest(path, algorithm="sha256"):
    """Hex digest of a file with ``algorithm`` (a key of DIGESTS; md5 only to build a refused manifest)."""
    digest = DIGESTS[algorithm][1]()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_text(paths, *, digest="sha256", manifest_override=None):
    """``.mf`` text: one ``SHA256(name)= hex`` line per file.

    manifest_override maps a file name to the hex to write instead (a wrong digest), or to None
    to leave that file's line out; names not among ``paths`` are added as extra lines.
    """
    if digest not in DIGESTS:
        raise PackagingError(f"digest {digest!r} is not one of {', '.join(DIGESTS)}")
    label = DIGESTS[digest][0]
    override = dict(manifest_override or {})
    lines = []
    for path in paths:
        name = os.path.basename(path)
        value = override.pop(name) if name in override else file_digest(path, digest)
        if value is not None:
            lines.append(f"{label}({name})= {value}\n")
    for name, value in override.items():
        if value is not None:
            lines.append(f"{label}({name})= {value}\n")
    return "".join(lines)


def _manifest_name(ovf_path):
    return os.path.splitext(os.path.basename(ovf_path))[0] + ".mf"


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar, path, name):
    info = tar.gettarinfo(path, arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.mtime = 1_700_000_000
    with open(path, "rb") as handle:
        tar.addfile(info, handle)


def make_ova(out_ova, ovf_path, disk_paths, *, digest="sha256", manifest_override=None,
             extra_members=None, tar_format="ustar", order=None):
    """Write an OVA: the .ovf first, then the disks, then ``<name>.mf``; return ``out_ova``.

    digest None leaves the manifest out. extra_members ({name: bytes}) are appended after the
    manifest. order, when given, is the list of member names in the order to write them (for
    packages whose .ovf is not first); members it leaves out are not written.
    """
    formats = {"ustar": tarfile.USTAR_FORMAT, "pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}
    if tar_format not in formats:
        raise PackagingError(f"tar_format {tar_format!r} is not one of {', '.join(formats)}")
    members = [(os.path.basename(ovf_path), ("file", ovf_path))]
    members += [(os.path.basename(path), ("file", path)) for path in disk_paths]
    if digest is not None:
        text = manifest_text([ovf_path, *disk_paths], digest=digest, manifest_override=manifest_override)
        members.append((_manifest_name(ovf_path), ("bytes", text.encode())))
    members += [(name, ("bytes", data)) for name, data in (extra_members or {}).items()]
    if order is not None:
        by_name = dict(members)
        missing = [name for name in order if name not in by_name]
        if missing:
            raise PackagingError(f"order names unknown members {missing}: use names of {list(by_name)}")
        members = [(name, by_name[name]) for name in order]

    tmp = f"{out_ova}.partial"
    with tarfile.open(tmp, "w", format=formats[tar_format]) as tar:
        for name, (kind, source) in members:
            if kind == "file":
                _add_file(tar, source, name)
            else:
                _add_bytes(tar, name, source)
    os.replace(tmp, out_ova)
    return out_ova


def make_ovf_folder(outdir, ovf_path, disk_paths, *, digest="sha256", manifest_override=None, extra_files=None):
    """Copy the .ovf and disks into ``outdir`` with a ``.mf`` beside them; return the .ovf path there."""
    os.makedirs(outdir, exist_ok=True)
    copied = []
    for path in [ovf_path, *disk_paths]:
        target = os.path.join(outdir, os.path.basename(path))
        if os.path.abspath(path) != os.path.abspath(target):
            shutil.copyfile(path, target)
        copied.append(target)
    if digest is not None:
        text = manifest_text(copied, digest=digest, manifest_override=manifest_override)
        with open(os.path.join(outdir, _manifest_name(ovf_path)), "w", encoding="ascii") as handle:
            handle.write(text)
    for name, data in (extra_files or {}).items():
        with open(os.path.join(outdir, name), "wb") as handle:
            handle.write(data)
    return copied[0]
