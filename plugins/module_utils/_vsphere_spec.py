# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere VMs as normalized VM specs (docs/vm-spec.md, ``source.type: vsphere``).

``collect`` reads every VM and the inventory tree around it with a few PropertyCollector
round trips (fast for thousands of VMs); ``build_spec`` is a pure function of those properties,
so it is unit-testable with pyVmomi data objects and no server.
"""

from __future__ import annotations

import difflib
import posixpath
import re

from ansible_collections.v2kvm.migrate.plugins.module_utils._vm_spec import (
    check_vm_name,
    guest_family,
    name_source_vm,
    validate_spec,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import VsphereError, call, vim, vmodl
from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import listing

VM_PROPERTIES = ("name", "parent", "config", "runtime.powerState", "runtime.host", "snapshot",
                 "guest.toolsRunningStatus", "customValue", "tag")
_ENTITY_TYPES = ("Folder", "Datacenter", "ClusterComputeResource", "ComputeResource", "HostSystem")
_DATASTORE_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s*/?(?P<rel>.*)$")
_PAGE = 500


def parse_datastore_path(text):
    """'[ds] dir/disk.vmdk' -> ('ds', 'dir/disk.vmdk'); raises VsphereError when it is not one."""
    match = _DATASTORE_PATH.match(text or "")
    if not match:
        raise VsphereError("%r is not a datastore path like '[datastore1] vm/vm.vmdk'" % (text,),
                           "report this VM's disk backing; only file-backed disks can be migrated")
    return match.group("ds"), match.group("rel")


# --------------------------------------------------------------------------- reading vCenter


def _retrieve(conn, obj_type_names, paths_by_type):
    content = conn.content
    view = call(conn, "create a container view", content.viewManager.CreateContainerView,
                content.rootFolder, [getattr(vim, name) for name in obj_type_names], True)
    try:
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                pc.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
            propSet=[pc.PropertySpec(type=getattr(vim, name), pathSet=list(paths)) for name, paths in
                     paths_by_type.items()])
        collector = content.propertyCollector
        result = call(conn, "read the inventory", collector.RetrievePropertiesEx, [spec],
                      pc.RetrieveOptions(maxObjects=_PAGE))
        found = []
        while result:
            found.extend(result.objects)
            if not result.token:
                break
            result = call(conn, "read the inventory", collector.ContinueRetrievePropertiesEx, result.token)
        return [(obj.obj, {prop.name: prop.val for prop in obj.propSet}) for obj in found]
    finally:
        try:
            view.Destroy()
        except Exception:  # noqa: S110 - a view dies with the session anyway
            pass


class Tree:
    """Names and parents of folders, datacenters, clusters and hosts, to place each VM."""

    def __init__(self, entities):
        self.entities = {obj._moId: (obj, props) for obj, props in entities}

    def chain(self, ref):
        """[(type, name), ...] from the root down to ``ref`` (excluded)."""
        out = []
        seen = set()
        while ref is not None and ref._moId in self.entities and ref._moId not in seen:
            seen.add(ref._moId)
            obj, props = self.entities[ref._moId]
            out.append((type(obj).__name__.split(".")[-1], props.get("name")))
            ref = props.get("parent")
        return list(reversed(out))

    def name(self, ref):
        entry = self.entities.get(ref._moId) if ref is not None else None
        return entry[1].get("name") if entry else None

    def parent(self, ref):
        entry = self.entities.get(ref._moId) if ref is not None else None
        return entry[1].get("parent") if entry else None

    def kind(self, ref):
        entry = self.entities.get(ref._moId) if ref is not None else None
        return type(entry[0]).__name__.split(".")[-1] if entry else None


def collect(conn):
    """[(vm object, properties)], Tree, {portgroup key: name} for every VM of the vCenter."""
    entities = _retrieve(conn, _ENTITY_TYPES, {name: ("name", "parent") for name in _ENTITY_TYPES})
    vms = _retrieve(conn, ("VirtualMachine",), {"VirtualMachine": VM_PROPERTIES})
    try:
        groups = _retrieve(conn, ("DistributedVirtualPortgroup",),
                           {"DistributedVirtualPortgroup": ("key", "name")})
    except VsphereError:  # ESXi without a distributed switch
        groups = []
    return vms, Tree(entities), {props.get("key"): props.get("name") for unused, props in groups}


def custom_field_names(conn):
    """{key: name} of the custom attribute definitions (vCenter; a standalone ESXi host may have none)."""
    manager = conn.content.customFieldsManager
    if manager is None:
        return {}
    return {field.key: field.name for field in call(conn, "read the custom attribute definitions",
                                                    lambda: manager.field) or []}


def attributes_and_tags(vm_props, field_names):
    """({attribute name: value}, [tag key]) of a VM: its custom attributes (``customValue``) and the tags the
    SOAP API shows (``ManagedEntity.tag``; the tags of the vSphere Client live in the vAPI service instead)."""
    attributes = {}
    for value in vm_props.get("customValue") or []:
        name = field_names.get(value.key)
        if name is not None and getattr(value, "value", None) is not None:
            attributes[name] = value.value
    tags = sorted({tag.key for tag in vm_props.get("tag") or [] if tag.key})
    return attributes, tags


def placement(tree, vm_props):
    """datacenter, folder (below the datacenter's vm folder), cluster, host and inventory path of a VM."""
    chain = tree.chain(vm_props.get("parent"))
    datacenter = None
    folder_parts = []
    path_parts = []
    for kind, name in chain:  # the container view never holds the root folder itself
        path_parts.append(name)
        if kind == "Datacenter":
            datacenter = name
            folder_parts = []
        elif datacenter is not None:
            folder_parts.append(name)
    path_parts.append(vm_props.get("name"))
    host_ref = vm_props.get("runtime.host")
    parent = tree.parent(host_ref)
    cluster = tree.name(parent) if tree.kind(parent) == "ClusterComputeResource" else None
    return {
        "datacenter": datacenter,
        "folder": "/".join(folder_parts[1:]),  # first part is the datacenter's "vm" folder
        "cluster": cluster,
        "host": tree.name(host_ref),
        "path": "/" + "/".join(path_parts),
    }


# --------------------------------------------------------------------------- building the spec


def _controller_kind(controller):
    if isinstance(controller, vim.vm.device.VirtualSCSIController):
        return "scsi"
    if isinstance(controller, vim.vm.device.VirtualIDEController):
        return "ide"
    if isinstance(controller, vim.vm.device.VirtualNVMEController):
        return "nvme"
    if isinstance(controller, vim.vm.device.VirtualSATAController):
        return "sata"
    return "scsi"


def _subformat(backing):
    if isinstance(backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo):
        return "vmfsPassthroughRawDeviceMap" if backing.compatibilityMode == "physicalMode" else "vmfsRawDeviceMap"
    if isinstance(backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo):
        return "vmfs"
    if isinstance(backing, vim.vm.device.VirtualDisk.SeSparseBackingInfo):
        return "seSparse"
    return "vmfsSparse"


def _disks(devices, boot_keys):
    by_key = {device.key: device for device in devices}
    disks = []
    for device in devices:
        if not isinstance(device, vim.vm.device.VirtualDisk):
            continue
        backing = device.backing
        file_name = getattr(backing, "fileName", None)
        if not file_name:
            raise VsphereError("disk %s has no file backing (%s)" % (device.key, type(backing).__name__),
                               "only file-backed disks can be migrated; detach this disk or copy it first")
        datastore, rel = parse_datastore_path(file_name)
        controller = by_key.get(device.controllerKey)
        kind = _controller_kind(controller)
        bus = getattr(controller, "busNumber", 0) or 0
        capacity = device.capacityInBytes or (device.capacityInKB or 0) * 1024
        rdm = getattr(backing, "compatibilityMode", None) if isinstance(
            backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo) else None
        disks.append({
            "id": "%s%d-%d" % (kind, bus, device.unitNumber or 0),
            "file": posixpath.basename(rel),
            "path": "/vmfs/volumes/%s/%s" % (datastore, rel),
            "member": None,
            "offset": 0,
            "size": capacity,
            "format": "vmdk",
            "subformat": _subformat(backing),
            "compression": None,
            "capacity_bytes": capacity,
            "populated_bytes": None,
            "controller": kind,
            "unit": device.unitNumber or 0,
            "sha256": None,
            "sha1": None,
            # vSphere-only keys (docs/vsphere.md): what export, warm sync and pre-flight need.
            "key": device.key,
            "datastore": datastore,
            "datastore_path": file_name,
            "bus": bus,
            "mode": getattr(backing, "diskMode", None),
            "sharing": getattr(backing, "sharing", None),
            "rdm": rdm,
            "thin": bool(getattr(backing, "thinProvisioned", False)),
            "change_id": getattr(backing, "changeId", None) or None,
        })
    order = {key: index for index, key in enumerate(boot_keys)}
    disks.sort(key=lambda d: (order.get(d["key"], len(order)), ("scsi", "sata", "nvme", "ide").index(
        d["controller"]) if d["controller"] in ("scsi", "sata", "nvme", "ide") else 9, d["bus"], d["unit"]))
    return disks


def _nics(devices, portgroups):
    nics = []
    for device in devices:
        if not isinstance(device, vim.vm.device.VirtualEthernetCard):
            continue
        backing = device.backing
        if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            key = backing.port.portgroupKey if backing.port else None
            network = portgroups.get(key) or key or ""
        else:
            network = getattr(backing, "deviceName", None) or ""
        model = type(device).__name__.split(".")[-1]
        model = model[len("Virtual"):] if model.startswith("Virtual") else model
        nics.append({"mac": (device.macAddress or "").lower() or None, "network": network, "model": model.lower()})
    return nics


def _devices_summary(devices):
    tpm = getattr(vim.vm.device, "VirtualTPM", None)
    return {
        "tpm": any((tpm is not None and isinstance(d, tpm)) for d in devices),
        "pci_passthrough": sum(isinstance(d, vim.vm.device.VirtualPCIPassthrough) for d in devices),
        "usb_controllers": sum(isinstance(d, (vim.vm.device.VirtualUSBController,
                                              vim.vm.device.VirtualUSBXHCIController)) for d in devices),
    }


def _snapshot_count(snapshot_info):
    count = 0
    stack = list(getattr(snapshot_info, "rootSnapshotList", None) or [])
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node.childSnapshotList or [])
    return count


