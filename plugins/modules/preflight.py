#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Check a VM spec for what stops or complicates its migration
version_added: 0.2.0
description:
  - Evaluates the pre-flight rules on one VM spec (from M(v2kvm.migrate.vsphere_vm_info), the vSphere inventory or
    M(v2kvm.migrate.ova_info)) and returns each finding with a severity (critical, warning, info) and a message
    naming the fix.
  - "Rules: raw device mappings, independent disks, shared (multi-writer) disks, existing snapshots, CBT state
    (warm), virtual TPM, PCI passthrough, USB controller, UEFI secure boot, unsupported guest OS, disk count,
    disk size against the free space of O(target_path), name conflict with a domain on O(uri)."
  - With O(fail_on_critical=true) a critical finding fails the task, which stops that VM (that host) and not the
    rest of the fleet.
options:
  spec:
    description: The normalized VM spec (docs/vm-spec.md).
    type: dict
    required: true
  mode:
    description: Cold copy or warm (CBT) sync; some rules are stricter for warm.
    type: str
    choices: [cold, warm]
    default: cold
  target_path:
    description:
      - Directory on the target that receives the disks (the storage pool path). Its file system's free space is
        compared with what the disks take (their allocated bytes when known, else their capacities). The nearest
        existing parent is used if it does not exist.
    type: path
  uri:
    description:
      - libvirt URI of the target; when set, an existing domain with the spec's name is a critical finding,
        unless its v2kvm metadata records a migration of this same source (an interrupted earlier run, which the
        role's phases take over).
    type: str
  existing_names:
    description: Names already taken on the target (added to what O(uri) reports).
    type: list
    elements: str
    default: []
  fail_on_critical:
    description: Fail the task when a critical finding exists.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.read_only
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Pre-flight a vSphere VM from the inventory on its target host
  v2kvm.migrate.preflight:
    spec: "{{ v2kvm_spec }}"
    mode: warm
    target_path: /var/lib/libvirt/images/v2kvm
    uri: qemu:///system
  delegate_to: kvm01
"""

RETURN = r"""
findings:
  description: Findings, most severe first, each with C(rule), C(severity), C(message) (with the fix) and C(disk) when
    it concerns one disk.
  returned: always
  type: list
  elements: dict
  sample: [{"rule": "vtpm", "severity": "critical", "message": "the VM has a virtual TPM ... Fix: ..."}]
summary:
  description: Count of findings per severity.
  returned: always
  type: dict
  sample: {"critical": 1, "warning": 0, "info": 2}
blocked:
  description: Whether a critical finding stops this VM.
  returned: always
  type: bool
target_free_bytes:
  description: Free bytes found at O(target_path), null without it.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._preflight_rules import run


def main():
    module = AnsibleModule(argument_spec=dict(
        spec=dict(type="dict", required=True),
        mode=dict(type="str", default="cold", choices=["cold", "warm"]),
        target_path=dict(type="path"),
        uri=dict(type="str"),
        existing_names=dict(type="list", elements="str", default=[]),
        fail_on_critical=dict(type="bool", default=True),
    ), supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
