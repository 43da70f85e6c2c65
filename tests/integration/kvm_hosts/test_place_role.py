"""roles/migrate_vm/tasks/place.yml with candidate hosts: the batch is placed once over the real
hosts' facts, each VM takes its own slot, and the dry run stops before anything is converted."""

import pytest
from kvm_hosts.conftest import PREFIX
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
