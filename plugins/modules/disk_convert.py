#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: disk_convert
short_description: Convert one VM disk to qcow2 or raw with qemu-img
version_added: 0.1.0
description:
  - Converts one disk of a VM spec (or a plain image file) with C(qemu-img convert) to qcow2 or raw,
    keeping it sparse. A disk inside an OVA is read in place through its byte offset; nothing is extracted.
  - The result is written to C(.NAME.part) beside O(dest), checked (C(qemu-img check) for qcow2),
    flushed to disk and only then renamed to O(dest). A failure or interruption removes the temporary file,
    so a half-made image never appears under the final name.
  - Before anything is written, also in check mode, the file system of O(dest) must have room for the result.
    When its free space is below the virtual size, C(qemu-img measure) gives the exact need, and a disk that
    does not fit fails at once with both sizes instead of filling the file system halfway through.
  - If the file system fills up anyway during the conversion (something else wrote there), the module fails
    naming the file system, the size the disk needs and how much to free; the temporary file is removed.
  - A hidden sidecar C(.NAME.v2kvm.json) beside O(dest) records the source fingerprint, the source file
    digest, the content digest of the result and the qemu-img version. A later run with the same source and
    an untouched O(dest) (same size and mtime) does nothing and reads no disk data; a changed source or a
    missing or modified O(dest) is converted again.
  - O(state=absent) removes O(dest), its sidecar and any leftover temporary file (used by rollback).
  - While it works (not in check mode) the module holds an flock on C(.NAME.v2kvm.lock) beside O(dest), which
    names its process and progress heartbeat, and removes it at the end. A conversion of the same O(dest) left
    running by a killed run of the same job (same O(progress_file)) is stopped first (SIGTERM, its clean-up
    runs); one of another run is waited for, and stopped only once its controller has not polled it for 30
    seconds. The wait is reported in O(progress_file).
options:
  disk:
    description:
      - One entry of the VM spec's C(disks) list, as returned by M(v2kvm.migrate.ova_info).
      - Its C(format), C(path) or O(container), C(offset), C(size), C(member), C(compression) and C(sha256)
        are used. When C(sha256) is set (a manifest verified it) it is reused as RV(source_sha256).
      - Disks with C(compression=gzip) are refused; unpack and decompress them first and use O(src).
      - Mutually exclusive with O(src).
    type: dict
  container:
    description:
      - Path of the OVA holding the disk, that is the spec's C(source.path). Used only when O(disk)
        has no C(path) (the spec leaves it null for disks inside an OVA).
    type: path
  src:
    description:
      - Path of a plain image file to convert. Mutually exclusive with O(disk).
    type: path
  src_format:
    description:
      - qemu-img format name of O(src). Ignored with O(disk), which carries its own C(format).
    type: str
    default: vmdk
  dest:
    description:
      - Path of the converted image. Its directory must exist.
      - An existing file without a sidecar is not overwritten unless O(force=true).
    type: path
    required: true
  dest_format:
    description:
      - Format of the converted image. C(raw) is written sparse.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  state:
    description:
      - V(present) converts when needed; V(absent) removes O(dest), its sidecar and any temporary file.
      - With V(absent) and O(disk) or O(src) given, O(dest) and its sidecar are removed only when the sidecar
        records that source (a rollback removing what earlier runs of the same VM left); the temporary file
        goes in any case.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Convert even when the sidecar says O(dest) is up to date, and replace an O(dest) that has no sidecar.
    type: bool
    default: false
  rate_limit:
    description:
      - Most bytes per second qemu-img may write (its C(-r)), so a migration leaves I/O for the guests already
        running on the host. V(0) means no limit.
    type: int
    default: 0
  progress_file:
    description:
      - When set, JSON lines C({"ts", "stage", "done", "total", "rate", "eta"}) are appended to this file at
        least once per second while qemu-img runs (C(stage=convert), then C(verify)), and a last line with
        C(stage=done) (or C(failed)). Byte counts refer to the virtual disk size.
    type: path
  verify:
    description:
      - How much to check the result before it is renamed into place. C(qemu-img check) always runs on qcow2
        (metadata only, milliseconds).
      - V(none) adds nothing; RV(content_digest) is then null.
      - V(digest) (the default) reads the data extents of the result once, mostly from the page cache just
        filled by the conversion, on two threads, overlapped with the flush to disk, to compute RV(content_digest).
        About 0.15 s per GiB of data with the Python package C(blake3) on the target, 0.4 s without; holes
        cost nothing.
      - V(compare) also runs C(qemu-img compare) of the source against the result, which reads and decodes the
        whole source again; expect the step to take about twice as long as the conversion.
    type: str
    choices: [none, digest, compare]
    default: digest
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the sidecar summary before and after.
  platform:
    platforms: posix
  idempotent:
    description: Running the module twice with the same input changes nothing the second time.
    support: full
