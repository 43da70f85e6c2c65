# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Move a libvirt domain from one KVM node to another: the safety checks and the live migration.

Live: one ``migrateToURI3`` (peer-to-peer, persistent destination, source undefined on success,
optional copy of every disk over NBD) runs in a worker thread while this thread reads job stats
into the progress file, sets the maximum downtime once the job exists, switches to post-copy when
the migration does not converge in time, and aborts it at the time limit. libvirt rolls a failed
or aborted pre-copy migration back on its own: the guest keeps running on the source.

The cold migration is in ``_cold_migration``; what to do for one run is decided in
``_migration_reconciler``.

Plain Python over libvirt-python, free of Ansible imports.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import (
    lookup_pool, lookup_volume_by_path, parse_xml)
from ansible_collections.v2kvm.migrate.plugins.module_utils._stop_signal import Interrupted

try:
    import libvirt
except ImportError:  # the module reports missing_required_lib before calling anything here
    libvirt = None

MIB = 1024 * 1024
UNDEFINE_FLAGS_NAMES = ("VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_MANAGED_SAVE",
                        "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA")


class MigrationRefused(Exception):
    """A safety check failed before anything was touched."""


class MigrationFailed(Exception):
    """The migration started and failed; the message says where the guest is now."""


def undefine_flags():
    """Undefine flags that also drop NVRAM, managed save and snapshot metadata (where libvirt has them)."""
    flags = 0
    for name in UNDEFINE_FLAGS_NAMES:
        flags |= getattr(libvirt, name, 0)
    return flags


# -- safety checks --------------------------------------------------------------------------------

def resolve_nodes(nodes, source, target):
    """(source node, target node) dicts from the cluster list, or MigrationRefused."""
    by_name = {}
    for node in nodes:
        if not node.get("name") or not node.get("uri"):
            raise MigrationRefused("every node needs a name and a uri; got %r" % (node,))
        by_name[node["name"]] = node
    for name in (source, target):
        if name not in by_name:
            raise MigrationRefused("Node %s not found in cluster (known nodes: %s)"
                                   % (name, ", ".join(sorted(by_name)) or "none"))
    if source == target or by_name[source]["uri"] == by_name[target]["uri"]:
        raise MigrationRefused("Target node must be different from source node (both are %s)" % source)
    return by_name[source], by_name[target]


def check_distinct_hosts(src_conn, dst_conn, source, target):
    """Two node names can point at one daemon; the host UUID tells them apart."""
    src_uuid = parse_xml(src_conn.getCapabilities()).findtext("host/uuid")
    dst_uuid = parse_xml(dst_conn.getCapabilities()).findtext("host/uuid")
    if src_uuid and src_uuid == dst_uuid:
        raise MigrationRefused("Target node must be different from source node (%s and %s are the same host, "
                               "UUID %s)" % (source, target, src_uuid))


def storage_needed(src_conn, disks):
    """Bytes the copied disks take (their files' allocation) on the source."""
    total = 0
    for disk in disks:
        vol = lookup_volume_by_path(src_conn, disk["path"])
        if vol is not None:
            total += int(vol.info()[2])
    return total


