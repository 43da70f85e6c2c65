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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._domain_reconciler import DomainReconciler


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
    module.exit_json(**DomainReconciler(module).run())


if __name__ == "__main__":
    main()
