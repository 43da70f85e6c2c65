#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ova_info
short_description: Read an OVA, an OVF export folder or a bare VMDK into the normalized VM spec
version_added: 0.1.0
description:
  - Reads a VM export in place and returns the normalized VM spec every later phase uses
    (see C(docs/vm-spec.md)). Nothing is extracted or written; the module never reports a change.
  - An OVA must be a plain (uncompressed) tar holding only regular files with relative names. Links,
    devices, FIFOs, directories, absolute or C(..) paths, duplicate names and truncated archives are refused.
    Disks inside the OVA are located by byte offset and read in place.
  - The OVF descriptor (OVF 1.x or 2.x, as VMware ovftool, vSphere and VirtualBox write it) is parsed with
    defusedxml. DTDs, entity declarations and external references are refused (XXE, entity expansion);
    descriptors above 16 MiB are refused.
  - Every C(File) of the descriptor must exist (in the OVA or next to the C(.ovf)) with the declared
    C(ovf:size). A C(.mf) manifest (SHA1 or SHA256) is verified by streaming every file of the export;
    a wrong digest, an unlisted file or a listed file that is missing is an error.
  - Each disk is sniffed by its magic bytes and, with O(probe_disks=true), opened with C(qemu-img info)
    and C(qemu-img check), which rejects files that are not VMDK and truncated or damaged images. VMDK
    descriptors that point at extent files outside their own folder, and images with backing files, are refused.
  - Disks declared C(ovf:compression="gzip") are recorded in RV(spec.disks) with C(compression=gzip) and
    not probed; M(v2kvm.migrate.disk_convert) refuses them, so unpack the OVA and gunzip them first.
  - Every error names the problem and the fix, and is raised before anything else happens.
options:
  path:
    description:
      - The source. An C(.ova) file, the C(.ovf) of an export folder (its C(.mf) is the file with the same
        base name and extension C(.mf)), or a C(.vmdk).
    type: path
    required: true
  name:
    description:
      - Use this VM name instead of the OVF VirtualSystem name (or, for a bare VMDK, the file name).
      - Must match C(^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$); an override that does not is refused.
      - Without it, a source name that does not match (spaces, non-ASCII letters) gets a derived domain
        name, the same on every run, for example V(Web-Server-01-1a2b3c4d) for C(Web Server 01); the original
        is kept in RV(spec.original_name) and becomes the domain's C(<title>).
    type: str
  require_manifest:
    description:
      - Fail when the OVA or OVF folder has no C(.mf) manifest. Needs O(verify_manifest=true).
      - A bare VMDK has no manifest, so it cannot be combined with this option.
    type: bool
    default: false
  verify_manifest:
    description:
      - Verify every digest of the C(.mf) manifest when there is one. This reads every file of the export once.
      - With V(false), RV(spec.source.manifest) is null even when a manifest exists.
    type: bool
    default: true
  probe_disks:
    description:
      - Run C(qemu-img info) and C(qemu-img check) on each disk, in place, to learn its format, VMDK
        create type and virtual size, and to refuse non-VMDK, truncated or damaged files.
      - VMDK descriptor files (separate extents) are always probed, because the extent paths must be checked.
    type: bool
    default: true
  vcpus:
    description:
      - Number of virtual CPUs for a bare VMDK, which does not record it. Ignored for OVA and OVF sources.
    type: int
    default: 1
  memory_mib:
    description:
      - Memory in MiB for a bare VMDK, which does not record it. Ignored for OVA and OVF sources.
    type: int
    default: 1024
  firmware:
    description:
      - Firmware for a bare VMDK, which does not record it. Ignored for OVA and OVF sources.
    type: str
    choices: [bios, uefi]
    default: bios
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode returns the same spec.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: Running the module twice with the same input changes nothing the second time.
    support: full
notes:
  - Needs C(qemu-img) (Debian package C(qemu-utils)) when O(probe_disks=true), and the Python library
    C(defusedxml) for OVA and OVF sources.
  - The OVF spec asks for the C(.ovf) to be the first member of an OVA; one found later is still read, with a warning.
  - C(.cert) signatures are not checked. A VirtualSystemCollection (vApp), chunked files (C(ovf:chunkSize)),
    delta disks and disks without a file are refused.
  - Disks are listed in controller order (controllers as they appear in the descriptor, then the unit
    number); the first is treated as the boot disk.
requirements:
  - defusedxml
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Read an OVA exported by ovftool
  v2kvm.migrate.ova_info:
    path: /data/exports/web01.ova
    require_manifest: true
  register: web01

