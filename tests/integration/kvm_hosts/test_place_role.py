"""roles/migrate_vm/tasks/place.yml with candidate hosts: the batch is placed once over the real
hosts' facts, each VM takes its own slot, and the dry run stops before anything is converted. For
real, every phase after placement runs on the chosen host over SSH, and a re-run finds the finished
migrations on whichever candidate they landed."""

import os

import pytest
import yaml
from kvm_hosts.conftest import PREFIX, read_log
from rig.playbook import run_playbook, write_inventory

pytestmark = pytest.mark.integration


def test_role_places_the_batch_on_candidate_hosts(kvm_hosts, appliances, tmp_path):
    hosts = {
        "t-bios": {"migrate_vm_source_path": appliances["demo-bios"], "migrate_vm_name": f"{PREFIX}-pbios",
                   "migrate_vm_anti_affinity": "pair"},
        "t-twodisk": {"migrate_vm_source_path": appliances["demo-twodisk"],
                      "migrate_vm_name": f"{PREFIX}-ptwo", "migrate_vm_anti_affinity": "pair"},
    }
    candidates = [{"name": h.name, "uri": h.uri, "delegate_to": "localhost"} for h in kvm_hosts]
    candidates[2]["maintenance"] = True
    inventory = write_inventory(tmp_path / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_candidate_hosts": candidates,
        "migrate_vm_placement_dry_run": True,
    }, hosts)
    run = run_playbook("migrate.yml", inventory)
    assert run.rc == 0, run.output
    placed = {}
    for host in hosts:
        slot = run.result_of(host, "Take this VM's slot")
        assert slot is not None, run.output
        placed[host] = slot["result"]["ansible_facts"]
        # Nothing after placement ran: the dry run ends each host there.
        assert run.result_of(host, "Convert every disk") is None
    # Anti-affinity keeps the pair apart, and the host in maintenance gets neither.
    assert {p["migrate_vm_placed_uri"] for p in placed.values()} == {kvm_hosts[0].uri, kvm_hosts[1].uri}
    assert all(p["migrate_vm_placed_host"] == "localhost" and p["migrate_vm_placed_pool"] == "v2kvm"
               for p in placed.values())
    facts_runs = [r for r in run.results if r["task"] == "Read the facts of every candidate host (once for the batch)"]
    assert len(facts_runs) == 1  # run_once: one read for the whole batch


def test_role_migrates_each_vm_onto_its_placed_host_over_ssh(kvm_hosts, kvm_ssh, guests, appliances, tmp_path):
    names = {"t-bios": f"{PREFIX}-sbios", "t-twodisk": f"{PREFIX}-stwo"}
    guests.names.extend(names.values())
    vms = {host: {"migrate_vm_source_path": appliances[f"demo-{host[2:]}"], "migrate_vm_name": name,
                  "migrate_vm_anti_affinity": "pair"} for host, name in names.items()}
    # No delegate_to: each phase after placement goes to the inventory host named like the node.
    candidates = [{"name": h.name, "uri": h.uri} for h in kvm_hosts]
    candidates[2]["maintenance"] = True
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "migrate": {"hosts": vms, "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "migrate_vm_candidate_hosts": candidates, "migrate_vm_domain_type": "qemu",
            "migrate_vm_network_map": {"VM Network": "user"}, "migrate_vm_boot_timeout": 300}},
        "kvm_nodes": {"hosts": kvm_ssh}}}}))
    run = run_playbook("migrate.yml", inventory)
    assert run.rc == 0, run.output
    by_host = {h.name: h for h in kvm_hosts}
    landed = {}
    for vm, name in names.items():
        where = guests.where(name)
        assert len(where) == 1 and where[0] in ("h1", "h2"), where
        landed[vm] = where[0]
        # The disks were written inside the chosen host (its own /var/lib/libvirt), not on the controller.
        disk = by_host[where[0]].path(f"/var/lib/libvirt/images/v2kvm/{name}-disk0.qcow2")
        assert os.path.exists(disk), disk
        log = read_log(by_host[where[0]], name)
        assert "V2KVM-BOOT-OK" in log, log
        validated = run.result_of(vm, "Validate the migrated guest")
        assert validated["result"]["verdict"]["booted"] is True, validated
    assert sorted(landed.values()) == ["h1", "h2"]  # anti-affinity, and h3 is in maintenance

    again = run_playbook("migrate.yml", inventory)
    assert again.rc == 0, again.output
    for vm in names:
        assert again.stats[vm]["changed"] == 0, again.changed_tasks(vm)
        state = again.result_of(vm, "Look for a finished migration of this source on the target")
        found = {item["item"]["name"]: item["complete"] for item in state["result"]["results"]}
        assert found[landed[vm]] is True and sum(found.values()) == 1, found
