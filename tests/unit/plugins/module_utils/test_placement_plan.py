"""The placement module's entry (_placement.run): slots by id, move batches, plan lines, maintenance file,
and when the module fails."""

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils._placement import read_maintenance_file, run
from rig import fake_module  # noqa: E402
from rig.fake_module import Failed  # noqa: E402

GIB = 1024 ** 3


def FakeModule(**options):  # noqa: N802 (stands in for the class)
    return fake_module.FakeModule(PARAMS, **options)


def host(name, memory=8192):
    return {"name": name, "uri": f"qemu+ssh://{name}/system", "cpus": 8, "memory_total_mib": memory,
            "memory_allocated_mib": 0, "vcpus_allocated": 0, "cpu": {"arch": "x86_64", "features": []},
            "pools": [{"name": "v2kvm", "active": True, "available_bytes": 100 * GIB}], "domains": []}


def vm(name, memory=2048, **extra):
    return dict({"id": "id-" + name, "name": name, "vcpus": 1, "memory_mib": memory, "disk_bytes": GIB}, **extra)


PARAMS = {"hosts": [host("a"), host("b")], "vms": [], "strategy": "spread", "pool": "v2kvm",
          "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0, "disk_allocation_ratio": 1.0,
          "reserved_host_memory_mib": 0, "maintenance": [], "maintenance_file": None, "anti_affinity_groups": {},
          "depends_on": {}, "concurrency": 1, "dry_run": False}


def test_slots_by_id_follow_the_dependencies_in_batches_of_the_concurrency():
    vms = [vm("app1"), vm("app2"), vm("db"), vm("web")]
    result = run(FakeModule(vms=vms, depends_on={"app1": ["db"], "app2": ["db"], "web": ["app1"]}, concurrency=2))
    assert result["changed"] is False and result["unplaced"] == []
    assert result["batches"] == [["id-db"], ["id-app1", "id-app2"], ["id-web"]]
    assert {vm_id: slot["batch"] for vm_id, slot in result["by_id"].items()} == {
        "id-db": 0, "id-app1": 1, "id-app2": 1, "id-web": 2}
    slot = result["by_id"]["id-db"]
    assert slot["host"] in ("a", "b") and slot["uri"] == "qemu+ssh://%s/system" % slot["host"]
    assert slot["pool"] == "v2kvm"
    assert result["plan"][-3:] == ["move batch 1: db", "move batch 2: app1, app2", "move batch 3: web"]
    assert any(line.startswith("host a: ") for line in result["plan"])


def test_hosts_in_the_maintenance_file_or_list_get_nothing(tmp_path):
    listing = tmp_path / "maintenance"
    listing.write_text("# evacuating\n  a  \n\n")
    assert read_maintenance_file(str(listing)) == ["a"]
    assert read_maintenance_file(str(tmp_path / "missing")) == []
    assert read_maintenance_file(None) == []
    result = run(FakeModule(vms=[vm("x"), vm("y")], maintenance_file=str(listing)))
    assert {a["host"] for a in result["assignments"]} == {"b"}
    result = run(FakeModule(vms=[vm("x")], hosts=[host("a"), host("b"), host("c")], maintenance=["b"],
                            maintenance_file=str(listing)))
    assert result["by_id"]["id-x"]["host"] == "c"
    assert [h["maintenance"] for h in result["hosts"]] == [True, True, False]


def test_a_vm_that_fits_nowhere_fails_with_the_plan_unless_dry_run():
    vms = [vm("small"), vm("huge", memory=65536)]
    with pytest.raises(Failed) as failed:
        run(FakeModule(vms=vms))
    result = failed.value.result
    assert result["msg"].startswith("no host can take huge (65536 MiB, 1 vCPUs, 1024 MiB disk): a: not enough RAM")
    assert [u["id"] for u in result["unplaced"]] == ["id-huge"] and list(result["by_id"]) == ["id-small"]
    planned = run(FakeModule(vms=vms, dry_run=True))
    assert [u["name"] for u in planned["unplaced"]] == ["huge"] and planned["batches"] == [["id-small"]]


def test_input_that_cannot_be_planned_fails_naming_the_fix():
    with pytest.raises(Failed) as failed:
        run(FakeModule(vms=[vm("x"), vm("y")], depends_on={"x": ["y"], "y": ["x"]}))
    assert failed.value.result == {"msg": "the declared dependencies form a cycle (x -> y -> x): remove one of "
                                   "these dependencies"}
    with pytest.raises(Failed) as failed:
        run(FakeModule(vms=[vm("x")], hosts=[host("a"), host("a")]))
    assert failed.value.result == {"msg": "host names must be unique; duplicates: a"}
    with pytest.raises(Failed) as failed:
        run(FakeModule(vms=[vm("x")], concurrency=0))
    assert failed.value.result == {"msg": "concurrency must be at least 1"}
