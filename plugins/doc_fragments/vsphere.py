# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The vCenter/ESXi connection every vSphere-facing module takes.
    DOCUMENTATION = r"""
options:
  hostname:
    description:
      - vCenter or ESXi host name or address.
      - Falls back to the E(VMWARE_HOST) environment variable.
    type: str
  username:
    description:
      - Account to log in with. Falls back to E(VMWARE_USER).
    type: str
  password:
    description:
      - Password of O(username). Falls back to E(VMWARE_PASSWORD). Keep it in Ansible Vault; it is never
        logged nor shown in any message.
    type: str
  port:
    description:
      - HTTPS port of the vSphere API. Falls back to E(VMWARE_PORT).
    type: int
    default: 443
  validate_certs:
    description:
      - Verify the TLS certificate of the server (also for disk downloads). Falls back to E(VMWARE_VALIDATE_CERTS).
      - Turn off only for a lab; trust the vCenter CA in the system store instead.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for one answer of the API or one block of a download before giving up with a clear error.
    type: int
    default: 60
  name:
    description:
      - Name of the VM in vCenter. One of O(name), O(moid) or O(uuid) selects the VM.
    type: str
  moid:
    description:
      - Managed object id of the VM, for example V(vm-42).
    type: str
  uuid:
    description:
      - Instance UUID or BIOS UUID of the VM.
    type: str
  datacenter:
    description:
      - Only look for the VM in this datacenter.
    type: str
  folder:
    description:
      - Only look for the VM in this VM folder (path below the datacenter's C(vm) folder, for example V(prod/web)).
    type: str
requirements:
  - pyVmomi >= 8.0 on the host the module runs on
"""
