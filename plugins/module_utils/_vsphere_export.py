# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a vSphere VM's disks to the conversion host: NFC export lease, datastore download, and
warm sync with Changed Block Tracking. Power handling wraps all three (see ``PowerGuard``).

Every function returns disk entries of the VM spec pointing at local files, which
``disk_convert`` consumes like any other source disk.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlsplit, urlunsplit

from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_transfer as transfer
from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import allocated_bytes, free_bytes, human
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import (
    VsphereError,
    call,
    read_call,
    vim,
    wait_task,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_spec import parse_datastore_path

SNAPSHOT_NAME = "v2kvm-sync"
# Resuming a .part through a new lease reads the stream head again (header + descriptor fit in 64 KiB
# for every VMDK vSphere writes) and compares the last RESUME_PROBE bytes kept with the new lease's.
RESUME_HEAD = 64 * 1024
RESUME_PROBE = 1024 * 1024
# A download whose connection breaks is resumed with Range this many times in all, waiting TRANSFER_BACKOFF
# seconds before the second attempt and twice as long before each next one.
TRANSFER_ATTEMPTS = 5
TRANSFER_BACKOFF = 1.0


class Progress:
    """Thread-safe byte counter feeding a ProgressWriter (or nothing)."""

    def __init__(self, writer, stage, total):
        self.writer = writer
        self.stage = stage
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def add(self, count, resumed=False):
        with self._lock:
            self.done += count
            if self.writer is not None:
                self.writer.update(self.stage, self.done, max(self.total, self.done))

    def set_stage(self, stage, total=None):
        with self._lock:
            self.stage = stage
            if total is not None:
                self.total, self.done = total, 0
            if self.writer is not None:
                self.writer.update(stage, self.done, max(self.total, self.done))


# --------------------------------------------------------------------------- power


def power_state(conn, vm):
    return str(read_call(conn, "read the power state", lambda: vm.runtime.powerState))


def vm_name(conn, vm):
    """The VM's name; a property read goes over the network too, so it is retried like any read."""
    return str(read_call(conn, "read the VM name", lambda: vm.name))


class PowerGuard:
    """Powers the VM off (guest shutdown first, hard power-off only when allowed) and, if anything
    fails afterwards, powers it on again when it was running before: ``with PowerGuard(...) as guard``."""

    def __init__(self, conn, vm, *, shutdown_timeout, allow_hard_power_off, wanted_off):
        self.conn, self.vm = conn, vm
        self.shutdown_timeout = shutdown_timeout
        self.allow_hard = allow_hard_power_off
        self.wanted_off = wanted_off
        self.original = None
        self.actions = []

    def __enter__(self):
        self.original = power_state(self.conn, self.vm)
        if self.wanted_off and self.original != "poweredOff":
            self.power_off()
        return self

    def power_off(self):
        if power_state(self.conn, self.vm) == "poweredOff":
            return
        name = vm_name(self.conn, self.vm)
        if self.original == "poweredOn":
            try:
                call(self.conn, "shut down the guest of %s" % name, self.vm.ShutdownGuest)
                self.actions.append("guest shutdown")
                deadline = time.monotonic() + self.shutdown_timeout
                while time.monotonic() < deadline:
                    if power_state(self.conn, self.vm) == "poweredOff":
                        return
                    time.sleep(min(1.0, max(0.05, self.shutdown_timeout / 50)))
                why = "did not power off within %d s of a guest shutdown" % self.shutdown_timeout
            except VsphereError as exc:
                why = "refused a guest shutdown (%s)" % exc.problem
        else:
            why = "is %s" % self.original
        if not self.allow_hard:
            raise VsphereError("VM %s %s; a hard power-off was not allowed" % (name, why),
                               "shut the guest down yourself, raise shutdown_timeout, or set "
                               "allow_hard_power_off: true to accept a crash-consistent copy")
        wait_task(self.conn, call(self.conn, "power off %s" % name, self.vm.PowerOffVM_Task), "power off " + name,
                  timeout=max(60, self.conn.timeout))
        self.actions.append("hard power-off")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.original == "poweredOn" and self.actions:
            try:
                if power_state(self.conn, self.vm) != "poweredOn":
                    wait_task(self.conn, self.vm.PowerOnVM_Task(), "power on " + vm_name(self.conn, self.vm),
                              timeout=300)
                    self.actions.append("powered on again after the failure")
            except Exception as restore_exc:  # keep the original error; say the VM is left off
                self.actions.append("could NOT power it on again (%s): start it by hand" % type(restore_exc).__name__)
        return False


# --------------------------------------------------------------------------- helpers


def _local_disk(disk, path, fmt, subformat, size, sha1=None):
    entry = copy.deepcopy(disk)
    entry.update({"source_path": disk["path"], "path": path, "member": None, "offset": 0, "size": size,
                  "format": fmt, "subformat": subformat, "compression": None, "sha1": sha1, "sha256": None})
    return entry


def require_room(dest, need, what):
    """Refuse, before a byte is written, a copy that the file system holding ``dest`` cannot take."""
    free = free_bytes(dest)
    if need > free:
        raise VsphereError("not enough free space in %s for %s: it needs %s (%d bytes) and the file system has %s "
                           "(%d bytes) free" % (dest, what, human(need), need, human(free), free),
                           "free at least %s there, or choose a dest directory on a file system with room"
                           % human(need - free))


def _size_or_zero(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


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


def datastore_need(spec, dest):
    """Bytes a datastore download of every disk still writes into dest (flat files are copied whole; a kept
    ``.part`` is resumed)."""
    return sum(max(0, int(disk["capacity_bytes"]) - _size_or_zero(
        os.path.join(dest, "%s-%s.raw.part" % (spec["name"], disk["id"])))) for disk in spec["disks"])


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, value):
    """Write ``value`` to ``path`` through a flushed temporary; a full disk (or any write error) becomes a
    VsphereError naming the file and the fix, and leaves no temporary behind."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path) or ".")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise VsphereError("cannot write the state file %s: %s" % (path, exc.strerror or exc),
                           "free space on the file system holding %s (or fix its permissions), then run again"
                           % (os.path.dirname(path) or ".")) from None


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _inside_datastore(datastore_path, what):
    """('ds', 'dir/file.vmdk') of a datastore path, refused when the file would lie outside its datastore
    (an absolute or ``..`` path: a corrupt or hostile VM configuration)."""
    datastore, rel = parse_datastore_path(datastore_path)
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or ".." in parts or "\x00" in rel:
        problem = "the backing file of %s, %r, lies outside its datastore %s" % (what, datastore_path, datastore)
        raise VsphereError(problem,
                           "re-attach the disk in vCenter from its file inside the datastore; a path that leaves the "
                           "datastore is never read")
    return datastore, rel


def check_exportable(spec):
    """Refuse, before any power operation or download, a disk no copy method can read: a physical-mode raw
    device mapping (its data is on a LUN that vSphere neither exports nor snapshots) or a backing path outside
    its datastore."""
    for disk in spec["disks"]:
        what = "disk %s of %s" % (disk["id"], spec["name"])
        if disk.get("rdm") == "physicalMode":
            raise VsphereError("%s is a physical-mode raw device mapping (%s): its data is on a LUN that vSphere can "
                               "neither export nor snapshot" % (what, disk.get("datastore_path")),
                               "migrate the LUN separately (present it to the KVM host) or convert the RDM to a "
                               "virtual disk with Storage vMotion, then run again")
        _inside_datastore(disk.get("datastore_path"), what)


def datastore_url(conn, datacenter, datastore_path, flat=True):
    datastore, rel = _inside_datastore(datastore_path, "a disk")
    if flat and rel.endswith(".vmdk") and not rel.endswith("-flat.vmdk"):
        rel = rel[:-len(".vmdk")] + "-flat.vmdk"
    return "%s/folder/%s?dcPath=%s&dsName=%s" % (
        conn.base_url, quote(rel), quote(datacenter or ""), quote(datastore))


# --------------------------------------------------------------------------- NFC export


def _lease_url(conn, url):
    parts = urlsplit(url)
    host = parts.netloc
    if host.startswith("*"):  # ESXi and vCenter put "*" for "the host you talked to"
        host = "%s:%d" % (conn.host, conn.port) if conn.port != 443 else conn.host
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _match_device_url(disks, device_url, index):
    """The spec disk an NFC deviceUrl belongs to: by controller kind, bus and unit in its key."""
    key = device_url.key or ""
    tail = key.rsplit("/", 1)[-1]
    kinds = (("scsi", ("SCSI", "LsiLogic", "BusLogic")), ("ide", ("IDE",)), ("sata", ("SATA", "AHCI")),
             ("nvme", ("NVME", "NVMe")))
    kind = next((name for name, words in kinds if any(word in tail for word in words)), None)
    match = re.search(r"(\d+):(\d+)$", tail)
    bus, unit = (int(match.group(1)), int(match.group(2))) if match else (None, None)
    for disk in disks:
        if kind == disk["controller"] and bus == disk.get("bus") and unit == disk["unit"]:
            return disk
    return disks[index] if index < len(disks) else None


def _wait_lease_ready(conn, lease, timeout):
    deadline = time.monotonic() + timeout
    while True:
        state = read_call(conn, "read the export lease state", lambda: lease.state)
        if state == "ready":
            return
        if state == "error":
            error = read_call(conn, "read the export lease error", lambda: lease.error)
            raise VsphereError("vCenter could not prepare the export: %s" % getattr(error, "msg", error),
                               "see the export task in vCenter; check the VM's disks are accessible")
        if time.monotonic() > deadline:
            raise VsphereError("the export lease was not ready within %d s" % timeout,
                               "retry when the host is less busy or raise the timeout option")
        time.sleep(0.2)


def _partial_identity(spec, disk, device_url):
    """What a .part left by an earlier lease must match to be resumed: the same VM and disk, the same
    backing file and size. The lease URL is not part of it: every lease has a new one."""
    return {"moid": spec["source"]["moid"], "instance_uuid": spec["source"].get("instance_uuid"),
            "disk_key": disk.get("key"), "datastore_path": disk.get("datastore_path"),
            "capacity": disk["capacity_bytes"], "file_size": device_url.fileSize or None}


def _stream_head_length(head):
    """Bytes before the first grain of a streamOptimized VMDK (header + embedded descriptor), from its
    first sector; 0 when ``head`` is not a sparse VMDK header."""
    if len(head) < 512 or head[:4] != b"KDMV":
        return 0
    return struct.unpack_from("<Q", head, 64)[0] * 512  # overHead, in sectors


def _adopt_earlier_part(session, url, part, *, label, timeout):
    """Make a .part downloaded through an earlier lease resumable through this one; returns the bytes
    read from the server to check it, or None when it must be dropped.

    A new lease streams the same grains for the same disk content, but its header and embedded
    descriptor carry new ids (CID, content id): those are rewritten from the new lease, and the last
    stretch of the kept data is compared with what the new lease serves there. The manifest check at
    the end still catches a resume that this sample missed."""
    have = os.path.getsize(part)
    if have <= RESUME_HEAD + RESUME_PROBE:  # too little kept to be worth checking
        return None
    try:
        head = transfer.fetch_range(session, url, 0, RESUME_HEAD, label=label, timeout=timeout)
        head_length = _stream_head_length(head)
        if not head_length or head_length > len(head):
            return None
        start = max(head_length, have - RESUME_PROBE)
        remote = transfer.fetch_range(session, url, start, have - start, label=label, timeout=timeout)
    except transfer.RangeNotServed:  # a host that cannot resume: the download starts over
        return None
    with open(part, "r+b") as handle:
        handle.seek(start)
        if handle.read(have - start) != remote:
            return None
        handle.seek(0)
        handle.write(head[:head_length])
        handle.flush()
        os.fsync(handle.fileno())
    return len(head) + len(remote)


def export_nfc(conn, vm, spec, dest, *, parallel, keepalive, timeout, writer=None, retries=TRANSFER_ATTEMPTS):
    """Download every disk through an ExportVm lease; returns (disks, bytes fetched now, manifest checks).

    A disk left partly downloaded by an earlier run (``<dest>/<name>-<disk>.vmdk.part``, described by the
    ``.part.json`` beside it) is resumed through this lease; see ``_adopt_earlier_part``."""
    lease = call(conn, "start an export (ExportVm) of %s" % spec["name"], vm.ExportVm)
    export = _NfcExport(conn, lease, spec, dest, timeout=timeout, retries=retries)
    try:
        _wait_lease_ready(conn, lease, timeout)
        jobs = export.plan(read_call(conn, "read the export lease", lambda: lease.info))
        export.start(jobs, writer, keepalive)
        results = export.fetch_all(jobs, parallel)
        export.progress.set_stage("verify")
        disks, fetched, checks = export.verify(jobs, results)
        export.stop_keepalive.set()
        call(conn, "complete the export lease", lease.HttpNfcLeaseProgress, 100)
        call(conn, "complete the export lease", lease.HttpNfcLeaseComplete)
        return disks, fetched, checks
    except BaseException:
        export.stop_keepalive.set()
        try:
            lease.HttpNfcLeaseAbort()
        except Exception:  # noqa: S110 - the lease times out on its own when not aborted
            pass
        raise
    finally:
        export.session.close()


class _NfcExport:
    """The disks of one export lease: which file each goes to, their download (resuming a kept ``.part``),
    the lease keep-alive, and the check against the lease manifest."""

    def __init__(self, conn, lease, spec, dest, *, timeout, retries):
        self.conn, self.lease, self.spec, self.dest = conn, lease, spec, dest
        self.timeout, self.retries = timeout, retries
        self.cancel = threading.Event()
        self.stop_keepalive = threading.Event()
        self.session = transfer.new_session(conn)
        self.progress = None

    def plan(self, info):
        """[(spec disk, deviceUrl, local target)] for the disks the lease offers; refuses room it cannot take."""
        jobs = []
        for index, device_url in enumerate(u for u in info.deviceUrl if u.disk):
            disk = _match_device_url(self.spec["disks"], device_url, index)
            if disk is None:
                raise VsphereError("the export lease offers a disk (%s) the VM spec does not list" % device_url.key,
                                   "run vsphere_vm_info again: the VM changed while it was read")
            jobs.append((disk, device_url, os.path.join(self.dest, "%s-%s.vmdk" % (self.spec["name"], disk["id"]))))
        # A kept .part is either resumed or replaced: its bytes count as room either way.
        require_room(self.dest, sum(max(0, (device_url.fileSize or disk["capacity_bytes"])
                                        - _size_or_zero(target + ".part")) for disk, device_url, target in jobs),
                     "the export of %s" % self.spec["name"])
        return jobs

    def start(self, jobs, writer, keepalive):
        """Count progress against the lease's file sizes and keep the lease alive every ``keepalive`` s."""
        total = (sum(job[1].fileSize or 0 for job in jobs)
                 or sum(job[0]["capacity_bytes"] for job in jobs))
        self.progress = Progress(writer, "export", total)

        def keep_alive():
            while not self.stop_keepalive.wait(keepalive):
                percent = int(min(99, 100 * self.progress.done / total)) if total else 0
                try:
                    self.lease.HttpNfcLeaseProgress(percent)
                except Exception:  # noqa: S110 - a missed keep-alive is retried next interval
                    pass

        threading.Thread(target=keep_alive, name="nfc-keepalive", daemon=True).start()

    def fetch(self, job, fresh=False):
        """(sha1, size, bytes fetched now, whether bytes of an earlier lease were kept)."""
        disk, device_url, target = job
        url = _lease_url(self.conn, device_url.url)
        label = "disk %s of %s" % (disk["id"], self.spec["name"])
        part, about = target + ".part", target + ".part.json"
        identity = _partial_identity(self.spec, disk, device_url)
        fetched, earlier = 0, False
        if os.path.exists(part) and not fresh and read_json(about) == identity:
            probed = _adopt_earlier_part(self.session, url, part, label=label, timeout=self.timeout)
            earlier = probed is not None
            fetched += probed or 0
        if not earlier and os.path.exists(part):
            os.unlink(part)
        write_json_atomic(about, identity)
        # A broken connection is opened again and the download resumed with Range, within this lease.
        sha1, size, now = transfer.download(
            self.session, url, target, label=label, expected_size=device_url.fileSize or None,
            on_bytes=self.progress.add, timeout=self.timeout, cancel=self.cancel, retries=self.retries,
            backoff=TRANSFER_BACKOFF)
        os.unlink(about)
        return sha1, size, fetched + now, earlier

    def fetch_all(self, jobs, parallel):
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(self.fetch, job) for job in jobs]
            try:
                return [future.result() for future in futures]
            except BaseException:
                self.cancel.set()
                raise

    def verify(self, jobs, results):
        """Check every download against the lease manifest; returns (disks, bytes fetched, manifest checks)."""
        manifest = {entry.key: entry for entry in (read_call(self.conn, "read the export manifest",
                                                             self.lease.HttpNfcLeaseGetManifest) or [])}
        disks, checks, fetched = [], [], 0
        for job, (sha1, size, now, earlier) in zip(jobs, results):
            disk, device_url, target = job
            entry = manifest.get(device_url.key)
            redone = False
            if earlier and (entry is None or not _manifest_matches(entry, sha1, size)):
                # Bytes of an earlier lease that this lease's manifest does not confirm (or cannot, without
                # a manifest entry): download this disk once more from the start.
                fetched += now
                os.unlink(target)
                sha1, size, now, unused = self.fetch(job, fresh=True)
                redone = True
            fetched += now
            if entry is not None and not _manifest_matches(entry, sha1, size):
                os.unlink(target)
                raise VsphereError("disk %s of %s does not match the export manifest (sha1 %s, expected %s)"
                                   % (disk["id"], self.spec["name"], sha1, entry.sha1),
                                   "run again to download it anew; if it persists check the datastore")
            checks.append({"disk": disk["id"], "sha1": sha1, "size": size, "verified": entry is not None,
                           "resumed": earlier and not redone, "redownloaded": redone})
            disks.append(_local_disk(disk, target, "vmdk", "streamOptimized", size, sha1 if entry else None))
        return disks, fetched, checks


