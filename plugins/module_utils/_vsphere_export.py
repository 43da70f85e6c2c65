# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a vSphere VM's disks to the conversion host, cold: through an NFC export lease or the datastore
download of the flat files; and what every copy method shares (progress, room checks, state files,
datastore paths). Warm sync is in ``_vsphere_warm``, power handling in ``_vsphere_power``.

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
from ansible_collections.v2kvm.migrate.plugins.module_utils._disk_room import free_bytes, human
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import (
    VsphereError,
    call,
    read_call,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_spec import parse_datastore_path

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


# --------------------------------------------------------------------------- helpers


def local_disk(disk, path, fmt, subformat, size, sha1=None):
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
            disks.append(local_disk(disk, target, "vmdk", "streamOptimized", size, sha1 if entry else None))
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
        return local_disk(disk, target, "raw", None, size), now

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(fetch, disk) for disk in disks]
        try:
            results = [future.result() for future in futures]
        except BaseException:
            cancel.set()
            raise
    return [entry for entry, unused in results], sum(now for unused, now in results)
