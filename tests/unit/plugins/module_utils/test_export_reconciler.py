"""The vsphere_export reconciler's decisions against real files in a work dir: what dest already holds,
what check mode predicts (touching nothing), the downtime-budget loop, and the failure report."""

import json
import os
import signal
import uuid

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _export_reconciler as rec
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_export as vexport
from ansible_collections.v2kvm.migrate.plugins.module_utils import _vsphere_warm as vwarm
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted
from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import VsphereError

MIB = 1 << 20
# The vCenter password of these runs, made up per run: never in a message.
SECRET = "pw-" + uuid.uuid4().hex


class FakeModule:
    """The duck-typed AnsibleModule the reconciler uses: params, check_mode, warn, exit_json, fail_json."""

    def __init__(self, check_mode=False, **params):
        self.params = dict(method="nfc", force=False, power_off=True, cutover=False, downtime_budget=0,
                           max_syncs=5, shutdown_timeout=300, allow_hard_power_off=False, parallel_disks=2,
                           lease_keepalive=30, timeout=5, progress_file=None, password=SECRET,
                           hostname=None, username=None, port=443, validate_certs=False, name="web01",
                           moid=None, uuid=None, datacenter=None, folder=None)
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []
        self.exited = None

    def warn(self, text):
        self.warnings.append(text)

    def exit_json(self, **result):
        self.exited = dict(result, failed=False)
        raise SystemExit(0)

    def fail_json(self, **result):
        self.exited = dict(result, failed=True)
        raise SystemExit(1)


def _spec(power_state="poweredOn", disks=1, capacity=MIB):
    return {"name": "web01", "source": {"moid": "vm-42", "power_state": power_state},
            "disks": [{"id": "scsi0-%d" % n, "capacity_bytes": capacity, "path": "/vmfs/volumes/ds/web01_%d.vmdk" % n}
                      for n in range(disks)]}


def _exported(dest, spec, method="nfc"):
    """A completed cold export as a run leaves it in dest: the copies and the record naming them."""
    disks = []
    for disk in spec["disks"]:
        path = os.path.join(dest, "%s-%s.vmdk" % (spec["name"], disk["id"]))
        with open(path, "wb") as handle:
            handle.write(os.urandom(4096))
        disks.append(dict(disk, path=path, size=4096))
    vexport.write_json_atomic(rec.cold_record_path(dest, spec["name"]),
                              {"moid": spec["source"]["moid"], "method": method, "disks": disks, "at": 1})
    return disks


def _snapshot(directory):
    return {name: os.stat(os.path.join(directory, name)).st_mtime_ns for name in os.listdir(directory)}


def test_a_recorded_export_whose_copies_are_all_there_is_the_export(tmp_path):
    spec = _spec(disks=2)
    disks = _exported(str(tmp_path), spec)
    assert rec.recorded_export(str(tmp_path), spec, "nfc") == disks
    assert rec.recorded_export(str(tmp_path), spec, "datastore") is None, "another method's copies do not count"
    assert rec.recorded_export(str(tmp_path), dict(spec, source={"moid": "vm-7"}), "nfc") is None, "another VM"
    assert rec.recorded_export(str(tmp_path), _spec(disks=3), "nfc") is None, "a disk was added since"


@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_a_recorded_export_with_a_copy_gone_or_cut_is_no_export(tmp_path, damage):
    spec = _spec(disks=2)
    disks = _exported(str(tmp_path), spec)
    if damage == "removed":
        os.unlink(disks[1]["path"])
    else:
        os.truncate(disks[1]["path"], 100)
    assert rec.recorded_export(str(tmp_path), spec, "nfc") is None


def test_nothing_is_missing_when_the_export_is_recorded_and_force_copies_again(tmp_path):
    spec = _spec()
    _exported(str(tmp_path), spec)
    params = FakeModule(dest=str(tmp_path)).params
    assert rec.plan_export(params, rec.current_state(params, spec)) is None
    forced = dict(params, force=True)
    assert rec.plan_export(forced, rec.current_state(forced, spec)) == {"method": "nfc", "power_off": True}


@pytest.mark.parametrize("method,power_off,wanted_off", [
    ("nfc", False, True),  # an export lease needs the VM off whatever power_off says
    ("nfc", True, True), ("datastore", False, False), ("datastore", True, True),
])
def test_a_cold_copy_powers_off_when_asked_and_always_for_nfc(tmp_path, method, power_off, wanted_off):
    params = FakeModule(dest=str(tmp_path), method=method, power_off=power_off).params
    plan = rec.plan_export(params, rec.current_state(params, _spec()))
    assert plan == {"method": method, "power_off": wanted_off}


