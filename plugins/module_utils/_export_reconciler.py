# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vsphere_export as a reconciler: the copies of one vSphere VM's disks in a work dir.

``run_module(module)`` is the whole module: it checks dest, takes the work dir's target lock, and runs
``ExportReconciler`` inside one ``ProgressJob``. The reconciler reads what dest holds already (a
completed cold export recorded there, the warm-sync state) and the VM's power state, works out what is
missing (nothing: ``changed=False``), and only outside check mode copies it (NFC lease, datastore
download, warm syncs up to the cutover) under a ``PowerGuard`` that powers a running source on again
when the copy fails.

The decisions are plain functions of values (``current_state``, ``plan_export``, ``predicted_reason``,
``fits``, ``sync_again``, ``budget_miss``) so they can be tested without vCenter.
"""

from __future__ import annotations

import os
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_conn as vconn
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_export as vexport
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_power as vpower
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_spec as vspec
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_warm as vwarm
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted, ProgressJob
from ansible_collections.v2kvm.migrate.plugins.module_utils._source_errors import SourceError
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_module import connect_from_params, selected_vm

RECORDED_REASON = "a completed export of this VM is recorded in dest; force: true copies again"


# --------------------------------------------------------------------------- what dest holds


def cold_record_path(dest, name):
    return os.path.join(dest, ".%s.v2kvm-export.json" % name)


def recorded_export(dest, spec, method):
    """The disks of a completed cold export of this VM by ``method`` recorded in ``dest``, when every copy is
    still there at its recorded size and there is one per disk of the VM; else None."""
    record = vexport.read_json(cold_record_path(dest, spec["name"]))
    if not record or record.get("moid") != spec["source"]["moid"] or record.get("method") != method:
        return None
    disks = record.get("disks") or []
    for disk in disks:
        if not os.path.exists(disk["path"]) or os.path.getsize(disk["path"]) != disk["size"]:
            return None
    return disks if len(disks) == len(spec["disks"]) else None


def current_state(params, spec):
    """What dest holds for this VM (the recorded cold export, the warm-sync state) and its power state."""
    dest, method = params["dest"], params["method"]
    if method == "warm":
        recorded = None
        warm = vexport.read_json(vwarm.warm_state_path(dest, spec["name"])) or {}
    else:
        recorded = None if params["force"] else recorded_export(dest, spec, method)
        warm = {}
    return {"power_state": spec["source"]["power_state"], "recorded": recorded, "warm": warm}


# --------------------------------------------------------------------------- what is missing


def plan_export(params, current):
    """None when dest already holds the export; else what to copy and whether the VM must be off for it."""
    method = params["method"]
    if method == "warm":
        # A warm sync always copies the delta since the recorded changeIds (everything the first time).
        return {"method": method, "power_off": params["cutover"],
                "sync": "delta" if current["warm"].get("disks") else "full"}
    if current["recorded"] is not None:
        return None
    return {"method": method, "power_off": params["power_off"] or method == "nfc"}


def predicted_reason(plan, power_state):
    """What check mode says the run would do."""
    if plan["method"] == "warm":
        return "would run a %s sync" % plan["sync"]
    return "would %sexport the disks" % (
        "power the VM off and " if plan["power_off"] and power_state != "poweredOff" else "")


def fits(sync, budget):
    """The cutover repeats a delta sync with the VM off: it takes about as long as the last delta
    (snapshot, changed-area query, copy of a similar amount of change). A full sync says nothing
    about the next delta, so it never fits."""
    return sync["kind"] == "delta" and sync["seconds"] <= budget


def sync_again(syncs, budget, max_syncs):
    """Whether another warm sync may still bring the last delta within ``budget`` seconds (0: one sync)."""
    return bool(budget) and not fits(syncs[-1], budget) and len(syncs) < max_syncs


def budget_miss(syncs, budget):
    """The warning for syncs whose last one does not fit ``budget``, or None when it fits."""
    last = syncs[-1]
    if fits(last, budget):
        return None
    why = ("the last delta sync took %.1f s, more than the %d s budget" % (last["seconds"], budget)
           if last["kind"] == "delta" else "the only sync was a full copy, which tells nothing about a delta")
    return ("downtime_budget not met after %d sync(s): %s, so a cutover now could keep the VM off longer than "
            "wanted. Fix: run again when the guest writes less, raise max_syncs, or raise downtime_budget to "
            "accept the longer downtime." % (len(syncs), why))


# --------------------------------------------------------------------------- the reconciler


class ExportReconciler:
    """Reads dest and the VM, copies what is missing (not in check mode), fills ``result``.

    ``result`` belongs to the caller, which reports what it holds (power actions, manifest) when the
    copy fails; ``job`` receives the progress samples (a ProgressJob, or anything with ``update``)."""

    def __init__(self, module, conn, vm, spec, job, result):
        self.module, self.params = module, module.params
        self.conn, self.vm, self.spec = conn, vm, spec
        self.job, self.result = job, result

    def run(self):
        current = current_state(self.params, self.spec)
        plan = plan_export(self.params, current)
        if plan is None:
            self.result.update(disks=current["recorded"], bytes_fetched=0, changed=False, reason=RECORDED_REASON)
            return self.result
        if plan["method"] == "datastore":
            # Flat files are copied whole, so the need is known before the VM is touched (in check mode too).
            vexport.require_room(self.params["dest"], vexport.datastore_need(self.spec, self.params["dest"]),
                                 "the download of %s" % self.spec["name"])
        if self.module.check_mode:
            self.result.update(changed=True, disks=self.spec["disks"], bytes_fetched=0,
                               reason=predicted_reason(plan, current["power_state"]))
            if plan["method"] == "warm":
                self.result.update(syncs=[], change_ids={})
            return self.result
        if plan["method"] == "warm":
            self._sync_warm()
        else:
            self._export_cold(plan)
        return self.result

    def _guard(self, wanted_off):
        return vpower.PowerGuard(self.conn, self.vm, shutdown_timeout=self.params["shutdown_timeout"],
                                 allow_hard_power_off=self.params["allow_hard_power_off"], wanted_off=wanted_off)

    def _export_cold(self, plan):
        guard = self._guard(plan["power_off"])
        try:
            with guard:
                disks, fetched = self._copy_cold(plan["method"])
        finally:
            self.result["power_actions"] = guard.actions
        vexport.write_json_atomic(cold_record_path(self.params["dest"], self.spec["name"]), {
            "moid": self.spec["source"]["moid"], "method": plan["method"], "disks": disks, "at": int(time.time())})
        self.result.update(disks=disks, bytes_fetched=fetched, changed=True)

    def _copy_cold(self, method):
        """(disks, bytes fetched): through an export lease, or the flat files (of a snapshot while running)."""
        params, conn, vm = self.params, self.conn, self.vm
        if method == "nfc":
            disks, fetched, checks = vexport.export_nfc(
                conn, vm, self.spec, params["dest"], parallel=params["parallel_disks"],
                keepalive=params["lease_keepalive"], timeout=params["timeout"], writer=self.job)
            self.result["manifest"] = checks
            return disks, fetched
        if vpower.power_state(conn, vm) == "poweredOff":
            return self._download_flat()
        snapshot = vwarm.create_snapshot(conn, vm)
        try:
            return self._download_flat()
        finally:
            vwarm.remove_snapshot(conn, vm, snapshot)

    def _download_flat(self):
        return vexport.export_datastore(self.conn, self.spec, self.params["dest"],
                                        parallel=self.params["parallel_disks"], timeout=self.params["timeout"],
                                        writer=self.job)

    def _sync_warm(self):
        params, result = self.params, self.result
        if vwarm.enable_cbt(self.conn, self.vm):
            result["power_actions"].append("enabled change tracking")
        guard = self._guard(params["cutover"])
        budget = 0 if params["cutover"] else params["downtime_budget"]
        syncs = []
        try:
            with guard:
                while not syncs or sync_again(syncs, budget, params["max_syncs"]):
                    sync, disks, state = vwarm.warm_sync(self.conn, self.vm, self.spec, params["dest"],
                                                         timeout=params["timeout"], writer=self.job)
                    syncs.append(sync)
            if params["cutover"]:
                state["cut_over"] = int(time.time())
                vexport.write_json_atomic(vwarm.warm_state_path(params["dest"], self.spec["name"]), state)
        finally:
            result["power_actions"].extend(guard.actions)
        result.update(disks=disks, bytes_fetched=sum(s["bytes"] for s in syncs), changed=True, sync=syncs[-1],
                      syncs=syncs, estimated_cutover_seconds=syncs[-1]["seconds"],
                      change_ids={disk["id"]: disk["change_id"] for disk in disks})
        if budget:
            miss = budget_miss(syncs, budget)
            result["budget_met"] = miss is None
            if miss:
                result["msg"] = miss
                self.module.warn(miss)


# --------------------------------------------------------------------------- the module's run


def _dest_usable(module):
    """A dest that is a directory; in check mode one still to be made too (the role's task that makes the
    work dir made nothing)."""
    dest = module.params["dest"]
    return os.path.isdir(dest) or (module.check_mode and not os.path.lexists(dest))


def run_module(module):
    """All of vsphere_export after its argument spec: exits the module (exit_json or fail_json)."""
    params = module.params
    if not _dest_usable(module):
        module.fail_json(msg="dest %s is not a directory. Fix: create it first (the role does)." % params["dest"])
    if not module.check_mode:
        # One export per work dir: a module a killed run left behind is stopped (same job) or waited for.
        target_lock.own(module, target_lock.lock_path(params["dest"]), "export into %s" % params["dest"],
                        ProgressWriter)
    result = dict(changed=False, method=params["method"], power_actions=[])
    with ProgressJob(params["progress_file"] if not module.check_mode else None) as job:
        try:
            _export(module, job, result)
        except (SourceError, Interrupted) as exc:
            job.finish(False, 0, 0)
            module.fail_json(**failure(exc, result, [params["password"]]))
        job.finish(True, result.get("bytes_fetched", 0), result.get("bytes_fetched", 0))
    module.exit_json(**result)


def _export(module, job, result):
    params = module.params
    with connect_from_params(params) as conn:
        ref, props, place, portgroups = selected_vm(conn, params)
        spec = vspec.build_spec(ref, props, place, conn.host, portgroups=portgroups)
        result["original_power_state"] = spec["source"]["power_state"]
        vexport.check_exportable(spec)  # before any power operation, in check mode too
        ExportReconciler(module, conn, ref, spec, job, result).run()
        spec["disks"] = result["disks"]
        result["spec"] = spec


def failure(exc, result, secrets):
    """fail_json's arguments for a refused or interrupted export: the message without secrets, what was
    done to the VM's power, and the problem and fix of a SourceError."""
    extra = {"problem": exc.problem, "fix": exc.fix} if isinstance(exc, SourceError) else {}
    actions = result.get("power_actions") or []
    return dict(result, msg=vconn.scrub(exc, secrets) + (" Power: %s." % "; ".join(actions) if actions else ""),
                **extra)