def check_capacity(dst_conn, target, memory_mib, disk_bytes, pool_name):
    free_mib = dst_conn.getFreeMemory() // MIB
    if memory_mib > free_mib:
        raise MigrationRefused("Not enough capacity on node %s: the VM needs %d MiB of memory, %d MiB are free"
                               % (target, memory_mib, free_mib))
    if disk_bytes and pool_name:
        pool = lookup_pool(dst_conn, pool_name)
        if pool is None:
            raise MigrationRefused("storage pool %s does not exist on node %s: create it (v2kvm.migrate.storage_pool) "
                                   "or set target_pool" % (pool_name, target))
        if pool.isActive():
            pool.refresh(0)
        available = pool.info()[3]
        if disk_bytes > available:
            raise MigrationRefused("Not enough capacity on node %s: the disks need %d MiB in pool %s, %d MiB are free"
                                   % (target, disk_bytes // MIB, pool_name, available // MIB))


# -- live -----------------------------------------------------------------------------------------

def live_flags(opts):
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
             | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    if opts.get("copy_storage") == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    if opts.get("auto_converge"):
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if opts.get("post_copy"):
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    return flags


def live_params(opts):
    params = {}
    if opts.get("migrate_uri"):
        params[libvirt.VIR_MIGRATE_PARAM_URI] = opts["migrate_uri"]
    if opts.get("bandwidth_mib"):
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(opts["bandwidth_mib"])
    return params


def live_migrate(src_dom, target_uri, opts, progress=None, poll=0.5, clock=time.monotonic):
    """Run the live migration; return {"escalated": [...], "elapsed": s} plus "abort_missed" (why) when
    the time limit or a stop came but the job completed anyway.

    ``opts``: copy_storage (all|none), migrate_uri, bandwidth_mib, max_downtime_ms, auto_converge,
    post_copy, post_copy_after (s), timeout (s). ``progress`` has update(stage, done, total).
    """
    job = _LiveJob(src_dom, opts, progress)
    started = clock()
    thread, outcome = _start_migration(src_dom, target_uri, opts)
    while thread.is_alive():
        try:
            thread.join(poll)
            if not thread.is_alive():
                break
            job.watch(clock() - started)
        except Interrupted as exc:
            # The module's SIGTERM handler (the run was stopped, or the orphan watchdog fired) raised here:
            # the migration is aborted below like a timed-out one, so the guest stays on its source.
            if not job.stop(exc):
                continue
        job.abort_if_due()
    elapsed = clock() - started
    if outcome.get("error") is not None:
        raise job.failure(outcome["error"], elapsed)
    return job.outcome(elapsed)


def _start_migration(src_dom, target_uri, opts):
    """``migrateToURI3`` in a worker thread (it blocks until the job ends); its error lands in the dict."""
    outcome = {}

    def worker():
        try:
            src_dom.migrateToURI3(target_uri, live_params(opts), live_flags(opts))
        except BaseException as exc:  # handed to the monitoring thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=worker, name="migrateToURI3", daemon=True)
    thread.start()
    return thread, outcome


class _LiveJob:
    """What the monitoring thread did to one running live migration job, poll after poll."""

    def __init__(self, dom, opts, progress):
        self.dom, self.opts, self.progress = dom, opts, progress
        self.escalated = []
        self.downtime_set = not opts.get("max_downtime_ms")
        self.aborted = None  # why the job is to be aborted (time limit, stop), once it is
        self.refusal = None  # what libvirt said to the last abort
        self.stage = "live-migrate"

    @property
    def in_post_copy(self):
        return "post-copy" in self.escalated

    def watch(self, elapsed):
        """One poll: progress, the downtime limit once the job exists, post-copy when due, the time limit."""
        try:
            stats = self.dom.jobStats(0)
        except libvirt.libvirtError:
            stats = {}
        if stats.get("type", 0) not in (0, getattr(libvirt, "VIR_DOMAIN_JOB_NONE", 0)):
            self._set_downtime()
            if self.progress is not None:
                self.progress.update(self.stage, int(stats.get("data_processed", 0)), int(stats.get("data_total", 0)))
            self._post_copy_if_due(stats, elapsed)
        timeout = self.opts.get("timeout")
        if self.aborted is None and timeout and elapsed >= timeout and not self.in_post_copy:
            self.aborted = "timeout of %d s reached" % timeout

    def _set_downtime(self):
        if self.downtime_set:
            return
        try:
            self.dom.migrateSetMaxDowntime(int(self.opts["max_downtime_ms"]), 0)
            self.downtime_set = True
        except libvirt.libvirtError:
            pass  # the job may not have reached the migration phase yet: retried next poll

    def _post_copy_if_due(self, stats, elapsed):
        if (self.opts.get("post_copy") and not self.in_post_copy and self.aborted is None
                and elapsed >= float(self.opts.get("post_copy_after") or 0)
                and int(stats.get("memory_iteration", 0)) >= 2):
            # Pre-copy did not converge in time: the guest moves now and pulls its missing pages on demand.
            try:
                self.dom.migrateStartPostCopy(0)
                self.escalated.append("post-copy")
                self.stage = "post-copy"
            except libvirt.libvirtError:
                pass

    def stop(self, exc):
        """A stop arrived: True when the job is now to be aborted. In post-copy there is nothing to abort (the
        guest already runs on the target): it finishes."""
        if self.aborted is not None or self.in_post_copy:
            return False
        self.aborted = "stopped: %s" % exc
        return True

    def abort_if_due(self):
        # Asked at every poll until the job ends: an abort accepted while the job is still being set up (or
        # copying storage before memory) can be a no-op in QEMU, and the job would then finish.
        if self.aborted is None or self.in_post_copy:
            return
        try:
            self.dom.abortJob()
            self.refusal = "libvirt accepted the abort, but the job went on"
        except libvirt.libvirtError as exc:
            self.refusal = "libvirt refused the abort: %s" % exc  # asked again at the next poll

    def failure(self, error, elapsed):
        """The MigrationFailed for a job that ended in ``error``, saying where the guest is."""
        reason = self.aborted or str(error)
        if self.in_post_copy:
            return MigrationFailed("live migration of %s failed during post-copy (%s): the guest's memory is split "
                                   "between the nodes; check both nodes before doing anything else"
                                   % (self.dom.name(), reason))
        where = "the guest keeps running on the source node" if _still_active(self.dom) else \
            "the guest is no longer running on the source node"
        text = str(error).lower()
        kind = "aborted" if (self.aborted or "abort" in text or "cancel" in text) else "failed"
        return MigrationFailed("live migration of %s %s after %.1f s (%s); %s"
                               % (self.dom.name(), kind, elapsed, reason, where))

    def outcome(self, elapsed):
        result = {"escalated": (["auto-converge"] if self.opts.get("auto_converge") else []) + self.escalated,
                  "elapsed": round(elapsed, 3)}
        if self.aborted is not None and not self.in_post_copy:
            # The time limit (or a stop) came, yet the migration completed: the guest runs on the target.
            result["abort_missed"] = "%s, but the migration completed (%s)" % (
                self.aborted, self.refusal or "no abort was sent")
        return result


def _still_active(dom):
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False


def completed_stats(dst_dom):
    """Job stats of the finished migration as the destination recorded them (downtime included)."""
    try:
        return dict(dst_dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError:
        return {}


def remove_new_volumes(conn, paths):
    """Delete volumes at ``paths`` on ``conn`` (what a failed copy left); return the removed paths."""
    removed = []
    for path in paths:
        vol = lookup_volume_by_path(conn, path)
        if vol is None:
            continue
        try:
            vol.delete(0)
            removed.append(path)
        except libvirt.libvirtError:
            continue
    return removed


class OrphanedJobWatch:
    """A live migration job of ``name`` on the source that this run did not start: a killed run's module may
    still drive it, or its module is gone and the job lives on in libvirtd.

    It is never aborted here. An abort is only harmless in pre-copy, the job may switch to post-copy at any
    moment (or already has: the guest then runs on the target and pulls its memory from the source), and
    re-migrating after aborting a post-copy job panicked the guest. So the run waits for it; when
    ``post_copy`` is allowed and pre-copy has not converged after ``post_copy_after`` seconds it asks for the
    switch (libvirt refuses it unless the job was started with post-copy allowed); after ``timeout`` seconds
    it refuses, naming ``virsh domjobabort`` for an operator who knows the job is still in pre-copy.
    """

    def __init__(self, conn, name, node, uri, opts, clock=time.monotonic):
        self.conn, self.name, self.node, self.uri, self.opts = conn, name, node, uri, opts
        self.asked_post_copy = False
        self.seen = False
        self._clock = clock

    def stats(self):
        """The job stats of an active job of the domain on the source, or None."""
        try:
            stats = self.conn.lookupByName(self.name).jobStats(0)
        except libvirt.libvirtError:
            return None
        if stats.get("type", 0) in (0, getattr(libvirt, "VIR_DOMAIN_JOB_NONE", 0)):
            return None
        operation = stats.get("operation")
        if operation is not None and operation != getattr(libvirt, "VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT", operation):
            return None
        self.seen = True
        return stats

    def check(self, waited):
        """None while waiting is right (or no job runs); the refusal message once ``timeout`` has passed."""
        stats = self.stats()
        if stats is None:
            return None
        if (self.opts.get("post_copy") and not self.asked_post_copy
                and waited >= float(self.opts.get("post_copy_after") or 0)
                and int(stats.get("memory_iteration", 0)) >= 2):
            try:
                self.conn.lookupByName(self.name).migrateStartPostCopy(0)
            except libvirt.libvirtError:
                pass  # not started with post-copy allowed, or already in post-copy
            self.asked_post_copy = True
        timeout = self.opts.get("timeout")
        if timeout and waited >= timeout:
            return ("a live migration of %s that an earlier, stopped run started is still running on node %s after "
                    "%d s of waiting (%d of %d bytes sent); it was not aborted, because aborting a migration this run "
                    "does not drive can lose the guest once it is in post-copy. Wait for it to finish and run again; "
                    "only if it is still in pre-copy, abort it with 'virsh -c %s domjobabort %s' and run again"
                    % (self.name, self.node, waited, int(stats.get("data_processed", 0)),
                       int(stats.get("data_total", 0)), self.uri, self.name))
        return None

    def wait(self, progress=None, poll=0.5):
        """Wait for the job to end; returns the refusal message when ``timeout`` passes first, else None."""
        started = self._clock()
        while True:
            stats = self.stats()
            if stats is None:
                return None
            if progress is not None:
                progress.update("waiting for an earlier run's live migration", int(stats.get("data_processed", 0)),
                                int(stats.get("data_total", 0)))
            refusal = self.check(self._clock() - started)
            if refusal:
                return refusal
            time.sleep(poll)