def build_spec(vm_ref, props, place, vcenter, name=None, portgroups=None):
    """The VM spec of one VM from its collected properties; raises SpecError/VsphereError."""
    config = props.get("config")
    if config is None:
        raise VsphereError("VM %s has no readable configuration (inaccessible or orphaned)" % props.get("name"),
                           "fix the VM in vCenter (re-register it) before migrating it")
    if name:
        vm_name, original_name = check_vm_name(name, "name override"), None
    else:
        vm_name, original_name = name_source_vm(props.get("name"), "vCenter VM %s" % vm_ref._moId)
    hw = config.hardware
    devices = list(hw.device or [])
    boot_keys = [getattr(item, "deviceKey", None) for item in (getattr(config.bootOptions, "bootOrder", None) or [])
                 if isinstance(item, vim.vm.BootOptions.BootableDiskDevice)]
    firmware = "uefi" if (config.firmware or "bios") == "efi" else "bios"
    vcpus = hw.numCPU or 1
    cores = hw.numCoresPerSocket or 1
    spec = {
        "name": vm_name,
        "original_name": original_name,
        "source": {
            "type": "vsphere",
            "path": place["path"],
            "manifest": None,
            "vcenter": vcenter,
            "moid": vm_ref._moId,
            "instance_uuid": config.instanceUuid,
            "bios_uuid": config.uuid,
            "vm_name": props.get("name"),
            "datacenter": place["datacenter"],
            "cluster": place["cluster"],
            "host": place["host"],
            "folder": place["folder"],
            "vmx_path": config.files.vmPathName if config.files else None,
            "power_state": str(props.get("runtime.powerState") or "unknown"),
            "tools_running": props.get("guest.toolsRunningStatus") == "guestToolsRunning",
            "cbt_enabled": bool(config.changeTrackingEnabled),
            "snapshots": _snapshot_count(props.get("snapshot")),
            "hardware_version": config.version,
            "devices": _devices_summary(devices),
        },
        "vcpus": vcpus,
        "cores_per_socket": cores if vcpus % cores == 0 else 1,
        "memory_mib": hw.memoryMB or 1,
        "firmware": firmware,
        "secure_boot": bool(firmware == "uefi" and getattr(config.bootOptions, "efiSecureBootEnabled", False)),
        "guest_os": {
            "id": config.guestId or "",
            "description": config.guestFullName or "",
            "family": guest_family(config.guestId or "", config.guestFullName or ""),
        },
        "disks": _disks(devices, boot_keys),
        "nics": _nics(devices, portgroups or {}),
        "annotation": config.annotation or "",
    }
    if not spec["disks"]:
        raise VsphereError("VM %s has no disks" % props.get("name"), "attach its disks, or migrate it another way")
    return validate_spec(spec)


