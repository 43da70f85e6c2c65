#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migration_state
short_description: Tell whether a source VM's migration to this KVM host is already finished
version_added: 0.1.0
description:
  - Reads the v2kvm migration metadata that M(v2kvm.migrate.domain) and M(v2kvm.migrate.validate) keep in
    each libvirt domain, and finds the domain migrated from O(source_path).
  - RV(complete) is true when that domain passed validation and the source file has the same size and
    modification time as when it was migrated. A re-run of the migration role then skips every phase,
    which makes re-running a finished fleet cheap (nothing is read but the domains' XML and one C(stat)).
  - Without O(source_path) and O(name) it lists every domain of the host that carries v2kvm metadata
    (RV(migrations)).
  - When many VMs of a play ask the same host in the same task (a re-run of a fleet), the first one lists
    the host once and the others take a finished migration from that listing instead of running the
    module again; every other answer is asked of the host itself. When that host is reached with the local
    connection (no become, no task environment), the controller is the host and reads the listing in its own
    process, so no module starts. See C(plugins/action/migration_state.py).
  - Never changes anything.
options:
  source_path:
    description:
      - The source file the migration read (an C(.ova), an C(.ovf) or a C(.vmdk)), as given to
        M(v2kvm.migrate.ova_info). Its size and modification time must match the ones recorded.
      - Leave it out for sources that are not files (vSphere) and give O(name).
      - Leave out both O(source_path) and O(name) to list every migrated domain (RV(migrations)).
    type: path
  name:
    description:
      - Only consider the domain of this name (when the migration renamed the VM, several domains came
        from one source, or the source is not a file).
      - A name that is not a valid domain name (a vCenter VM called C(Web Server 01)) is looked up as the
        domain name derived from it, as the source phase would have named it.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.read_only
  - v2kvm.migrate.libvirt
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Skip VMs whose migration is already finished
  v2kvm.migrate.migration_state:
    uri: qemu:///system
    source_path: /exports/web01.ova
  register: state

- name: List every domain this host holds from a v2kvm migration
  v2kvm.migrate.migration_state:
    uri: qemu+ssh://root@kvm01/system
  register: migrated

- name: Migrate only what is not finished
  ansible.builtin.include_role:
    name: v2kvm.migrate.migrate_vm
  when: not state.complete
"""

RETURN = r"""
found:
  description: A domain migrated from O(source_path) exists on the host.
  returned: when O(source_path) or O(name) was given
  type: bool
complete:
  description: That domain passed validation and the source has not changed since.
  returned: when O(source_path) or O(name) was given
  type: bool
name:
  description: Name of the domain found.
  returned: when O(source_path) or O(name) was given
  type: str
phase:
  description: The last phase the migration reached (C(defined), C(validated), ...).
  returned: when O(source_path) or O(name) was given
  type: str
running:
  description: The domain is running.
  returned: when O(source_path) or O(name) was given
  type: bool
validated_at:
  description: When validation passed (UTC, ISO 8601).
  returned: when O(source_path) or O(name) was given
  type: str
source_type:
  description: The kind of source the migration was made from, as recorded (C(ova), C(vsphere), ...).
  returned: when O(source_path) or O(name) was given
  type: str
  sample: ova
source_changes:
  description: How the source differs from the one migrated (empty when it does not).
  returned: when O(source_path) or O(name) was given
  type: list
  elements: str
reason:
  description: Why RV(complete) is what it is, in words.
  returned: when O(source_path) or O(name) was given
  type: str
migrations:
  description:
    - Every domain with v2kvm metadata, when neither O(source_path) nor O(name) was given.
    - C(source_realpath) is the real path of the recorded source path as the host sees it now (present when a
      path was recorded); C(source_stat) (C(size) and C(mtime_ns), or C(error)) is that file's current stat
      (present for file sources only).
  returned: when neither O(source_path) nor O(name) was given
  type: list
  elements: dict
  sample:
    - name: web01
      running: true
      metadata:
        phase: validated
        validated_at: "2026-11-23T12:00:00Z"
        source: {"type": "ova", "path": "/exports/web01.ova", "size": 1048576, "mtime_ns": 1700000000000000000}
      source_realpath: /exports/web01.ova
      source_stat: {"size": 1048576, "mtime_ns": 1700000000000000000}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            source_path=dict(type="path"),
            name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
