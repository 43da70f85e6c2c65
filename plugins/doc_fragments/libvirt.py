# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The libvirt connection every libvirt-facing module takes.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor to manage, for example V(qemu:///system) (the local
        system daemon) or V(qemu+ssh://root@kvm01/system).
      - The module talks to libvirt through libvirt-python; it never runs C(virsh).
      - When the URI cannot be opened the error says why (unknown URI, no daemon listening, permission
        denied, host unreachable) and what to do about it.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python >= 9.0 (C(pip install libvirt-python) or the C(python3-libvirt) package) on the target
  - a running libvirt daemon reachable through O(uri)
"""

    # Shared attributes of modules that change libvirt state; extend together with
    # ansible.builtin.action_common_attributes, which describes check_mode, diff_mode and platform.
    ATTRIBUTES = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
  idempotent:
    description: Running the module twice with the same options changes nothing the second time.
    support: full
"""