# --------------------------------------------------------------------------- finding one VM


def find_vm(conn, name=None, moid=None, uuid=None, datacenter=None, folder=None):
    """(vm object, properties, placement, portgroups) of exactly one VM, or a VsphereError naming the fix."""
    vms, tree, portgroups = collect(conn)
    matches = []
    for ref, props in vms:
        if moid and ref._moId != moid:
            continue
        config = props.get("config")
        known = () if config is None else ((config.instanceUuid or "").lower(), (config.uuid or "").lower())
        if uuid and uuid.lower() not in known:
            continue
        if name and props.get("name") != name:
            continue
        place = placement(tree, props)
        if datacenter and place["datacenter"] != datacenter:
            continue
        if folder and place["folder"].strip("/") != folder.strip("/"):
            continue
        matches.append((ref, props, place))
    wanted = "moid %s" % moid if moid else "uuid %s" % uuid if uuid else "name %r" % name
    if not matches:
        hint = ""
        if name:
            all_names = [props.get("name") or "" for unused, props in vms]
            close = [n for n in all_names if n.lower() == name.lower()] or difflib.get_close_matches(
                name, all_names, n=3)
            hint = " (similar names: %s)" % listing(close) if close else ""
        raise VsphereError("no VM with %s on %s among %d VMs%s%s" % (
            wanted, conn.host, len(vms), " in datacenter %s" % datacenter if datacenter else "", hint),
            "check the name (it is case-sensitive), the datacenter/folder filters and that the account can see it")
    if len(matches) > 1:
        raise VsphereError("%d VMs match %s: %s" % (len(matches), wanted, listing(
            "%s (%s)" % (place["path"], ref._moId) for ref, unused, place in matches)),
            "narrow it down with datacenter, folder or moid")
    ref, props, place = matches[0]
    return ref, props, place, portgroups
