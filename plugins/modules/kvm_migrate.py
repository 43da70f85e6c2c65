#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_migrate
short_description: Move a libvirt VM from one KVM node to another, live or cold
version_added: 0.2.0
description:
  - O(mode=live) runs one peer-to-peer C(migrateToURI3) with a persistent destination, undefines the
    source on success and, with O(copy_storage=all), copies every disk over NBD for nodes without
    shared storage. Bandwidth, maximum downtime, auto-converge and an escalation to post-copy are
    options. Progress comes from libvirt's job stats and goes to the progress channel (dashboards).
  - A failed or aborted live migration (pre-copy) leaves the guest running on the source; libvirt
    rolls the target back and any disk the target pre-created is removed.
  - O(mode=cold) shuts the guest down (power-off only with O(force_shutdown)), streams each disk volume
    into O(target_pool) on the target through libvirt, defines the domain there, starts it, checks it
    keeps running for O(validate_seconds) and only then undefines the source. Any failure removes what
    the target got and starts the source again if it was running.
  - Refused before anything is touched - a target that is the source (C(Target node must be different
    from source node)), a node not in O(nodes) (C(Node X not found in cluster)), a live migration of a
    VM that is not running (C(VM must be running for live migration)), a target without enough free
    memory or pool space (C(Not enough capacity on node X ...)).
  - A VM already on the target and gone from the source is reported unchanged.
  - One migration per VM at a time (a lock under C(~/.ansible/v2kvm/locks) of the user on the host running the
    module). A cold migration left running by a killed run of the same job (same O(progress_file)) is stopped
    first, and rolls back. A live migration left by a killed run is never aborted (an abort can lose a guest in
    post-copy); this run waits for it, switches it to post-copy when O(post_copy) allows and it has not
    converged after O(post_copy_after) seconds, and after O(timeout) seconds fails naming C(virsh domjobabort).
