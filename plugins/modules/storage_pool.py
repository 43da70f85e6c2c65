#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_pool
short_description: Ensure a libvirt directory storage pool exists, is active and autostarts
version_added: 0.1.0
description:
  - Defines a libvirt storage pool of type C(dir) for O(path), builds it (creates the directory when
    missing), starts it, marks it autostart and refreshes it so volumes written by other tools (such as
    M(v2kvm.migrate.disk_convert)) are listed.
  - An existing pool with the same name but another path is refused rather than moved; nothing is
    redefined behind the volumes it holds.
  - O(state=absent) stops the pool and removes its definition only. The directory and every file in it
    are left alone.
options:
  name:
    description:
      - Name of the libvirt storage pool.
    type: str
    required: true
  path:
    description:
      - Directory that holds the pool's volumes. Required when O(state=present).
    type: path
  state:
    description:
      - V(present) ensures the pool is defined, active and autostarts. V(absent) removes the definition.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.libvirt
  - v2kvm.migrate.libvirt.attributes
attributes:
  diff_mode:
    details: Shows the pool's path, whether it is active and whether it autostarts, before and after.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Make sure converted disks land in a libvirt pool
  v2kvm.migrate.storage_pool:
    name: migrated
    path: /var/lib/libvirt/images/migrated

- name: Forget the pool again (the files stay)
  v2kvm.migrate.storage_pool:
    name: migrated
    state: absent
"""

RETURN = r"""
path:
  description: Directory of the pool (null when the pool is absent).
  returned: always
  type: str
  sample: /var/lib/libvirt/images/migrated
capacity:
  description:
    - Size in bytes of the file system holding the pool.
    - In check mode before the pool exists, the size of the file system that would hold it.
  returned: always
  type: int
  sample: 107374182400
available:
  description: Free bytes in the pool.
  returned: always
  type: int
  sample: 53687091200
allocation:
  description: Bytes allocated in the pool's file system.
  returned: always
  type: int
  sample: 53687091200
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._pool_reconciler import PoolReconciler


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            path=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ("path",))],
        supports_check_mode=True,
    )
    module.exit_json(**PoolReconciler(module).run())


if __name__ == "__main__":
    main()
