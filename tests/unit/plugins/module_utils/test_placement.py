"""Placement filters, weighers, batch accounting and explanations, and the move order."""

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils._placement import PlacementError, place, plan_lines
from ansible_collections.v2kvm.migrate.plugins.module_utils._placement_order import OrderError, batches

GIB = 1024 ** 3


def host(name, *, cpus=8, memory=16384, used_mem=0, used_cpu=0, free_disk=100 * GIB, features=("sse2",),
         domains=(), **extra):
    return dict({"name": name, "uri": f"qemu+ssh://{name}/system", "cpus": cpus, "memory_total_mib": memory,
                 "memory_allocated_mib": used_mem, "vcpus_allocated": used_cpu, "arch": "x86_64",
                 "cpu": {"arch": "x86_64", "features": list(features)}, "domain_types_offered": ["qemu", "kvm"],
                 "pools": [{"name": "v2kvm", "active": True, "available_bytes": free_disk}],
                 "domains": [{"name": d, "active": True} for d in domains]}, **extra)


def vm(name, memory=2048, vcpus=2, disk=10 * GIB, **extra):
    return dict({"name": name, "memory_mib": memory, "vcpus": vcpus, "disk_bytes": disk}, **extra)


def test_batch_never_overcommits_a_host():
    # Each host fits two 4 GiB VMs; six VMs over three hosts must land two per host.
    hosts = [host(n, memory=8192) for n in ("a", "b", "c")]
    result = place([vm(f"v{i}", memory=4096) for i in range(6)], hosts)
    assert not result["unplaced"]
    per_host = {}
    for a in result["assignments"]:
        per_host[a["host"]] = per_host.get(a["host"], 0) + 1
    assert per_host == {"a": 2, "b": 2, "c": 2}
    # A seventh VM fits nowhere, and says why for every host.
    result = place([vm(f"v{i}", memory=4096) for i in range(7)], hosts)
    assert len(result["unplaced"]) == 1
    assert "not enough RAM: needs 4096 MiB, 0 MiB left of 8192 MiB" in result["unplaced"][0]["rejected"]["a"]


def test_spread_and_stack_weighers():
    hosts = [host("busy", used_mem=8192), host("idle")]
    assert place([vm("x")], hosts)["assignments"][0]["host"] == "idle"
    assert place([vm("x")], hosts, {"strategy": "stack"})["assignments"][0]["host"] == "busy"
    stacked = place([vm(f"s{i}") for i in range(3)], [host("a"), host("b")], {"strategy": "stack"})
    assert {a["host"] for a in stacked["assignments"]} == {"a"}


def test_filters_explain_each_rejection():
    hosts = [
        host("maint", maintenance=True),
        host("small", memory=1024),
        host("fewcpu", cpus=1),
        host("nodisk", free_disk=GIB),
        host("oldcpu", features=()),
        host("nopool", pools=[]),
        host("source"),
        host("ok"),
    ]
    result = place([vm("x", cpu_features=["sse2"], current_host="source")], hosts,
                   {"cpu_allocation_ratio": 1.0})
    (a,) = result["assignments"]
    assert a["host"] == "ok"
    rejected = a["rejected"]
    assert rejected["maint"] == "host is in maintenance (no new placements)"
    assert rejected["small"].startswith("not enough RAM")
    assert rejected["fewcpu"].startswith("not enough vCPUs: needs 2, 1 left")
    assert rejected["nodisk"] == "not enough disk in pool v2kvm: needs 10240 MiB, 1024 MiB free"
    assert rejected["oldcpu"] == "CPU lacks features the VM needs: sse2"
    assert rejected["nopool"] == "storage pool v2kvm does not exist here"
    assert rejected["source"] == "the VM is already on this host (source node)"
    assert "ok wins" in a["reason"] and "1 of 8 hosts passed" in a["reason"]


def test_allocation_ratios_and_reserve():
    # 4 CPUs x 2.0 = 8 vCPUs: four 2-vCPU VMs fit, the fifth does not.
    result = place([vm(f"v{i}", memory=100) for i in range(5)], [host("a", cpus=4)], {"cpu_allocation_ratio": 2.0})
    assert len(result["assignments"]) == 4 and len(result["unplaced"]) == 1
    result = place([vm("v", memory=1500)], [host("a", memory=2048)],
                   {"ram_allocation_ratio": 1.0, "reserved_host_memory_mib": 1024})
    assert result["unplaced"]
    result = place([vm("v", memory=3000)], [host("a", memory=2048)], {"ram_allocation_ratio": 1.5})
    assert result["assignments"][0]["host"] == "a"


def test_anti_affinity_counts_batch_and_running_vms():
    groups = {"web": ["web1", "web2", "web3"]}
    hosts = [host("a", domains=["web1"]), host("b"), host("c")]
    result = place([vm("web2"), vm("web3")], hosts, {"anti_affinity_groups": groups})
    landed = {a["name"]: a["host"] for a in result["assignments"]}
    assert landed["web2"] != "a" and landed["web3"] != "a" and landed["web2"] != landed["web3"]
    result = place([vm("d1", anti_affinity="db"), vm("d2", anti_affinity="db")], [host("a")])
    assert result["unplaced"][0]["rejected"]["a"] == "anti-affinity group db already has a VM here"


def test_maintenance_list_and_plan_lines():
    result = place([vm("x")], [host("a"), host("b")], {"maintenance": ["a"]})
    assert result["assignments"][0]["host"] == "b"
    lines = plan_lines(result)
    assert any(line.startswith("host a (maintenance)") for line in lines)


def test_bad_input_is_named():
    with pytest.raises(PlacementError, match="has no memory_mib"):
        place([{"name": "x", "vcpus": 1}], [host("a")])
    with pytest.raises(PlacementError, match="host names must be unique; duplicates: a"):
        place([vm("x")], [host("a"), host("a")])
    with pytest.raises(PlacementError, match="appears twice"):
        place([vm("x"), vm("x")], [host("a")])
    with pytest.raises(PlacementError, match="cpu_allocation_ratio must be greater than 0"):
        place([vm("x")], [host("a")], {"cpu_allocation_ratio": 0})


def test_order_respects_dependencies_and_concurrency():
    deps = {"app1": ["db"], "app2": ["db"], "web": ["app1", "app2"], "db": ["outside"]}
    order = batches(["web", "app1", "app2", "db", "lone"], deps, concurrency=2)
    assert order == [["db", "lone"], ["app1", "app2"], ["web"]]
    assert batches(["a", "b", "c"], {}, concurrency=1) == [["a"], ["b"], ["c"]]
    with pytest.raises(OrderError, match=r"cycle \(a -> b -> a\)"):
        batches(["a", "b"], {"a": ["b"], "b": ["a"]})
