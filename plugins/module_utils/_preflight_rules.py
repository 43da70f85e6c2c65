# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight rules: what in a VM spec stops or complicates its migration, each finding naming the fix.

Pure functions of the spec (docs/vm-spec.md) and a few facts about the target, so one code path
serves vSphere and OVA sources (rules about vSphere-only facts simply find nothing for an OVA).
``run`` is the preflight module's entry: it reads those facts (free space, the target's domain names),
then evaluates.
"""

from __future__ import annotations

import re

from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import free_bytes, needed_bytes
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import connect_for_module
from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import records, same_source

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
# Past this many disks the virtio-blk slots of one PCI bus run out; q35 needs extra root ports.
MAX_EASY_DISKS = 24
UNSUPPORTED_GUESTS = re.compile(r"^(darwin|netware|solaris\d*|os2|dos|win31|win95|win98|winme|winnt|"
                                r"other3xLinux|other24xLinux|vmkernel)", re.IGNORECASE)


def _finding(rule, severity, message, fix, disk=None):
    found = {"rule": rule, "severity": severity, "message": "%s. Fix: %s." % (message.rstrip("."), fix.rstrip("."))}
    if disk is not None:
        found["disk"] = disk
    return found


def _disk_rules(spec, mode):
    out = []
    for disk in spec.get("disks") or []:
        did = disk.get("id")
        if disk.get("rdm"):
            out.append(_finding("rdm", CRITICAL, "disk %s is a raw device mapping (%s); its data is on a LUN, not in a "
                                "file that can be copied" % (did, disk["rdm"]),
                                "migrate the LUN separately (present it to the KVM host) or convert the RDM to a "
                                "virtual disk with Storage vMotion", did))
        mode_text = disk.get("mode") or ""
        if mode_text.startswith("independent"):
            out.append(_finding("independent_disk", CRITICAL if mode == "warm" else WARNING,
                                "disk %s is %s: snapshots skip it, so %s" % (
                                    did, mode_text, "warm sync cannot track it" if mode == "warm"
                                    else "only a powered-off copy of it is consistent"),
                                "switch the disk to dependent (persistent) mode while the VM is off, or use a cold "
                                "migration with the VM powered off", did))
        if disk.get("sharing") == "sharingMultiWriter":
            out.append(_finding("shared_disk", CRITICAL, "disk %s is shared (multi-writer) with other VMs" % did,
                                "migrate the cluster as a whole and share the copied disk on KVM (shareable), or "
                                "detach it from the other VMs first", did))
    return out


def _vm_rules(spec, mode):
    out = []
    source = spec.get("source") or {}
    devices = source.get("devices") or {}
    if source.get("snapshots"):
        out.append(_finding("snapshots", WARNING if mode == "cold" else CRITICAL,
                            "the VM has %d snapshot(s); %s" % (source["snapshots"], "only the current state is copied"
                                                               if mode == "cold" else
                                                               "CBT cannot be enabled reliably with snapshots present"),
                            "consolidate or delete the snapshots before migrating"))
    if mode == "warm" and source.get("type") == "vsphere" and not source.get("cbt_enabled"):
        out.append(_finding("cbt", INFO, "Changed Block Tracking is off; warm sync will turn it on",
                            "nothing to do, or enable it yourself (ctkEnabled) in a maintenance window"))
    if mode == "warm" and source.get("type") != "vsphere":
        out.append(_finding("cbt", CRITICAL, "a %s source has no change tracking" % source.get("type"),
                            "use a cold migration for this source"))
    if devices.get("tpm"):
        out.append(_finding("vtpm", CRITICAL, "the VM has a virtual TPM whose keys (BitLocker, measured boot) cannot "
                            "be exported", "suspend BitLocker / back up the recovery keys, remove the vTPM, then "
                            "migrate and add an swtpm-backed TPM on KVM"))
    if devices.get("pci_passthrough"):
        out.append(_finding("pci_passthrough", CRITICAL, "the VM uses %d PCI passthrough device(s)"
                            % devices["pci_passthrough"], "remove the passthrough devices, migrate, then assign the "
                            "host devices on the KVM side with a hostdev"))
    if devices.get("usb_controllers"):
        out.append(_finding("usb_controller", INFO, "the VM has a USB controller; attached host USB devices are not "
                            "carried over", "re-attach needed USB devices on the KVM host after migration"))
    if spec.get("secure_boot"):
        out.append(_finding("secure_boot", WARNING, "UEFI secure boot is on; the guest needs OVMF with Microsoft keys "
                            "enrolled", "install the secure-boot OVMF variant (OVMF_VARS.ms.fd) on the target, or turn "
                            "secure boot off in the guest first"))
    guest = spec.get("guest_os") or {}
    if UNSUPPORTED_GUESTS.match(guest.get("id") or ""):
        out.append(_finding("guest_os", CRITICAL, "guest OS %s (%s) does not run on KVM with virtio"
                            % (guest.get("id"), guest.get("description") or "no description"),
                            "keep this VM on vSphere or rebuild it on a supported OS"))
    elif guest.get("family") == "other":
        out.append(_finding("guest_os", WARNING, "guest OS %r is not recognised as Linux or Windows"
                            % (guest.get("id") or ""), "check the guest has virtio drivers, or use disk_bus sata"))
    if guest.get("family") == "windows":
        out.append(_finding("guest_os", INFO, "Windows guests need virtio drivers before they boot from virtio disks",
                            "install virtio-win in the guest before migrating, or use disk_bus sata"))
    return out


def _target_rules(spec, target_free_bytes, existing_names):
    out = []
    disks = spec.get("disks") or []
    if len(disks) > MAX_EASY_DISKS:
        out.append(_finding("disk_count", WARNING, "the VM has %d disks, more than %d fit on the default PCI bus"
                            % (len(disks), MAX_EASY_DISKS), "use disk_bus scsi (one virtio-scsi controller) on the "
                            "target"))
    need = sum(needed_bytes(disk) for disk in disks)
    if target_free_bytes is not None and need > target_free_bytes:
        out.append(_finding("target_space", CRITICAL, "the disks need up to %d bytes (%.1f GiB) but the target has "
                            "%d bytes (%.1f GiB) free" % (need, need / 2 ** 30, target_free_bytes,
                                                          target_free_bytes / 2 ** 30),
                            "free space in the storage pool, or place the VM on another host or pool"))
    if spec.get("name") in set(existing_names or ()):
        out.append(_finding("name_conflict", CRITICAL, "a domain named %s already exists on the target" % spec["name"],
                            "pick another name with the name override, or remove the existing domain"))
    return out


def evaluate(spec, *, mode="cold", target_free_bytes=None, existing_names=()):
    """Every finding for one VM, most severe first."""
    if mode not in ("cold", "warm"):
        raise ValueError("mode must be cold or warm, not %r" % (mode,))
    findings = _disk_rules(spec, mode) + _vm_rules(spec, mode) + _target_rules(spec, target_free_bytes,
                                                                               existing_names)
    findings.sort(key=lambda f: SEVERITIES.index(f["severity"]))
    return findings


def summary(findings):
    return {severity: sum(f["severity"] == severity for f in findings) for severity in SEVERITIES}


def target_domain_names(conn, spec):
    """Names of the target's domains, but for those recorded as migrations of this same source: a re-run after
    an interrupted run finds its own unfinished domain there, which the role's phases take over."""
    own = {record["name"] for record in records(conn) if same_source(record["metadata"].get("source"),
                                                                     spec.get("source"))}
    return [domain.name() for domain in conn.listAllDomains() if domain.name() not in own]


def run(module):
    """The preflight module's result; the module fails on a critical finding when ``fail_on_critical``."""
    params = module.params
    free = free_bytes(params["target_path"]) if params["target_path"] else None
    names = list(params["existing_names"])
    if params["uri"]:
        conn = connect_for_module(module, params["uri"])
        try:
            names += target_domain_names(conn, params["spec"])
        finally:
            conn.close()
    findings = evaluate(params["spec"], mode=params["mode"], target_free_bytes=free, existing_names=names)
    counts = summary(findings)
    result = dict(changed=False, findings=findings, summary=counts, blocked=counts["critical"] > 0,
                  target_free_bytes=free)
    if result["blocked"] and params["fail_on_critical"]:
        module.fail_json(msg="pre-flight of %s found %d critical problem(s): %s" % (
            params["spec"].get("name"), counts["critical"],
            " | ".join(f["message"] for f in findings if f["severity"] == CRITICAL)), **result)
    return result