options:
  name:
    description: Name of the libvirt domain to move.
    type: str
    required: true
  nodes:
    description:
      - The cluster - every node with its C(name) and libvirt C(uri). The module connects to both
        the source and the target URI; with live migration the source daemon also connects to the
        target URI itself (peer to peer), so it must be reachable from the source node too.
    type: list
    elements: dict
    required: true
  source:
    description: Name of the node the VM is on now.
    type: str
    required: true
  target:
    description: Name of the node the VM moves to.
    type: str
    required: true
  mode:
    description: V(live) keeps the guest running; V(cold) shuts it down and copies its disks.
    type: str
    choices: [live, cold]
    default: live
  copy_storage:
    description:
      - V(all) copies every disk to the target (nodes without shared storage); V(none) expects the
        disks at the same paths on the target (shared storage).
    type: str
    choices: [all, none]
    default: all
  target_pool:
    description:
      - Storage pool on the target that receives the disks. With O(mode=live) the target pre-creates
        the disks in the pool whose directory matches the source path; this pool is checked for space.
    type: str
    default: v2kvm
  migrate_uri:
    description: Address of the migration data stream, for example V(tcp://10.0.0.2) (a dedicated network).
    type: str
  bandwidth_mib:
    description: Bandwidth cap of the live migration in MiB/s.
    type: int
  max_downtime_ms:
    description: Longest pause of the guest that the final switch-over may take, in milliseconds.
    type: int
  auto_converge:
    description: Throttle the guest's vCPUs when pre-copy does not converge.
    type: bool
    default: false
  post_copy:
    description:
      - Allow switching to post-copy after O(post_copy_after) seconds when pre-copy has not finished
        (from then on an abort is impossible and a network failure loses the guest).
    type: bool
    default: false
  post_copy_after:
    description: Seconds of pre-copy before the switch to post-copy.
    type: int
    default: 30
  timeout:
    description: Abort a live migration still running after this many seconds (0 never); the guest stays on the source.
    type: int
    default: 3600
  shutdown_timeout:
    description: Seconds a cold migration waits for the guest to shut down.
    type: int
    default: 120
  force_shutdown:
    description: Power the guest off when it has not shut down within O(shutdown_timeout).
    type: bool
    default: false
  start:
    description: Start the guest on the target after a cold migration (and validate it).
    type: bool
    default: true
  validate_seconds:
    description:
      - Cold migration only. Seconds the started guest is watched on the target before the source is undefined.
      - The serial console is read through libvirt (the guest starts paused until it is attached); the first line
        matching O(success_pattern) or one of O(failure_patterns) decides. With neither, a guest still running
        at the end passes unless O(require_success_pattern).
      - A domain without a pty serial console is judged only by staying up.
    type: int
    default: 10
  success_pattern:
    description: Regular expression of a console line that proves the guest booted (cold migration).
    type: str
    default: "V2KVM-BOOT-OK|login:"
  failure_patterns:
    description:
      - Regular expressions of console lines that prove the boot failed (cold migration).
      - Default is the list v2kvm.migrate.validate uses (kernel panic, no bootable device, emergency mode, ...).
    type: list
    elements: str
  require_success_pattern:
    description: Fail a cold migration whose guest did not print O(success_pattern) within O(validate_seconds).
    type: bool
    default: false
  remove_source_storage:
    description: After a successful cold migration with copied disks, delete the source's disk volumes too.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.progress
attributes:
  check_mode:
    support: full
    details: Runs every safety check and reports what would happen.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: A VM already on the target (and not on the source) is left alone.
    support: full
requirements:
  - libvirt-python >= 9.0 on the host that runs the module
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Live-migrate web01 from kvm01 to kvm02, copying its disks
  v2kvm.migrate.kvm_migrate:
    name: web01
    nodes:
      - {name: kvm01, uri: "qemu+ssh://root@kvm01/system"}
      - {name: kvm02, uri: "qemu+ssh://root@kvm02/system"}
    source: kvm01
    target: kvm02
    bandwidth_mib: 200
    max_downtime_ms: 300
    auto_converge: true
    post_copy: true

- name: Cold-migrate db01, powering it off if it ignores the shutdown request
  v2kvm.migrate.kvm_migrate:
    name: db01
    nodes: "{{ kvm_nodes }}"
    source: kvm01
    target: kvm03
    mode: cold
    shutdown_timeout: 300
    force_shutdown: true
"""

RETURN = r"""
mode:
  description: V(live) or V(cold).
  returned: always
  type: str
source:
  description: Source node name.
  returned: always
  type: str
target:
  description: Target node name.
  returned: always
  type: str
downtime_ms:
  description: Pause of the guest during the switch-over as libvirt measured it (live).
  returned: after a live migration
  type: int
elapsed_s:
  description: Seconds the migration took.
  returned: changed
  type: float
escalated:
  description: Convergence aids used (C(auto-converge), C(post-copy)).
  returned: after a live migration
  type: list
  elements: str
abort_missed:
  description:
    - Set when the O(timeout) was reached (or the run was stopped) but libvirt did not abort the live migration
      in time and it completed; the guest runs on the target. Says why (libvirt's refusal). A warning says the same.
  returned: after a live migration that completed although it was to be aborted
  type: str
  sample: "timeout of 600 s reached, but the migration completed (libvirt refused the abort: ...)"
stats:
  description: libvirt's job stats of the finished live migration.
  returned: after a live migration
  type: dict
disks:
  description: Old disk path to new disk path (cold with copied disks).
  returned: after a cold migration
  type: dict
bytes_copied:
  description: Bytes streamed to the target (cold).
  returned: after a cold migration
  type: int
stopped:
  description: How the guest stopped on the source (cold).
  returned: after a cold migration
  type: str
validated:
  description:
    - The boot verdict on the target (cold), or null when O(start=false).
    - C(method) is C(console) (serial console read through libvirt) or C(running) (no console to attach).
  returned: after a cold migration
  type: dict
  sample:
    booted: true
    method: console
    reason: console shows the success pattern
    matched_line: V2KVM-BOOT-OK web01
    console_tail: ["V2KVM-BOOT-OK web01"]
source_storage_removed:
  description: Source disk volumes deleted after success (O(remove_source_storage)).
  returned: after a cold migration
  type: list
  elements: str
msg:
  description: What happened.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_reconciler import MigrationReconciler


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            nodes=dict(type="list", elements="dict", required=True),
            source=dict(type="str", required=True),
            target=dict(type="str", required=True),
            mode=dict(type="str", choices=["live", "cold"], default="live"),
            copy_storage=dict(type="str", choices=["all", "none"], default="all"),
            target_pool=dict(type="str", default="v2kvm"),
            migrate_uri=dict(type="str"),
            bandwidth_mib=dict(type="int"),
            max_downtime_ms=dict(type="int"),
            auto_converge=dict(type="bool", default=False),
            post_copy=dict(type="bool", default=False),
            post_copy_after=dict(type="int", default=30),
            timeout=dict(type="int", default=3600),
            shutdown_timeout=dict(type="int", default=120),
            force_shutdown=dict(type="bool", default=False),
            start=dict(type="bool", default=True),
            validate_seconds=dict(type="int", default=10),
            success_pattern=dict(type="str", default="V2KVM-BOOT-OK|login:"),
            failure_patterns=dict(type="list", elements="str"),
            require_success_pattern=dict(type="bool", default=False),
            remove_source_storage=dict(type="bool", default=False),
            progress_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**MigrationReconciler(module).run())


if __name__ == "__main__":
    main()
