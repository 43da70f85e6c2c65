#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vsphere_export
short_description: Copy a vSphere VM's disks to the conversion host (NFC export, datastore download or warm CBT sync)
version_added: 0.2.0
description:
  - Copies every disk of one VM into O(dest) and returns the VM spec whose C(disks) point at the local copies,
    ready for M(v2kvm.migrate.disk_convert).
  - O(method=nfc) (cold) exports through an C(ExportVm) lease, as ovftool does. It writes streamOptimized VMDKs,
    several disks in parallel (O(parallel_disks)), sends a lease keep-alive every O(lease_keepalive) seconds and
    checks each file against the lease manifest (sha1 and size). The VM must be powered off; see the power options.
  - O(method=datastore) (cold) downloads each disk's C(-flat.vmdk) through the datastore C(/folder) URL (raw
    result), for accounts or hosts where NFC export is not allowed. A running VM is read from a snapshot's base
    disks (crash-consistent) when O(power_off=false).
  - O(method=warm) keeps the VM running. It enables Changed Block Tracking, takes a snapshot, copies all allocated
    areas the first time and afterwards only the areas C(QueryChangedDiskAreas) reports since the recorded
    changeIds, then removes the snapshot. The changeIds are kept in C(.NAME.v2kvm-warm.json) in O(dest), so any
    re-run resumes with a delta. O(cutover=true) powers the VM off first, so the last delta makes the copy final.
  - Free space in O(dest) is checked before anything is written, and a copy that cannot fit fails with both
    sizes and the fix. With O(method=datastore) the need is known up front (the flat files' size), so the
    check runs before any power operation and in check mode. With O(method=nfc) it runs once the export lease
    gives the file sizes, after the power-off, and the VM is powered on again. With O(method=warm) each sync
    checks, after its changed-area query, the bytes that would fill holes of the copies.
  - Downloads resume with HTTP C(Range) from the C(.part) file a broken or killed run left behind. With
    O(method=nfc) the new run gets a new lease; a C(.part) described (in the C(.part.json) beside it) as the same
    VM, disk and backing file is resumed through it after its last MiB was compared with what the new lease
    serves; if the lease manifest then does not confirm the whole file, the disk is downloaded again from the start.
  - A connection that breaks mid-download is opened again and the download resumed with C(Range) in the same run
    (5 attempts, waiting 1 to 8 seconds); vSphere calls that only read are retried the same way. A O(dest) that
    fills up fails naming the file system and the bytes still to come, and keeps the C(.part) for the next run.
    A physical-mode RDM disk, or a disk whose backing path leaves its datastore, is refused before the VM is
    touched.
  - While it works (not in check mode) the module holds an flock on C(.NAME.v2kvm.lock) beside O(dest). An
    export into the same O(dest) left running by a killed run of the same job (same O(progress_file)) is stopped
    first (its C(.part) files stay resumable); one of another run is waited for, and stopped only once its
    controller has not polled it for 30 seconds.
  - Power handling. A running VM is shut down through the guest (VMware Tools) and waited for up to O(shutdown_timeout)
    seconds; a hard power-off happens only with O(allow_hard_power_off=true). If anything fails after this
    module powered the VM off, it powers the VM on again. After a successful cold export the VM stays off.
options:
  dest:
    description:
      - Directory on the host the module runs on that receives the disk copies and the state files. Must exist.
    type: path
    required: true
  method:
    description:
      - How the disks are copied, see the description.
    type: str
    choices: [nfc, datastore, warm]
    default: nfc
  power_off:
    description:
      - Power the VM off before a cold copy (O(method=nfc) needs it). With O(method=datastore) and V(false) a running
        VM is copied from a snapshot. Ignored with O(method=warm) (see O(cutover)).
    type: bool
    default: true
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to power off after a guest shutdown request.
    type: int
    default: 300
  allow_hard_power_off:
    description:
      - Power the VM off hard when the guest shutdown fails or times out (the copy is then crash-consistent).
    type: bool
    default: false
  parallel_disks:
    description:
      - How many disks download at the same time.
    type: int
    default: 2
  lease_keepalive:
    description:
      - Seconds between C(HttpNfcLeaseProgress) calls that keep the export lease alive and show progress in vCenter.
    type: int
    default: 30
  cutover:
    description:
      - With O(method=warm), power the VM off (see the power options) and run the final delta sync.
    type: bool
    default: false
  downtime_budget:
    description:
      - With O(method=warm) and O(cutover=false), keep running syncs until the last delta sync took at most this many
        seconds (the cutover repeats one delta with the VM off, so that is the estimated downtime), at most
        O(max_syncs) syncs. When the budget is still not met, the module returns RV(budget_met=false) with a
        warning naming the fix. V(0) runs one sync.
    type: int
    default: 0
  max_syncs:
    description:
      - Most syncs one run makes while trying to meet O(downtime_budget).
    type: int
    default: 5
  force:
    description:
      - Copy again even when a completed cold export of the same VM is recorded in O(dest).
    type: bool
    default: false
  progress_file:
    description:
      - When set, JSON lines C({"ts", "stage", "done", "total", "rate", "eta"}) are appended while disks are copied
        (C(stage=export), C(verify), C(sync)), and a last line with C(stage=done) or C(failed). Bytes are bytes
        transferred.
    type: path
extends_documentation_fragment:
  - v2kvm.migrate.vsphere
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Connects and finds the VM, then reports what it would do without touching the VM or O(dest).
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: A cold export recorded as complete in O(dest) is not repeated; a warm sync always copies the delta.
    support: partial
notes:
  - The disk copies land on the host the module runs on; delegate it to the conversion host.
  - Warm sync reads changed areas through the datastore C(/folder) URL of the snapshot's base disks.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Cold export through NFC into the conversion host's work dir
  v2kvm.migrate.vsphere_export:
    hostname: vcenter.example.com
    username: migrator@vsphere.local
    password: "{{ vault_vcenter_password }}"
    name: web01
    dest: /var/lib/v2kvm/work/web01
    allow_hard_power_off: false
  delegate_to: kvm01
  register: export

- name: Warm sync while the VM runs (repeat as often as wanted)
  v2kvm.migrate.vsphere_export:
    name: db01
    dest: /var/lib/v2kvm/work/db01
    method: warm
    downtime_budget: 60

- name: Cut over (power off, last delta)
  v2kvm.migrate.vsphere_export:
    name: db01
    dest: /var/lib/v2kvm/work/db01
    method: warm
    cutover: true
"""

RETURN = r"""
spec:
  description: The VM spec read from vCenter with C(disks) pointing at the local copies (C(source_path) keeps
    the original C(/vmfs/volumes/...) path).
  returned: success
  type: dict
disks:
  description: The local disk entries (the same as the C(disks) of RV(spec)).
  returned: success
  type: list
  elements: dict
method:
  description: The copy method used.
  returned: always
  type: str
  sample: nfc
bytes_fetched:
  description: Bytes transferred by this run (a resumed download counts only the rest).
  returned: success
  type: int
original_power_state:
  description: Power state of the VM when the module started.
  returned: success
  type: str
  sample: poweredOn
power_actions:
  description: What the module did to the VM's power (guest shutdown, hard power-off, powered on again).
  returned: always
  type: list
  elements: str
manifest:
  description: Per disk, the C(sha1) and C(size) of the export, whether the lease manifest confirmed it (C(verified)),
    whether bytes downloaded by an earlier run were kept (C(resumed)) or thrown away because the manifest did not
    confirm them (C(redownloaded)).
  returned: when method=nfc
  type: list
  elements: dict
sync:
  description: The last warm sync, with C(kind) (full or delta), C(bytes), C(bytes_per_disk), C(areas), C(seconds).
  returned: when method=warm
  type: dict
syncs:
  description: Every sync made by this run.
  returned: when method=warm
  type: list
  elements: dict
estimated_cutover_seconds:
  description: Estimated duration of the final delta, the duration of the last sync of this run.
  returned: when method=warm
  type: float
budget_met:
  description: Whether the last sync was a delta that fits in O(downtime_budget).
  returned: when method=warm and O(downtime_budget) is set without O(cutover)
  type: bool
change_ids:
  description: Disk id to the changeId the local copy now matches (kept in O(dest) too).
  returned: when method=warm
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn
from ansible_collections.v2kvm.migrate.plugins.module_utils._export_reconciler import run_module
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_module import connection_argument_spec


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        dest=dict(type="path", required=True),
        method=dict(type="str", default="nfc", choices=["nfc", "datastore", "warm"]),
        power_off=dict(type="bool", default=True),
        shutdown_timeout=dict(type="int", default=300),
        allow_hard_power_off=dict(type="bool", default=False),
        parallel_disks=dict(type="int", default=2),
        lease_keepalive=dict(type="int", default=30),
        cutover=dict(type="bool", default=False),
        downtime_budget=dict(type="int", default=0),
        max_syncs=dict(type="int", default=5),
        force=dict(type="bool", default=False),
        progress_file=dict(type="path"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("name", "moid", "uuid")],
                           required_one_of=[("name", "moid", "uuid")])
    if not vconn.HAS_PYVMOMI:
        module.fail_json(msg=missing_required_lib("pyvmomi"), exception=str(vconn.PYVMOMI_IMPORT_ERROR))
    run_module(module)


if __name__ == "__main__":
    main()