notes:
  - Needs C(qemu-img) (Debian package C(qemu-utils)) on the target. The Python package C(blake3) there is
    optional and makes the content digest about 2.5 times faster.
  - Re-running after the guest has written to O(dest) converts again and discards those writes, because
    O(dest) no longer matches its sidecar. Stop converting once the VM has been started.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Convert every disk of an OVA, reading them in place
  v2kvm.migrate.disk_convert:
    disk: "{{ item }}"
    container: "{{ spec.source.path }}"
    dest: "/var/lib/libvirt/images/{{ spec.name }}-{{ item.id }}.qcow2"
    progress_file: "/var/lib/v2kvm/progress/{{ spec.name }}-{{ item.id }}.jsonl"
  loop: "{{ spec.disks }}"

- name: Convert a plain VMDK to a sparse raw file and compare it with the source
  v2kvm.migrate.disk_convert:
    src: /data/exports/db01-disk1.vmdk
    dest: /var/lib/libvirt/images/db01-disk1.raw
    dest_format: raw
    verify: compare

- name: Roll back a conversion
  v2kvm.migrate.disk_convert:
    dest: /var/lib/libvirt/images/web01-vmdisk1.qcow2
    state: absent
"""

RETURN = r"""
dest:
  description: Path of the converted image.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web01-vmdisk1.qcow2
dest_format:
  description: Format of the converted image.
  returned: always
  type: str
  sample: qcow2
virtual_size:
  description: Size of the disk the guest sees, in bytes.
  returned: when state=present
  type: int
  sample: 21474836480
actual_size:
  description: Bytes allocated on the host for O(dest); null in check mode before a conversion.
  returned: when state=present
  type: int
  sample: 1073872896
source_fingerprint:
  description: What identifies the source without reading it (stat and any manifest digest).
  returned: when state=present
  type: dict
  sample: {"path": "/data/web01.ova", "offset": 10240, "size": 734003200, "mtime_ns": 1700000000000000000,
           "format": "vmdk", "sha256": null}
source_sha256:
  description:
    - sha256 of the source file bytes (of the disk's bytes inside the OVA). Taken from the disk's manifest digest
      when known, otherwise computed while qemu-img runs. Null in check mode when not known yet.
  returned: when state=present
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
content_digest:
  description:
    - Digest of the guest-visible content of the result, the same for the same content whatever the format or
      allocation. The virtual disk is cut into 1 MiB chunks; an all-zero chunk contributes the byte 0x00, any
      other chunk 0x01 followed by its hash H; the digest is H over C(v2kvm-content-vN\n), the virtual size
      and the chunk size (8-byte big-endian each) and those records, written as C(content-vN:<hex>).
    - Version 2 (H is BLAKE3) when the Python package C(blake3) is installed on the target, else version 1
      (H is sha256). Only digests of the same version compare.
    - Null with O(verify=none) or in check mode before a conversion.
  returned: when state=present
  type: str
  sample: content-v2:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
qemu_img_version:
  description: Version of qemu-img that made O(dest).
  returned: when state=present
  type: str
  sample: 7.2.22
reason:
  description: Why a conversion was (or would be) done, or why nothing was done.
  returned: always
  type: str
  sample: source mtime_ns changed
removed:
  description: Files removed (or, in check mode, that would be) by O(state=absent).
  returned: when state=absent
  type: list
  elements: str
  sample: [/var/lib/libvirt/images/web01-vmdisk1.qcow2, /var/lib/libvirt/images/.web01-vmdisk1.qcow2.v2kvm.json]
kept:
  description: Why O(state=absent) left O(dest) in place (its sidecar records another source); null otherwise.
  returned: when state=absent
  type: str
"""

# Ansible modules import after their documentation strings, hence the E402 waivers.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_conversion import DiskConversion  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            disk=dict(type="dict"),
            container=dict(type="path"),
            src=dict(type="path"),
            src_format=dict(type="str", default="vmdk"),
            dest=dict(type="path", required=True),
            dest_format=dict(type="str", choices=["qcow2", "raw"], default="qcow2"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force=dict(type="bool", default=False),
            progress_file=dict(type="path"),
            rate_limit=dict(type="int", default=0),
            verify=dict(type="str", choices=["none", "digest", "compare"], default="digest"),
        ),
        mutually_exclusive=[("disk", "src")],
        required_if=[("state", "present", ("disk", "src"), True)],
        supports_check_mode=True,
    )
    module.exit_json(**DiskConversion(module).run())


if __name__ == "__main__":
    main()