def test_a_warm_sync_is_full_first_then_a_delta_once_changeids_are_recorded(tmp_path):
    params = FakeModule(dest=str(tmp_path), method="warm").params
    assert rec.plan_export(params, rec.current_state(params, _spec()))["sync"] == "full"
    vexport.write_json_atomic(vwarm.warm_state_path(str(tmp_path), "web01"),
                              {"moid": "vm-42", "disks": {"scsi0-0": {"change_id": "52 1/8"}}})
    _exported(str(tmp_path), _spec())  # a cold record never stops a warm sync
    plan = rec.plan_export(params, rec.current_state(params, _spec()))
    assert plan == {"method": "warm", "power_off": False, "sync": "delta"}
    cutover = dict(params, cutover=True)
    assert rec.plan_export(cutover, rec.current_state(cutover, _spec()))["power_off"] is True


def test_check_mode_predicts_the_export_and_touches_nothing(tmp_path):
    (tmp_path / "web01-scsi0-0.vmdk.part").write_bytes(b"kept by a killed run")
    before = _snapshot(tmp_path)
    module = FakeModule(check_mode=True, dest=str(tmp_path))
    result = {"changed": False, "power_actions": []}
    # No connection: check mode must not reach for the VM.
    rec.ExportReconciler(module, None, None, _spec(), None, result).run()
    assert result["changed"] is True and result["bytes_fetched"] == 0
    assert result["reason"] == "would power the VM off and export the disks"
    assert result["disks"] == _spec()["disks"] and result["power_actions"] == []
    assert _snapshot(tmp_path) == before


def test_check_mode_of_a_vm_already_off_only_exports(tmp_path):
    result = {"power_actions": []}
    rec.ExportReconciler(FakeModule(check_mode=True, dest=str(tmp_path)), None, None,
                         _spec(power_state="poweredOff"), None, result).run()
    assert result["reason"] == "would export the disks"


def test_check_mode_of_a_warm_sync_names_its_kind_and_syncs_nothing(tmp_path):
    vexport.write_json_atomic(vwarm.warm_state_path(str(tmp_path), "web01"),
                              {"moid": "vm-42", "disks": {"scsi0-0": {"change_id": "52 1/8"}}})
    before = _snapshot(tmp_path)
    result = {"power_actions": []}
    rec.ExportReconciler(FakeModule(check_mode=True, dest=str(tmp_path), method="warm"), None, None, _spec(),
                         None, result).run()
    assert result["changed"] is True and result["reason"] == "would run a delta sync"
    assert result["syncs"] == [] and result["change_ids"] == {}
    assert _snapshot(tmp_path) == before


def test_a_datastore_copy_that_cannot_fit_is_refused_in_check_mode_too(tmp_path):
    module = FakeModule(check_mode=True, dest=str(tmp_path), method="datastore")
    with pytest.raises(VsphereError) as refused:
        rec.ExportReconciler(module, None, None, _spec(capacity=1 << 60), None, {"power_actions": []}).run()
    assert "not enough free space in %s" % tmp_path in refused.value.problem
    assert "choose a dest directory on a file system with room" in refused.value.fix
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("check_mode", [True, False])
def test_a_second_run_after_a_recorded_export_changes_nothing(tmp_path, check_mode):
    spec = _spec(disks=2)
    disks = _exported(str(tmp_path), spec)
    before = _snapshot(tmp_path)
    result = {"changed": False, "power_actions": []}
    # No connection, no VM, no progress job: nothing may be needed to find nothing missing.
    rec.ExportReconciler(FakeModule(check_mode=check_mode, dest=str(tmp_path)), None, None, spec, None,
                         result).run()
    assert result["changed"] is False and result["bytes_fetched"] == 0 and result["disks"] == disks
    assert "force: true copies again" in result["reason"]
    assert _snapshot(tmp_path) == before


def _sync(kind, seconds):
    return {"kind": kind, "seconds": seconds, "bytes": 0}


def test_only_a_delta_within_the_budget_fits():
    assert rec.fits(_sync("delta", 30), 30) and not rec.fits(_sync("delta", 30.5), 30)
    assert not rec.fits(_sync("full", 0.1), 30), "a full copy says nothing about the cutover"


def test_syncs_go_on_until_a_delta_fits_or_max_syncs():
    assert not rec.sync_again([_sync("full", 50)], 0, 5), "no budget: one sync"
    assert rec.sync_again([_sync("full", 1)], 30, 5)
    assert not rec.sync_again([_sync("full", 1), _sync("delta", 2)], 30, 5)
    assert rec.sync_again([_sync("full", 1), _sync("delta", 40)], 30, 5)
    assert not rec.sync_again([_sync("full", 1), _sync("delta", 40), _sync("delta", 40)], 30, 3)