- name: Read an OVF export folder under another VM name
  v2kvm.migrate.ova_info:
    path: /data/exports/Web Server 01/Web Server 01.ovf
    name: web01

- name: Describe a bare VMDK, giving the hardware it cannot record
  v2kvm.migrate.ova_info:
    path: /data/exports/db01.vmdk
    vcpus: 4
    memory_mib: 8192
    firmware: uefi

- name: Show the boot disk
  ansible.builtin.debug:
    msg: "{{ web01.spec.disks[0].file }} ({{ web01.spec.disks[0].capacity_bytes }} bytes)"
"""

RETURN = r"""
spec:
  description:
    - The normalized VM spec, exactly as C(docs/vm-spec.md) describes it.
  returned: success
  type: dict
  contains:
    name:
      description: VM name, safe for libvirt.
      type: str
      sample: web01
    original_name:
      description:
        - The name the source gave the VM when it is not a valid domain name and RV(spec.name) was derived
          from it; null when the source's name is used as it is or O(name) was given.
      type: str
    source:
      description: Where the spec came from.
      type: dict
      contains:
        type:
          description: V(ova), V(ovf) or V(vmdk).
          type: str
        path:
          description: Absolute path of the OVA, of the C(.ovf), or of the C(.vmdk).
          type: str
        manifest:
          description:
            - V(sha1), V(sha256), V(sha384) or V(sha512) when a manifest was present and every digest verified,
              else null.
          type: str
    vcpus:
      description: Number of virtual CPUs.
      type: int
    cores_per_socket:
      description: Cores per virtual socket.
      type: int
    memory_mib:
      description: Memory in MiB.
      type: int
    firmware:
      description: V(bios) or V(uefi).
      type: str
    secure_boot:
      description: Whether UEFI secure boot was enabled.
      type: bool
    guest_os:
      description: Guest OS C(id) (VMware osType or CIM id), C(description) and C(family) (linux, windows, other).
      type: dict
    disks:
      description:
        - Disks in controller order; the first is the boot disk. Each has C(id), C(file), C(path)
          (null inside an OVA), C(member), C(offset), C(size), C(format), C(subformat), C(compression),
          C(capacity_bytes), C(populated_bytes), C(controller), C(unit), C(sha256), C(sha1), C(sha384), C(sha512)
          (the verified manifest digest under its algorithm's name, the others null).
      type: list
      elements: dict
    nics:
      description: Network adapters with C(mac) (or null), C(network) and C(model).
      type: list
      elements: dict
    annotation:
      description: Free-text annotation of the VM.
      type: str
  sample:
    name: web01
    original_name: null
    source: {type: ova, path: /data/exports/web01.ova, manifest: sha256}
    vcpus: 2
    cores_per_socket: 1
    memory_mib: 2048
    firmware: bios
    secure_boot: false
    guest_os: {id: debian11_64Guest, description: Debian GNU/Linux 11 (64-bit), family: linux}
    disks:
      - id: vmdisk1
        file: web01-disk1.vmdk
        path: null
        member: web01-disk1.vmdk
        offset: 3584
        size: 123456789
        format: vmdk
        subformat: streamOptimized
        compression: null
        capacity_bytes: 21474836480
        populated_bytes: null
        controller: scsi
        unit: 0
        sha256: 0b6ecb5a0b41b0d0e1e4e0c5e6f0a4b1e8c1d1d6c0b3e1d7e7f0a2c4b6d8e0f1
        sha1: null
        sha384: null
        sha512: null
    nics:
      - {mac: null, network: VM Network, model: vmxnet3}
    annotation: ""
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.module_utils._ovf_parse import (  # noqa: E402
    DEFUSEDXML_IMPORT_ERROR,
    HAS_DEFUSEDXML,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._ova_source import run_module  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            name=dict(type="str"),
            require_manifest=dict(type="bool", default=False),
            verify_manifest=dict(type="bool", default=True),
            probe_disks=dict(type="bool", default=True),
            vcpus=dict(type="int", default=1),
            memory_mib=dict(type="int", default=1024),
            firmware=dict(type="str", choices=["bios", "uefi"], default="bios"),
        ),
        supports_check_mode=True,
    )
    if not HAS_DEFUSEDXML and not module.params["path"].lower().endswith(".vmdk"):
        module.fail_json(msg=missing_required_lib("defusedxml"), exception=DEFUSEDXML_IMPORT_ERROR)
    result = run_module(module.params)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
