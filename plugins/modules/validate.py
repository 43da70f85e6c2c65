#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate
short_description: Check a migrated VM's disks, boot it and judge the boot from its serial console
version_added: 0.1.0
description:
  - Runs, in this order, the checks that need the domain shut off, then boots it and watches the console.
  - O(content_compare) runs C(qemu-img compare) of each source disk against its converted target. It only
    makes sense before the first boot (a booted guest writes to its disks), so it requires the domain to be
    shut off and always runs before the domain is started.
  - O(check_images) runs C(qemu-img check) on every disk of the domain while it is shut off. When the domain
    is already running the check is reported as skipped, because qemu holds the image lock.
  - Then the domain is started (unless it is running already) and its serial console log is read until
    O(success_pattern) or one of O(failure_patterns) shows up, the domain stops, or O(boot_timeout) passes.
    Lines are judged in the order the guest printed them.
  - Only the current boot's console output is read. Domains defined by M(v2kvm.migrate.domain) log with
    C(append='off'), so libvirt truncates the log at start; for a log that appends, the module notes the file
    size before starting and reads from there.
  - The module fails, with the reason and the structured RV(verdict), when any check fails, the console shows
    a failure, or nothing decisive appears in time.
  - With O(progress_file) (the action plugin sets one, so dashboards follow the task live) each comparison
    reports its bytes as stage C(compare <target file>), and the boot wait reports the console's latest line,
    prefixed with C(boot), as its stage, without a byte count.
  - While it works (not in check mode) the module holds a lock per domain (under C(~/.ansible/v2kvm/locks) of the
    user it runs as). A validation of the same domain left running by a killed run of the same job (same
    O(progress_file)) is stopped first (it stops the guest it started); one of another run is waited for, and
    stopped only once its controller has not polled it for 30 seconds.
