#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_host_info
short_description: Facts of a KVM host for placement and migration
version_added: 0.2.0
description:
  - Reads, through libvirt only, what a KVM host offers and carries - CPUs, memory total, free and
    allocated, storage pools with their free space, the host CPU model and features, every domain
    with its allocation, and which domain types libvirt offers and which one really works.
  - The result feeds M(v2kvm.migrate.placement) unchanged.
  - Changes nothing; safe in check mode.
options:
  name:
    description:
      - Name the host goes by in placement and migration (the node name). Defaults to the hostname
        libvirt reports.
    type: str
  maintenance:
    description:
      - Copied into the facts; placement gives a host in maintenance no new VMs.
    type: bool
    default: false
  pool:
    description:
      - Storage pool new VMs land in on this host; copied into the facts for placement.
    type: str
  probe_domain_type:
    description:
      - Decide whether C(kvm) really works here (cheap checks, and on a local daemon a short boot
        probe whose verdict is cached); V(false) reports only what libvirt offers.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.read_only
  - v2kvm.migrate.libvirt
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Read the facts of every KVM host
  v2kvm.migrate.kvm_host_info:
    uri: "qemu+ssh://root@{{ item }}/system"
    name: "{{ item }}"
  loop: "{{ groups['kvm_hosts'] }}"
  register: kvm_hosts_facts
"""

RETURN = r"""
host:
  description: The host's facts.
  returned: success
  type: dict
  contains:
    name:
      description: "Node name."
      type: str
      returned: always
    uri:
      description: "The libvirt URI the facts were read through."
      type: str
      returned: always
    hostname:
      description: "Hostname libvirt reports."
      type: str
      returned: always
    host_uuid:
      description: "Host UUID from the capabilities (two hosts never share one)."
      type: str
      returned: always
    arch:
      description: "Host architecture."
      type: str
      returned: always
    cpu:
      description: "Host CPU C(arch), C(model), C(vendor) and C(features)."
      type: dict
      returned: always
    cpus:
      description: "Logical CPUs."
      type: int
      returned: always
    memory_total_mib:
      description: "Memory of the host."
      type: int
      returned: always
    memory_free_mib:
      description: "Memory the kernel reports free now."
      type: int
      returned: always
    vcpus_allocated:
      description: "vCPUs of running domains."
      type: int
      returned: always
    memory_allocated_mib:
      description: "Memory of running domains."
      type: int
      returned: always
    vcpus_defined:
      description: "vCPUs of all defined domains."
      type: int
      returned: always
    memory_defined_mib:
      description: "Memory of all defined domains."
      type: int
      returned: always
    domain_types_offered:
      description: Domain types libvirt offers (C(kvm), C(qemu)).
      type: list
      elements: str
      returned: always
    domain_type:
      description: "The domain type that really works, when probed."
      type: str
      returned: always
    domain_type_reason:
      description: "Why that domain type was chosen."
      type: str
      returned: always
    maintenance:
      description: "Whether the host is in maintenance."
      type: bool
      returned: always
    pool:
      description: "Pool new VMs land in (the O(pool) option)."
      type: str
      returned: always
    pools:
      description:
        - Storage pools with C(name), C(type), C(path), C(active), C(capacity_bytes),
          C(allocation_bytes), C(available_bytes).
      type: list
      elements: dict
      returned: always
    domains:
      description:
        - Domains with C(name), C(uuid), C(state), C(active), C(persistent), C(vcpus), C(memory_mib),
          C(domain_type), C(disks).
      type: list
      elements: dict
      returned: always
  sample:
    name: kvm01
    cpus: 16
    memory_total_mib: 64000
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._kvm_host_facts import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str"),
            maintenance=dict(type="bool", default=False),
            pool=dict(type="str"),
            probe_domain_type=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
