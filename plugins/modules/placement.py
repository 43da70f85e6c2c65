#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: placement
short_description: Choose a KVM host for every VM of a batch, with no overcommit
version_added: 0.2.0
description:
  - Places a whole batch of VMs on KVM hosts at once - run it with C(run_once) and hand each VM its
    slot - so VMs that later migrate in parallel forks never share the same free capacity.
  - Filters, cheapest first - hosts in maintenance, the VM's own current host, architecture, RAM
    (with O(ram_allocation_ratio) and O(reserved_host_memory_mib)), vCPUs (with
    O(cpu_allocation_ratio)), free space of the host's storage pool (with O(disk_allocation_ratio)),
    offered domain type, required CPU features, anti-affinity groups.
  - Weighers - O(strategy=spread) prefers the emptiest host, O(strategy=stack) the fullest that
    still fits. VMs are placed biggest first; ties go to the host listed first.
  - Every choice is explained (winner, score, runner-up) and every rejected host says why.
  - Runs on the controller and changes nothing.
options:
  hosts:
    description:
      - Candidate hosts, each the C(host) result of M(v2kvm.migrate.kvm_host_info) (C(name),
        C(uri), C(cpus), C(memory_total_mib), C(memory_allocated_mib), C(vcpus_allocated),
        C(pools), C(cpu), C(domains), optionally C(maintenance) and C(pool)).
    type: list
    elements: dict
    required: true
  vms:
    description:
      - The batch. Each VM has C(name), C(vcpus), C(memory_mib), and optionally C(id) (unique key,
        default the name), C(disk_bytes) (space needed in the target pool), C(current_host) (never
        chosen), C(anti_affinity) (group name or list), C(cpu_features), C(arch), C(domain_type).
    type: list
    elements: dict
    required: true
  strategy:
    description:
      - V(spread) balances load over the hosts; V(stack) fills hosts one after the other.
    type: str
    choices: [spread, stack]
    default: spread
  pool:
    description:
      - Storage pool VMs land in on hosts whose facts name none.
    type: str
    default: v2kvm
  cpu_allocation_ratio:
    description: vCPUs a host may carry per logical CPU.
    type: float
    default: 4.0
  ram_allocation_ratio:
    description: Guest memory a host may carry per MiB of its memory (1.0 means no memory overcommit).
    type: float
    default: 1.0
  disk_allocation_ratio:
    description: Disk a pool may promise per byte it has free.
    type: float
    default: 1.0
  reserved_host_memory_mib:
    description: Memory kept for the host itself on every host.
    type: int
    default: 0
  maintenance:
    description: Names of hosts in maintenance (no new placements), besides those whose facts say so.
    type: list
    elements: str
    default: []
  maintenance_file:
    description:
      - A text file with one host name per line, all of them in maintenance (the evacuation role
        writes it). A missing file means no host is listed.
    type: path
  anti_affinity_groups:
    description:
      - Group name to the VM names that must not share a host; VMs already running on a host count.
    type: dict
    default: {}
  depends_on:
    description:
      - VM name to the names of VMs that must move before it; used to order RV(batches).
    type: dict
    default: {}
  concurrency:
    description: Most VMs in one of RV(batches) (how many move at once).
    type: int
    default: 1
  dry_run:
    description:
      - Only show the plan; a VM that fits nowhere is reported in RV(unplaced) instead of failing.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.read_only
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Place the whole batch once
  v2kvm.migrate.placement:
    hosts: "{{ kvm_hosts_facts.results | map(attribute='host') | list }}"
    vms: >-
      {{ ansible_play_hosts | map('extract', hostvars, 'vm_request') | list }}
    strategy: spread
    anti_affinity_groups:
      web: [web01, web02]
  run_once: true
  delegate_to: localhost
  register: batch_placement

- name: Hand each VM its slot
  ansible.builtin.set_fact:
    placed: "{{ batch_placement.by_id[inventory_hostname] }}"
"""

RETURN = r"""
assignments:
  description:
    - VMs that got a host, in input order, with C(id), C(name), C(host), C(uri), C(pool), C(score),
      C(reason) and C(rejected) (host to reason).
  returned: success
  type: list
  elements: dict
unplaced:
  description: VMs no host can take, each with the reason of every host (only non-empty with O(dry_run)).
  returned: success
  type: list
  elements: dict
by_id:
  description:
    - VM id to its C(host), C(uri) and C(pool), for handing each fork its slot, and C(batch), the index
      of its entry in RV(batches).
  returned: success
  type: dict
hosts:
  description: Each host's load after the batch (memory and vCPUs used and capacity, pool free space).
  returned: success
  type: list
  elements: dict
batches:
  description:
    - Ids of the placed VMs in the order they should move - each inner list at most O(concurrency)
      long, every VM after those it depends on (O(depends_on)).
  returned: success
  type: list
  elements: list
plan:
  description: The plan as readable lines.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._placement import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hosts=dict(type="list", elements="dict", required=True),
            vms=dict(type="list", elements="dict", required=True),
            strategy=dict(type="str", choices=["spread", "stack"], default="spread"),
            pool=dict(type="str", default="v2kvm"),
            cpu_allocation_ratio=dict(type="float", default=4.0),
            ram_allocation_ratio=dict(type="float", default=1.0),
            disk_allocation_ratio=dict(type="float", default=1.0),
            reserved_host_memory_mib=dict(type="int", default=0),
            maintenance=dict(type="list", elements="str", default=[]),
            maintenance_file=dict(type="path"),
            anti_affinity_groups=dict(type="dict", default={}),
            depends_on=dict(type="dict", default={}),
            concurrency=dict(type="int", default=1),
            dry_run=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
