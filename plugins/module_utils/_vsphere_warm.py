# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm sync with Changed Block Tracking: a snapshot, the areas changed since the changeIds recorded in dest
(every allocated area the first time) copied into sparse raw copies, the snapshot removed. The state
(``.NAME.v2kvm-warm.json``) lets any later run copy only the delta; the cutover is one more sync with
the VM off. Snapshots serve the datastore download of a running VM too."""

from __future__ import annotations

import os
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_transfer as transfer
from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import allocated_bytes
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import (
    VsphereError,
    call,
    read_call,
    vim,
    wait_task,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_export import (
    Progress,
    datastore_url,
    local_disk,
    read_json,
    require_room,
    write_json_atomic,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_power import power_state, vm_name

SNAPSHOT_NAME = "v2kvm-sync"


def _unallocated(path, areas):
    """Bytes of ``areas`` [(offset, length)] that are holes in ``path`` (all of them if it does not exist):
    what writing them can newly take on the file system."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return sum(length for unused, length in areas)
    try:
        size = os.fstat(fd).st_size
        holes = 0
        for offset, length in areas:
            pos, end = offset, offset + length
            while pos < end:
                if pos >= size:
                    holes += end - pos
                    break
                try:
                    data = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: no data after pos
                    holes += end - pos
                    break
                if data > pos:
                    holes += min(data, end) - pos
                    pos = min(data, end)
                    continue
                pos = min(os.lseek(fd, pos, os.SEEK_HOLE), end)
        return holes
    finally:
        os.close(fd)


def _sync_need(plan):
    """Bytes a warm sync can newly take in dest: a full sync rewrites its file from nothing (the old file's
    blocks are freed first), a delta fills only the holes its areas fall into."""
    need = 0
    for _disk, _device, target, full, areas in plan:
        if full:
            need += max(0, sum(length for unused, length in areas) - allocated_bytes(target))
        else:
            need += _unallocated(target, areas)
    return need


def create_snapshot(conn, vm, name=SNAPSHOT_NAME):
    vm_label = vm_name(conn, vm)
    task = call(conn, "snapshot %s" % vm_label, vm.CreateSnapshot_Task, name=name,
                description="v2kvm.migrate sync point; removed after the copy", memory=False, quiesce=False)
    wait_task(conn, task, "snapshot " + vm_label)
    return read_call(conn, "read the new snapshot", lambda: task.info.result)


def remove_snapshot(conn, vm, snapshot):
    vm_label = vm_name(conn, vm)
    wait_task(conn, call(conn, "remove the sync snapshot of %s" % vm_label, snapshot.RemoveSnapshot_Task,
                         removeChildren=False), "remove the sync snapshot of " + vm_label)


def enable_cbt(conn, vm):
    """Turn on change tracking; vSphere applies it at the next stun, which the sync snapshot causes."""
    if read_call(conn, "read the CBT setting", lambda: vm.config.changeTrackingEnabled):
        return False
    vm_label = vm_name(conn, vm)
    wait_task(conn, call(conn, "enable change tracking on %s" % vm_label, vm.ReconfigVM_Task,
                         spec=vim.vm.ConfigSpec(changeTrackingEnabled=True)), "enable CBT on " + vm_label)
    return True


def changed_areas(conn, vm, snapshot, device_key, change_id, capacity):
    """All (start, length) QueryChangedDiskAreas reports since ``change_id`` ('*' = every allocated area)."""
    areas, offset = [], 0
    while offset < capacity:
        info = read_call(conn, "query changed disk areas", vm.QueryChangedDiskAreas, snapshot=snapshot,
                         deviceKey=device_key, startOffset=offset, changeId=change_id)
        areas.extend((area.start, area.length) for area in (info.changedArea or []))
        if not info.length:
            break
        offset = info.startOffset + info.length
    return areas


def warm_state_path(dest, name):
    return os.path.join(dest, ".%s.v2kvm-warm.json" % name)


