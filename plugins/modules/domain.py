#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: domain
short_description: Define (or remove) the libvirt domain of a migrated VM from its VM spec
version_added: 0.1.0
description:
  - Renders the normalized VM spec (see C(docs/vm-spec.md)) plus the converted disks into libvirt domain
    XML and defines it. The domain is not started; M(v2kvm.migrate.validate) does that.
  - The XML is rendered deterministically. Its digest, the spec digest, the source, the volumes, the
    migration phase and timestamps are stored in the domain's C(<metadata>) under the namespace
    C(https://v2kvm.dev/xmlns/migration/1). The domain is re-defined only when the rendering differs from
    the one recorded, when the live definition drifted from it in a setting this module manages (memory,
    vCPUs, machine, firmware, disks, NICs, serial log, ...), or when the metadata content changes. A no-op
    run leaves the timestamps alone.
  - Each disk in O(disks) is looked up in the libvirt storage pool whose directory holds it (the pool is
    refreshed first); it is attached as C(<disk type='volume'>) when a pool holds it, else as a plain file.
  - The first serial port is a pty (so C(virsh console) works) whose output virtlogd also writes to
    O(serial_log), truncated at every start, so the file holds exactly the current boot's console.
  - BIOS guests get C(<bios useserial='yes'/>), so SeaBIOS's own errors also reach that log.
  - UEFI guests use libvirt firmware auto-selection (C(<os firmware='efi'>)) with Secure Boot off unless
    the spec's C(secure_boot) is true; libvirt creates a per-domain NVRAM file.
  - A virtio-serial channel for the QEMU guest agent, a VNC display on 127.0.0.1 and a VGA adapter are added.
options:
  name:
    description:
      - Name of the libvirt domain. Defaults to the spec's C(name). Required when O(spec) is not given.
    type: str
  spec:
    description:
      - The normalized VM spec, as returned by M(v2kvm.migrate.ova_info). Required with O(state=present).
    type: dict
  disks:
    description:
      - Paths of the converted disks, index-aligned with the spec's C(disks) (index 0 boots). Required with
        O(state=present).
    type: list
    elements: path
  disk_format:
    description:
      - Format of every disk in O(disks). By default it is read from the libvirt volume, or from
        C(qemu-img info) for a file outside any pool.
    type: str
    choices: [qcow2, raw]
  network_map:
    description:
      - Maps source network names (the spec NICs' C(network)) to libvirt network names.
      - The value V(user) gives C(<interface type='user'>) (user-mode networking, no libvirt network needed).
    type: dict
    default: {}
  default_network:
    description:
      - libvirt network for source networks missing from O(network_map). When neither maps a NIC the module
        fails naming the network to add to O(network_map).
    type: str
  keep_macs:
    description:
      - Keep the source's MAC addresses. When false, libvirt assigns MACs once and re-defines keep them.
    type: bool
    default: true
  disk_bus:
    description:
      - Bus of every disk. V(virtio) needs virtio drivers in the guest; V(sata) or V(ide) boot guests that
        lack them (V(ide) selects the C(pc) machine, as q35 has no IDE). V(scsi) adds a virtio-scsi controller.
    type: str
    choices: [virtio, sata, scsi, ide]
    default: virtio
  nic_model:
    description:
      - Model of every NIC, for example V(virtio), V(e1000e) or V(e1000).
    type: str
    default: virtio
  domain_type:
    description:
      - V(kvm) or V(qemu) (TCG emulation).
      - V(auto) tests whether KVM really runs guests on the host, not just whether C(/dev/kvm) exists. It checks
        that C(/dev/kvm) opens and accepts C(KVM_CREATE_VM), that the CPU has vmx or svm, and that libvirt
        offers the kvm domain type; then it starts a diskless transient KVM domain whose SeaBIOS writes to the
        serial console and requires the "No bootable device" banner within 2 seconds and no slower than the
        same probe under TCG (a vCPU burning CPU time is not proof of progress; on some nested hosts KVM guests
        spin forever). The answer is cached per host boot in C(/run/v2kvm/kvm-probe.json).
      - In check mode the boot probe is skipped unless a cached answer exists.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  machine:
    description:
      - Machine type. Defaults to V(q35) (PCIe, needed for Secure Boot, fine for BIOS guests too), or V(pc)
        when O(disk_bus=ide).
    type: str
  cpu_mode:
    description:
      - V(auto) uses V(host-model) under KVM and libvirt's default CPU (qemu64) under TCG.
    type: str
    choices: [auto, host-model, host-passthrough, maximum]
    default: auto
  firmware:
    description:
      - Overrides the spec's C(firmware).
    type: str
    choices: [bios, uefi]
  serial_log:
    description:
      - File the serial console is logged to. Defaults to C(/var/log/libvirt/qemu/NAME-serial0.log).
    type: path
  metadata:
    description:
      - Extra migration state to record in the domain metadata. The key C(phase) sets the recorded phase
        (default C(defined), or the phase already recorded); other keys are stored as JSON.
    type: dict
    default: {}
  state:
    description:
      - V(present) defines the domain. V(absent) destroys it if running and undefines it together with its
        NVRAM file, managed save image and snapshot metadata.
    type: str
    choices: [present, absent]
    default: present
  remove_volumes:
    description:
      - With O(state=absent), also delete the volumes the domain's metadata records as created by v2kvm (a
        disk counts as created by v2kvm when M(v2kvm.migrate.disk_convert)'s sidecar file was beside it when
        the domain was defined), together with those sidecars. Other disks are never deleted.
    type: bool
    default: false
  autostart:
    description:
      - Whether libvirt starts the domain when the host boots.
    type: bool
    default: false
  only_unfinished:
    description:
      - With O(state=absent), remove the domain only when its v2kvm metadata records an unfinished migration
        (any phase but C(validated)) of the same source as O(spec) (same source type and path). A domain
        without v2kvm metadata, one migrated from another source, and a validated one are left alone and
        RV(kept) says why.
      - The rollback of the role C(v2kvm.migrate.migrate_vm) uses it, so what earlier interrupted runs of the same VM
        left goes too, while a finished migration is never removed.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.libvirt
  - v2kvm.migrate.libvirt.attributes
attributes:
  diff_mode:
    details: Shows the managed settings (and the config digest) before and after, one per line.
notes:
  - Re-defining a running domain changes its persistent definition only; RV(restart_required) tells when a
    restart is needed for the change to take effect.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Define the migrated VM on the converted disks
  v2kvm.migrate.domain:
    spec: "{{ ova.spec }}"
    disks: "{{ converted.results | map(attribute='dest') | list }}"
    network_map:
      VM Network: default
      DMZ: dmz
    metadata:
      phase: defined
      wave: 3

- name: Roll back - remove the domain and the disks v2kvm created for it
  v2kvm.migrate.domain:
    name: web01
    state: absent
    remove_volumes: true
"""

RETURN = r"""
name:
  description: Name of the domain.
  returned: always
  type: str
  sample: web01
uuid:
  description: UUID of the domain (null when absent or not yet defined in check mode).
  returned: always
  type: str
  sample: 2b4c1f0e-7a0d-4f2e-9a59-6a4d0c8f6e11
domain_type:
  description: Domain type used (V(kvm) or V(qemu)).
  returned: when state is present
  type: str
  sample: qemu
domain_type_detection:
  description: How O(domain_type=auto) decided, with each check's outcome; null when the type was given.
  returned: when state is present
  type: dict
  sample: {"domain_type": "qemu", "reason": "CPU has neither vmx nor svm", "cached": false, "checks": []}
xml:
  description: The domain XML that was (or in check mode would be) defined.
  returned: when state is present
  type: str
config_digest:
  description: Digest of the rendered configuration, as stored in the metadata.
  returned: when state is present
  type: str
  sample: sha256:9f2c...
metadata:
  description: The v2kvm migration metadata now recorded in the domain.
  returned: when state is present
  type: dict
  sample:
    phase: defined
    spec_digest: sha256:1d0f...
    config_digest: sha256:9f2c...
    source: {type: ova, path: /data/web01.ova}
    volumes: [{path: /var/lib/libvirt/images/web01-0.qcow2, pool: default, name: web01-0.qcow2, owned: true}]
    extra: {}
    defined_at: "2025-01-01T10:00:00Z"
    updated_at: "2025-01-01T10:00:00Z"
drift:
  description: The live definition differed from the recorded one in a managed setting (someone edited it).
  returned: when state is present
  type: bool
restart_required:
  description: The domain is running and its definition changed; the change applies at the next start.
  returned: always
  type: bool
created:
  description:
    - The domain did not exist before this task and was defined by it (in check mode, would be).
    - A rollback removes a domain only when the failed run created it.
  returned: when state is present
  type: bool
removed_volumes:
  description: Volumes deleted with O(remove_volumes=true).
  returned: when state is absent
  type: list
  elements: str
kept:
  description:
    - Why O(only_unfinished=true) left the domain in place; null when it was removed or did not exist.
  returned: when state is absent
  type: str
  sample: "a finished migration (validated at 2025-01-01T10:00:00Z): only_unfinished keeps it"
phase:
  description: The migration phase the domain's metadata recorded before it was removed or kept (null without).
  returned: when state is absent
  type: str
  sample: defined
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_xml as dxml
from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_detect import detect_domain_type
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    is_local_uri,
    libvirt,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._qemu_img import QemuImgError, info as qemu_img_info
from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import same_source

POOL_TYPES_WITH_FILES = ("dir", "fs", "netfs")


def sidecar_path(path):
    return os.path.join(os.path.dirname(path), ".%s.v2kvm.json" % os.path.basename(path))


def lookup_domain(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def pool_holding(conn, path):
    """The active file-backed pool whose directory is the file's directory, or None."""
    directory = os.path.realpath(os.path.dirname(path))
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        root = meta_xml.parse_libvirt_xml(pool.XMLDesc(0))
        if root.get("type") not in POOL_TYPES_WITH_FILES:
            continue
        target = root.findtext("target/path")
        if target and os.path.realpath(target) == directory:
            return pool
    return None


def volume_format(vol):
    fmt = meta_xml.parse_libvirt_xml(vol.XMLDesc(0)).find("target/format")
    return fmt.get("type") if fmt is not None else None


def resolve_disks(module, conn):
    """Each O(disks) path as {path, format, pool, volume, owned}."""
    resolved = []
    for raw_path in module.params["disks"]:
        path = os.path.abspath(raw_path)
        exists = os.path.exists(path)
        if not exists and not module.check_mode:
            module.fail_json(msg="disk %s does not exist: convert the source disk first "
                                 "(v2kvm.migrate.disk_convert) or fix the disks list" % path)
        fmt = module.params["disk_format"]
        pool = pool_holding(conn, path)
        pool_name = volume_name = None
        if pool is not None:
            pool_name, volume_name = pool.name(), os.path.basename(path)
            if not module.check_mode:
                # The convert phase wrote the file behind libvirt's back.
                pool.refresh(0)
            if fmt is None:
                try:
                    fmt = volume_format(pool.storageVolLookupByName(volume_name))
                except libvirt.libvirtError:
                    fmt = None
        if fmt is None and exists:
            try:
                fmt = qemu_img_info(path)["format"]
            except QemuImgError as exc:
                module.fail_json(msg="cannot tell the format of disk %s: %s; set disk_format" % (path, exc))
        if fmt is None:
            fmt = "raw" if path.endswith((".raw", ".img")) else "qcow2"
            module.warn("disk %s does not exist yet; assuming format %s in check mode" % (path, fmt))
        resolved.append({
            "path": path, "format": fmt, "pool": pool_name, "volume": volume_name,
            "owned": os.path.exists(sidecar_path(path)),
        })
    return resolved


def resolve_domain_type(module, conn):
    wanted = module.params["domain_type"]
    if wanted != "auto":
        return wanted, None
    detection = detect_domain_type(conn, local=is_local_uri(module.params["uri"]), probe=not module.check_mode)
    return detection["domain_type"], detection


def desired_metadata(module, spec, plan, disks, previous, config_changed):
    extra = dict(module.params["metadata"] or {})
    # A new definition has not been validated yet; an unchanged one keeps the phase it reached.
    kept = None if config_changed else (previous or {}).get("phase")
    phase = extra.pop("phase", None) or kept or "defined"
    return meta_xml.new_metadata(
        phase=str(phase),
        spec_digest=meta_xml.digest_of(spec),
        config_digest=dxml.config_digest(plan),
        source=meta_xml.source_fingerprint(spec.get("source")),
        volumes=[{"path": d["path"], "pool": d["pool"], "name": d["volume"], "owned": d["owned"]} for d in disks],
        extra=extra,
    )


def ensure_present(module, conn, name):
    spec = module.params["spec"]
    domain_type, detection = resolve_domain_type(module, conn)
    disks = resolve_disks(module, conn)
    cpu_mode = module.params["cpu_mode"]
    try:
        plan = dxml.plan_from_spec(
            spec, name=name, disks=disks,
            network_map=module.params["network_map"], default_network=module.params["default_network"],
            keep_macs=module.params["keep_macs"], disk_bus=module.params["disk_bus"],
            nic_model=module.params["nic_model"], domain_type=domain_type, machine=module.params["machine"],
            cpu_mode=None if cpu_mode == "auto" else cpu_mode, firmware=module.params["firmware"],
            serial_log=module.params["serial_log"])
    except dxml.DomainSpecError as exc:
        module.fail_json(msg=str(exc))

    generated = dxml.build_domain_xml(plan)
    digest = meta_xml.digest_of(generated)
    wanted_summary = dxml.summarize(generated)

    dom = existed_before = lookup_domain(conn, name)
    uuid = previous = live_summary = None
    fallback_macs = []
    running = False
    if dom is not None:
        live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        previous = meta_xml.from_domain_xml(live_xml)
        uuid = dom.UUIDString()
        fallback_macs = dxml.interface_macs(live_xml)
        live_summary = dxml.comparable(dxml.summarize(live_xml), wanted_summary)
        running = bool(dom.isActive())

    drift = live_summary is not None and live_summary != wanted_summary
    config_changed = dom is None or previous is None or previous.get("config_digest") != digest or drift
    wanted_meta = desired_metadata(module, spec, plan, disks, previous, config_changed)
    meta_changed = meta_xml.content_of(previous) != meta_xml.content_of(wanted_meta)
    changed = config_changed or meta_changed
    final_meta = meta_xml.merge_timestamps(wanted_meta, previous) if changed else previous
    xml = dxml.build_domain_xml(plan, uuid=uuid, metadata=final_meta, fallback_macs=fallback_macs)

    if changed and not module.check_mode:
        try:
            dom = conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="libvirt refused the domain definition of %s: %s" % (name, exc), xml=xml)
        uuid = dom.UUIDString()

    autostart = module.params["autostart"]
    current_autostart = bool(dom.autostart()) if dom is not None else False
    if current_autostart != autostart:
        changed = True
        if not module.check_mode:
            dom.setAutostart(1 if autostart else 0)

    result = dict(
        changed=changed, created=existed_before is None and changed, name=name, uuid=uuid,
        domain_type=domain_type, domain_type_detection=detection,
        xml=xml, config_digest=digest, metadata=final_meta, drift=drift,
        restart_required=bool(running and config_changed),
    )
    if module._diff:
        before = ""
        if live_summary is not None:
            before = dxml.summary_text(live_summary, (previous or {}).get("config_digest"))
            before += "phase: %s\nautostart: %s\n" % ((previous or {}).get("phase"), current_autostart)
        after = dxml.summary_text(wanted_summary, digest)
        after += "phase: %s\nautostart: %s\n" % (wanted_meta["phase"], autostart)
        result["diff"] = {"before": before, "after": after,
                          "before_header": "%s (defined)" % name, "after_header": "%s (wanted)" % name}
    module.exit_json(**result)


def delete_owned_volumes(module, conn, metadata):
    removed = []
    for vol in (metadata or {}).get("volumes") or []:
        if not vol.get("owned"):
            continue
        path = vol["path"]
        try:
            if vol.get("pool"):
                pool = conn.storagePoolLookupByName(vol["pool"])
                pool.refresh(0)
                pool.storageVolLookupByName(vol["name"]).delete(0)
            elif os.path.exists(path):
                os.unlink(path)
            else:
                continue
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
                module.fail_json(msg="could not delete volume %s: %s" % (path, exc))
            if not os.path.exists(path):
                continue
            os.unlink(path)
        if os.path.exists(sidecar_path(path)):
            os.unlink(sidecar_path(path))
        removed.append(path)
    return removed


def unfinished_refusal(metadata, spec):
    """Why only_unfinished must keep the domain, or None when it is an unfinished migration of this source."""
    if metadata is None:
        return "it carries no v2kvm migration metadata (not made by this collection): only_unfinished keeps it"
    if not same_source(metadata.get("source"), (spec or {}).get("source")):
        return ("its metadata records a migration of another source (%s %s): only_unfinished keeps it"
                % ((metadata.get("source") or {}).get("type"), (metadata.get("source") or {}).get("path")))
    if metadata.get("phase") == "validated":
        return ("a finished migration (validated at %s): only_unfinished keeps it"
                % (metadata.get("validated_at") or "an unknown time"))
    return None


def ensure_absent(module, conn, name):
    dom = lookup_domain(conn, name)
    result = dict(changed=False, name=name, uuid=None, restart_required=False, removed_volumes=[], kept=None,
                  phase=None)
    if dom is None:
        module.exit_json(**result)
    live_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    metadata = meta_xml.from_domain_xml(live_xml)
    result["phase"] = (metadata or {}).get("phase")
    if module.params["only_unfinished"]:
        refusal = unfinished_refusal(metadata, module.params["spec"])
        if refusal:
            result.update(uuid=dom.UUIDString(), kept=refusal)
            module.exit_json(**result)
    result.update(changed=True, uuid=dom.UUIDString())
    owned = [v["path"] for v in (metadata or {}).get("volumes") or [] if v.get("owned")]
    if module.params["remove_volumes"] and metadata is None:
        module.warn("domain %s carries no v2kvm metadata, so no volume is known to be v2kvm's: none deleted" % name)
    if module._diff:
        result["diff"] = {"before": dxml.summary_text(dxml.summarize(live_xml)), "after": ""}
    if module.check_mode:
        result["removed_volumes"] = [p for p in owned if os.path.exists(p)] if module.params["remove_volumes"] else []
        module.exit_json(**result)
    flags = 0
    for flag in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                 "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
        flags |= getattr(libvirt, flag, 0)
    try:
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="could not remove domain %s: %s" % (name, exc))
    if module.params["remove_volumes"]:
        result["removed_volumes"] = delete_owned_volumes(module, conn, metadata)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str"),
            spec=dict(type="dict"),
            disks=dict(type="list", elements="path"),
            disk_format=dict(type="str", choices=["qcow2", "raw"]),
            network_map=dict(type="dict", default={}),
            default_network=dict(type="str"),
            keep_macs=dict(type="bool", default=True),
            disk_bus=dict(type="str", choices=["virtio", "sata", "scsi", "ide"], default="virtio"),
            nic_model=dict(type="str", default="virtio"),
            domain_type=dict(type="str", choices=["auto", "kvm", "qemu"], default="auto"),
            machine=dict(type="str"),
            cpu_mode=dict(type="str", choices=["auto", "host-model", "host-passthrough", "maximum"], default="auto"),
            firmware=dict(type="str", choices=["bios", "uefi"]),
            serial_log=dict(type="path"),
            metadata=dict(type="dict", default={}),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            remove_volumes=dict(type="bool", default=False),
            autostart=dict(type="bool", default=False),
            only_unfinished=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("spec", "disks")), ("only_unfinished", True, ("spec",))],
        required_one_of=[("name", "spec")],
        supports_check_mode=True,
    )
    name = module.params["name"] or (module.params["spec"] or {}).get("name")
    if not name:
        module.fail_json(msg="the spec has no name: set the name option")
    conn = connect_for_module(module, module.params["uri"])
    try:
        if module.params["state"] == "absent":
            ensure_absent(module, conn, name)
        ensure_present(module, conn, name)
    except libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt error while managing domain %s: %s" % (name, exc))


if __name__ == "__main__":
    main()
