"""placement, preflight, kvm_host_info and migration_state through their real entry point (`python -m` with an
args file), in check mode, against libvirt's test driver where they read a host: the argument spec reaches the
module_utils entry and its result or failure comes back as the module's JSON."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
COLLECTIONS = os.path.join(REPO, ".work", "collections")
GIB = 1024 ** 3


def run_module(tmp_path, module, **args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=True)}))
    proc = subprocess.run(
        [sys.executable, "-m", "ansible_collections.v2kvm.migrate.plugins.modules." + module, str(args_file)],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS), cwd=str(tmp_path),
        check=False, timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_placement_returns_the_plan_and_fails_when_a_vm_fits_nowhere(tmp_path):
    hosts = [{"name": "a", "uri": "qemu+ssh://a/system", "cpus": 4, "memory_total_mib": 4096,
              "pools": [{"name": "v2kvm", "available_bytes": 100 * GIB}]}]
    rc, result = run_module(tmp_path, "placement", hosts=hosts, vms=[{"name": "x", "vcpus": 1, "memory_mib": 1024}])
    assert rc == 0 and result["changed"] is False, result
    assert result["by_id"] == {"x": {"host": "a", "uri": "qemu+ssh://a/system", "pool": "v2kvm", "batch": 0}}
    too_big = [{"name": "x", "vcpus": 1, "memory_mib": 8192}]
    rc, result = run_module(tmp_path, "placement", hosts=hosts, vms=too_big)
    assert rc == 1 and result["failed"] and result["msg"].startswith("no host can take x"), result
    assert result["unplaced"][0]["rejected"]["a"].startswith("not enough RAM")
    rc, result = run_module(tmp_path, "placement", hosts=hosts, vms=too_big, dry_run=True)
    assert rc == 0 and [u["name"] for u in result["unplaced"]] == ["x"], result


def test_preflight_reads_the_targets_domain_names(tmp_path):
    pytest.importorskip("libvirt")
    spec = {"name": "test", "source": {"type": "ova", "path": str(tmp_path / "x.ova")}, "disks": []}
    rc, result = run_module(tmp_path, "preflight", spec=spec, uri="test:///default")
    assert rc == 1 and result["failed"] and "a domain named test already exists" in result["msg"], result
    rc, result = run_module(tmp_path, "preflight", spec=dict(spec, name="web01"), uri="test:///default",
                            target_path=str(tmp_path))
    assert rc == 0 and result["blocked"] is False and result["target_free_bytes"] > 0, result


def test_kvm_host_info_returns_the_facts_with_the_modules_options(tmp_path):
    pytest.importorskip("libvirt")
    rc, result = run_module(tmp_path, "kvm_host_info", uri="test:///default", name="kvm07", maintenance=True,
                            probe_domain_type=False)
    assert rc == 0 and result["changed"] is False, result
    host = result["host"]
    assert (host["name"], host["uri"], host["maintenance"], host["pool"]) == ("kvm07", "test:///default", True, None)
    assert [d["name"] for d in host["domains"]] == ["test"] and host["pools"][0]["name"] == "default-pool"


def test_migration_state_lists_or_answers_for_one_source(tmp_path):
    pytest.importorskip("libvirt")
    rc, result = run_module(tmp_path, "migration_state", uri="test:///default")
    assert rc == 0 and result["migrations"] == [] and result["changed"] is False, result
    rc, result = run_module(tmp_path, "migration_state", uri="test:///default", name="test")
    assert rc == 0 and result["found"] is False and result["complete"] is False, result
    rc, result = run_module(tmp_path, "migration_state", uri="nosuchdriver:///system", name="test")
    assert rc == 1 and result["msg"].startswith("cannot open libvirt URI nosuchdriver:///system"), result
