#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vsphere_vm_info
short_description: Read vSphere VMs as normalized VM specs
version_added: 0.2.0
description:
  - Reads one VM (selected by O(name), O(moid) or O(uuid)) or every VM of a vCenter/ESXi host and returns the
    same normalized VM spec the OVA path produces (docs/vm-spec.md), with C(source.type=vsphere).
  - The spec's C(source) also carries the vCenter host, the VM's managed object id, instance UUID,
    datacenter, cluster, host, folder, power state, CBT state, snapshot count and a device summary;
    each disk also carries its datastore path, device key, disk mode, sharing and RDM mode (docs/vsphere.md).
  - Reads only; changes nothing in vCenter.
options:
  spec_name:
    description:
      - Name to give the spec (the libvirt domain name) instead of the vCenter VM name. Needs one selected VM.
      - Without it, a vCenter name that does not match the spec's name rule gets a derived domain name (the
        same on every run, see docs/vm-spec.md) and the vCenter name is kept in C(spec.original_name).
    type: str
extends_documentation_fragment:
  - v2kvm.migrate.vsphere
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.read_only
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Read one VM
  v2kvm.migrate.vsphere_vm_info:
    hostname: vcenter.example.com
    username: migrator@vsphere.local
    password: "{{ vault_vcenter_password }}"
    name: web01
  register: web01

- name: List every VM (credentials from VMWARE_HOST / VMWARE_USER / VMWARE_PASSWORD)
  v2kvm.migrate.vsphere_vm_info:
  register: fleet
"""

RETURN = r"""
spec:
  description: The normalized VM spec of the selected VM (docs/vm-spec.md, docs/vsphere.md).
  returned: when a VM is selected
  type: dict
  sample: {"name": "web01", "source": {"type": "vsphere", "path": "/DC0/vm/web01", "moid": "vm-42"}}
vms:
  description: Specs of every VM when none is selected, sorted by inventory path.
  returned: when no VM is selected
  type: list
  elements: dict
errors:
  description: VMs that could not be described (no selection), each with C(path), C(moid) and C(msg).
  returned: when no VM is selected
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_info import run
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_module import connection_argument_spec


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(spec_name=dict(type="str"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("name", "moid", "uuid")])
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