def warm_sync(conn, vm, spec, dest, *, timeout, writer=None, guard=None):
    """One sync: snapshot, copy what changed since the recorded changeIds (everything the first time),
    record the new changeIds beside the copies, remove the snapshot. Returns the sync record."""
    state_path = warm_state_path(dest, spec["name"])
    state = _warm_state(state_path, spec)
    records = state.setdefault("disks", {})
    started = time.monotonic()
    snapshot = create_snapshot(conn, vm)
    session = transfer.new_session(conn)
    try:
        plan = _sync_plan(conn, vm, snapshot, spec, dest, records)
        require_room(dest, _sync_need(plan), "the %s sync of %s" % (
            "full" if any(step[3] for step in plan) else "delta", spec["name"]))
        progress = Progress(writer, "sync", sum(length for *unused, areas in plan for unused, length in areas))
        copied = {}
        for disk, device, target, full, areas in plan:
            copied[disk["id"]] = _copy_areas(session, conn, spec, disk, device, target, full, areas,
                                             on_bytes=progress.add, timeout=timeout)
            # Only after the bytes are on disk: a crash before this line re-copies the same areas.
            records[disk["id"]] = {"file": target, "change_id": device.backing.changeId,
                                   "capacity": disk["capacity_bytes"]}
            write_json_atomic(state_path, state)
    finally:
        remove_snapshot(conn, vm, snapshot)
    seconds = round(time.monotonic() - started, 3)
    sync = {"kind": "full" if any(step[3] for step in plan) else "delta", "bytes": sum(copied.values()),
            "bytes_per_disk": copied, "seconds": seconds,
            "areas": sum(len(areas) for *unused, areas in plan), "powered_off": power_state(conn, vm) == "poweredOff"}
    state.setdefault("syncs", []).append(dict(sync, at=int(time.time())))
    write_json_atomic(state_path, state)
    disks = [local_disk(disk, records[disk["id"]]["file"], "raw", None, disk["capacity_bytes"])
             for disk in spec["disks"]]
    for entry in disks:
        entry["change_id"] = records[entry["id"]]["change_id"]
    return sync, disks, state


def _warm_state(state_path, spec):
    """The warm-sync state recorded in dest for this VM (empty the first time), refused when it is another VM's."""
    state = read_json(state_path) or {}
    if state.get("moid") not in (None, spec["source"]["moid"]) or \
            state.get("instance_uuid") not in (None, spec["source"]["instance_uuid"]):
        raise VsphereError("%s holds the warm-sync state of another VM (%s)" % (state_path, state.get("moid")),
                           "use another dest directory, or remove it to start over")
    state.update({"moid": spec["source"]["moid"], "instance_uuid": spec["source"]["instance_uuid"],
                  "vcenter": spec["source"]["vcenter"]})
    return state


def _sync_plan(conn, vm, snapshot, spec, dest, records):
    """[(disk, snapshot device, local target, full copy?, changed areas)] of one sync."""
    snap_disks = {d.key: d for d in read_call(conn, "read the snapshot disks",
                                              lambda: snapshot.config.hardware.device)
                  if isinstance(d, vim.vm.device.VirtualDisk)}
    plan = []
    for disk in spec["disks"]:
        device = snap_disks.get(disk["key"])
        if device is None or not getattr(device.backing, "changeId", None):
            raise VsphereError("the sync snapshot of %s has no change id for disk %s" % (spec["name"], disk["id"]),
                               "CBT is not active yet on that disk: power-cycle the VM or remove all its "
                               "snapshots, then run again")
        target = os.path.join(dest, "%s-%s.raw" % (spec["name"], disk["id"]))
        record = records.get(disk["id"]) or {}
        full = (not record.get("change_id") or not os.path.exists(target)
                or os.path.getsize(target) != disk["capacity_bytes"])
        areas = changed_areas(conn, vm, snapshot, disk["key"], "*" if full else record["change_id"],
                              disk["capacity_bytes"])
        plan.append((disk, device, target, full, areas))
    return plan


def _copy_areas(session, conn, spec, disk, device, target, full, areas, *, on_bytes, timeout):
    """Copy ``areas`` of the snapshot's base disk into ``target`` (made anew, sparse, for a full copy),
    flushed to disk; returns the bytes copied."""
    if full:
        with open(target, "wb") as handle:
            handle.truncate(disk["capacity_bytes"])
    url = datastore_url(conn, spec["source"]["datacenter"], device.backing.fileName)
    with open(target, "r+b") as handle:
        copied = transfer.read_ranges(session, url, areas, handle, on_bytes=on_bytes,
                                      label="disk %s of %s" % (disk["id"], spec["name"]), timeout=timeout)
        handle.flush()
        os.fsync(handle.fileno())
    return copied