def _manifest_matches(entry, sha1, size):
    return entry.sha1.lower() == sha1 and (not entry.size or entry.size == size)


# --------------------------------------------------------------------------- datastore download


def export_datastore(conn, spec, dest, *, parallel, timeout, writer=None, disk_paths=None, retries=TRANSFER_ATTEMPTS):
    """Download each disk's -flat.vmdk through the datastore /folder URL (raw results); a broken connection is
    opened again and the download resumed with Range (``retries`` attempts in all)."""
    disks = spec["disks"]
    progress = Progress(writer, "export", sum(d["capacity_bytes"] for d in disks))
    session = transfer.new_session(conn)
    cancel = threading.Event()

    def fetch(disk):
        for what, forbidden in (("rdm", disk.get("rdm")), ("subformat", disk.get("subformat") not in ("vmfs", None))):
            if forbidden:
                raise VsphereError("disk %s of %s is not a flat VMFS disk (%s)" % (disk["id"], spec["name"], what),
                                   "use method: nfc, which exports any disk type")
        source = (disk_paths or {}).get(disk["id"]) or disk["datastore_path"]
        target = os.path.join(dest, "%s-%s.raw" % (spec["name"], disk["id"]))
        sha1, size, now = transfer.download(session, datastore_url(conn, spec["source"]["datacenter"], source),
                                            target, label="disk %s of %s" % (disk["id"], spec["name"]),
                                            expected_size=disk["capacity_bytes"], on_bytes=progress.add,
                                            timeout=timeout, cancel=cancel, retries=retries,
                                            backoff=TRANSFER_BACKOFF)
        return _local_disk(disk, target, "raw", None, size), now

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(fetch, disk) for disk in disks]
        try:
            results = [future.result() for future in futures]
        except BaseException:
            cancel.set()
            raise
    return [entry for entry, unused in results], sum(now for unused, now in results)


# --------------------------------------------------------------------------- snapshots and CBT


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
    disks = [_local_disk(disk, records[disk["id"]]["file"], "raw", None, disk["capacity_bytes"])
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