options:
  name:
    description:
      - Name of the libvirt domain.
    type: str
    required: true
  start:
    description:
      - Start the domain when it is shut off. When false a shut-off domain fails validation.
    type: bool
    default: true
  boot_timeout:
    description:
      - Seconds to wait for the console to show a verdict after the start (or, for a running domain, from now).
    type: int
    default: 120
  success_pattern:
    description:
      - Regular expression that marks a successful boot in a console line.
      - The default matches the test rig's C(V2KVM-BOOT-OK) marker and a getty C(login:) prompt, which nearly
        every Linux guest prints on its serial console once it is up. Guests that print nothing on the serial
        port (most Windows guests) need O(guest_agent=true) or another pattern.
    type: str
    default: "V2KVM-BOOT-OK|login:"
  failure_patterns:
    description:
      - Regular expressions that mark a failed boot. The first console line matching one of them (before a
        success line) fails validation.
    type: list
    elements: str
    default:
      - Kernel panic
      - No bootable device
      - Boot failed
      - not a bootable disk
      - "error: no such device"
      - "error: unknown filesystem"
      - Entering emergency mode
      - Give root password for maintenance
      - "VFS: Unable to mount root fs"
      - "ALERT! .* does not exist"
      - dracut-initqueue timeout
      - INACCESSIBLE_BOOT_DEVICE
      - No bootable option or device was found
  serial_log:
    description:
      - Serial console log to read. Defaults to the log file of the domain's first serial port.
    type: path
  guest_agent:
    description:
      - After the console shows success, also require the QEMU guest agent to answer C(guest-ping) before
        O(boot_timeout) runs out.
    type: bool
    default: false
  check_images:
    description:
      - Run C(qemu-img check) on each disk of the domain before starting it.
    type: bool
    default: true
  content_compare:
    description:
      - Source/target pairs compared with C(qemu-img compare) before the domain starts. Skipped, and said so in
        RV(verdict.checks), when the domain is already running.
    type: list
    elements: dict
    suboptions:
      source:
        description:
          - A VM spec disk entry (dict; a disk inside an OVA is read in place) or a path to an image file.
        type: raw
        required: true
      container:
        description:
          - The OVA holding a spec disk whose C(path) is null (the spec's C(source.path)).
        type: path
      source_format:
        description:
          - Format of a source path. Defaults to the spec entry's C(format), or what C(qemu-img info) detects.
        type: str
      target:
        description:
          - Path of the converted image.
        type: path
        required: true
      target_format:
        description:
          - Format of the target. Defaults to what C(qemu-img info) detects.
        type: str
  on_failure:
    description:
      - What to do with a domain this module started when validation fails. V(destroy) stops it (a failed
        boot only burns CPU); V(keep) leaves it running for inspection with C(virsh console).
    type: str
    choices: [destroy, keep]
    default: destroy
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.progress
  - v2kvm.migrate.libvirt
attributes:
  check_mode:
    support: partial
    details: Runs the read-only checks but neither starts the domain nor waits for a boot.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: A second run against the running, validated domain only reads its console.
    support: partial
notes:
  - C(changed) is true only when the module started the domain.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Compare the converted disk with the source, then boot and wait for a login prompt
  v2kvm.migrate.validate:
    name: "{{ spec.name }}"
    content_compare:
      - source: "{{ spec.disks[0] }}"
        container: "{{ spec.source.path }}"
        target: "/var/lib/libvirt/images/{{ spec.name }}-0.qcow2"
    boot_timeout: 300

- name: Windows guests print nothing on the serial port; wait for the guest agent instead
  v2kvm.migrate.validate:
    name: win01
    success_pattern: "."
    failure_patterns: []
    guest_agent: true
"""

RETURN = r"""
verdict:
  description: What validation found.
  returned: always
  type: dict
  contains:
    booted:
      description: The console showed the success pattern (null in check mode when the domain was not started).
      type: bool
    reason:
      description: Why the verdict is what it is, in words.
      type: str
    matched_line:
      description: The console line that decided the verdict, if any.
      type: str
    console_tail:
      description: The last 20 non-empty lines of this boot's console, escape sequences removed.
      type: list
      elements: str
    seconds_to_boot:
      description: Seconds from start to the success line (null when the module did not start the domain).
      type: float
    serial_log:
      description: The console log that was read.
      type: str
    checks:
      description: Image checks and content comparisons, each with C(name), C(target), C(ok) (null = skipped)
        and C(detail).
      type: list
      elements: dict
    agent:
      description: Guest agent result C({responded, detail}), null unless O(guest_agent=true).
      type: dict
  sample:
    booted: true
    reason: console shows the success pattern
    matched_line: V2KVM-BOOT-OK web01
    console_tail: ["V2KVM-BOOT-OK web01", "V2KVM-DISKS vda"]
    seconds_to_boot: 5.8
    serial_log: /var/log/libvirt/qemu/web01-serial0.log
    checks: [{name: qemu-img check, target: /var/lib/libvirt/images/web01-0.qcow2, ok: true, detail: clean}]
    agent: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv
from ansible_collections.v2kvm.migrate.plugins.module_utils._boot_check import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            start=dict(type="bool", default=True),
            boot_timeout=dict(type="int", default=120),
            success_pattern=dict(type="str", default=sv.DEFAULT_SUCCESS_PATTERN),
            failure_patterns=dict(type="list", elements="str", default=list(sv.DEFAULT_FAILURE_PATTERNS)),
            serial_log=dict(type="path"),
            guest_agent=dict(type="bool", default=False),
            check_images=dict(type="bool", default=True),
            content_compare=dict(
                type="list", elements="dict",
                options=dict(
                    source=dict(type="raw", required=True),
                    container=dict(type="path"),
                    source_format=dict(type="str"),
                    target=dict(type="path", required=True),
                    target_format=dict(type="str"),
                ),
            ),
            on_failure=dict(type="str", choices=["destroy", "keep"], default="destroy"),
            progress_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    run_module(module)


if __name__ == "__main__":
    main()