def test_a_missed_budget_says_why_and_the_fix():
    assert rec.budget_miss([_sync("full", 1), _sync("delta", 2)], 30) is None
    slow = rec.budget_miss([_sync("full", 1), _sync("delta", 40.04), _sync("delta", 40.04)], 30)
    assert slow.startswith("downtime_budget not met after 3 sync(s): the last delta sync took 40.0 s, more than the "
                           "30 s budget")
    assert "raise max_syncs" in slow and "raise downtime_budget" in slow
    only_full = rec.budget_miss([_sync("full", 1)], 30)
    assert "the only sync was a full copy" in only_full


def test_a_failure_hides_secrets_and_names_power_actions_problem_and_fix():
    error = VsphereError("vCenter refused to log in with %s" % SECRET, "check the account")
    actions = ["guest shutdown", "powered on again after the failure"]
    report = rec.failure(error, {"changed": False, "power_actions": actions}, [SECRET])
    assert SECRET not in report["msg"] and "********" in report["msg"]
    assert report["msg"].endswith(" Power: guest shutdown; powered on again after the failure.")
    assert report["problem"] == error.problem and report["fix"] == "check the account"
    stopped = rec.failure(Interrupted(signal.SIGTERM), {"power_actions": []}, [SECRET])
    assert stopped["msg"] == "interrupted by signal %d" % signal.SIGTERM
    assert "problem" not in stopped and "fix" not in stopped


def test_a_dest_that_is_no_directory_is_refused_before_anything(tmp_path):
    module = FakeModule(dest=str(tmp_path / "missing"))
    with pytest.raises(SystemExit):
        rec.run_module(module)
    assert module.exited["failed"] and "Fix: create it first" in module.exited["msg"]
    assert os.listdir(tmp_path) == [], "no lock taken"


def test_a_dest_still_to_be_made_is_no_error_in_check_mode(tmp_path):
    module = FakeModule(check_mode=True, dest=str(tmp_path / "to-come"))
    with pytest.raises(SystemExit):
        rec.run_module(module)  # fails later, at the connection: no host name given
    assert "no vCenter/ESXi host name was given" in module.exited["msg"]
    assert not (tmp_path / "to-come").exists()


def test_a_failed_run_ends_its_progress_with_failed_0_0_and_gives_sigterm_back(tmp_path):
    dest = tmp_path / "work"
    dest.mkdir()
    progress = tmp_path / "progress.jsonl"

    def mine(signum, frame):
        raise AssertionError("not expected")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        module = FakeModule(dest=str(dest), progress_file=str(progress))
        with pytest.raises(SystemExit) as ended:
            rec.run_module(module)
        assert signal.getsignal(signal.SIGTERM) is mine, "the previous SIGTERM handler is back"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ended.value.code == 1 and module.exited["failed"]
    assert module.exited["problem"] == "no vCenter/ESXi host name was given"
    assert module.exited["fix"] == "set hostname (or the VMWARE_HOST variable)"
    assert module.exited["power_actions"] == [] and module.exited["method"] == "nfc"
    last = json.loads(progress.read_text().splitlines()[-1])
    assert (last["stage"], last["done"], last["total"]) == ("failed", 0, 0)
    assert os.listdir(dest) == []


def test_a_datastore_download_needs_only_what_a_kept_part_lacks(tmp_path):
    spec = _spec(disks=2, capacity=8 * MIB)
    assert vexport.datastore_need(spec, str(tmp_path)) == 16 * MIB
    (tmp_path / "web01-scsi0-1.raw.part").write_bytes(b"\0" * (3 * MIB))
    assert vexport.datastore_need(spec, str(tmp_path)) == 13 * MIB


def test_a_delta_sync_needs_room_only_for_the_holes_its_areas_fall_into(tmp_path):
    copy = tmp_path / "web01-scsi0-0.raw"
    with open(copy, "wb") as handle:
        handle.truncate(16 * MIB)  # a sparse copy: all holes
        handle.seek(4 * MIB)
        handle.write(os.urandom(MIB))  # one MiB of data at 4 MiB
    areas = [(4 * MIB, MIB), (8 * MIB, 2 * MIB)]
    holes = vwarm._unallocated(str(copy), areas)
    if holes == 0:  # a file system without SEEK_HOLE reports the whole file as data
        pytest.skip("the file system of tmp_path does not report holes")
    assert holes == 2 * MIB, "the area over data needs nothing new"
    assert vwarm._sync_need([(None, None, str(copy), False, areas)]) == 2 * MIB
    assert vwarm._unallocated(str(tmp_path / "none.raw"), areas) == 3 * MIB, "no copy yet: every byte"
