"""playbooks/evacuate.yml against three real libvirt hosts: plan first, then a host with three
running guests is emptied in dependency order, two at a time, every guest keeps running, and each
VM's migration shows live progress of its own."""

import json
import os
import sys

import pytest
import yaml
from kvm_hosts.conftest import boot_lines, read_log, ticks, wait_for
from rig.playbook import run_playbook

pytestmark = pytest.mark.integration


def test_evacuation_plans_then_moves_every_guest_live(kvm_hosts, guests, nodes, tmp_path):
    h1 = kvm_hosts[0]
    by_host = {h.name: h for h in kvm_hosts}
    names = [guests.define(h1, f"evac{i}", memory_mib=96) for i in (1, 2, 3)]
    db, app, web = names
    for name in names:
        guests.wait_ticking(h1, name, 1, timeout=120)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    maintenance = tmp_path / "maintenance.txt"
    settings = {"evacuate_host_source": "h1", "evacuate_host_nodes": nodes, "evacuate_host_concurrency": 2,
                "evacuate_host_maintenance_file": str(maintenance),
                "evacuate_host_dependencies": {web: [app], app: [db]},
                "evacuate_host_migrate_options": {"migrate_uri": "tcp://127.0.0.1", "max_downtime_ms": 300,
                                                  # slow enough for several progress polls per VM
                                                  "bandwidth_mib": 8}}
    extra = tmp_path / "vars.yml"
    extra.write_text(yaml.safe_dump(dict(settings, evacuate_host_dry_run=True)))
    dry = run_playbook("evacuate.yml", inventory, extra_args=["-e", f"@{extra}"])
    assert dry.rc == 0, dry.output
    plan = dry.result_of("localhost", "Place every moving VM at once and order the moves")["result"]
    assert plan["batches"] == [[db], [app], [web]]
    assert all(a["host"] in ("h2", "h3") for a in plan["assignments"])
    assert "host is in maintenance" in plan["assignments"][0]["rejected"]["h1"]
    assert all(guests.where(n) == ["h1"] for n in names) and not maintenance.exists()

    extra.write_text(yaml.safe_dump(dict(settings, evacuate_host_dependencies={web: [db]})))
    events_path = tmp_path / "events.jsonl"
    run = run_playbook("evacuate.yml", inventory, extra_args=["-e", f"@{extra}"],
                       env={"ANSIBLE_CALLBACKS_ENABLED": "test_record,v2kvm.migrate.dashboard",
                            "V2KVM_DASHBOARD_EVENTS_FILE": str(events_path)})
    assert run.rc == 0, run.output
    plan = run.result_of("localhost", "Place every moving VM at once and order the moves")["result"]
    assert [sorted(b) for b in plan["batches"]] == [sorted([db, app]), [web]]
    assert maintenance.read_text().split() == ["h1"]
    for assignment in plan["assignments"]:
        name, target = assignment["name"], by_host[assignment["host"]]
        assert guests.where(name) == [target.name]
        count = len(ticks(read_log(target, name)))
        wait_for(lambda n=name, t=target, c=count: len(ticks(read_log(t, n))) > c, 30, f"{name} ticking")
        assert boot_lines(read_log(target, name)) == [] and len(boot_lines(read_log(h1, name))) == 1
    # Spread: the two first VMs did not pile onto one host.
    assert len({a["host"] for a in plan["assignments"]}) == 2
    assert os.path.exists(maintenance)
    # Each VM was its own host: job stats arrived while its migration ran, not only at its end.
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    for name in names:
        assert run.stats[name]["changed"] == 1 and run.stats[name]["failures"] == 0, run.stats
        end = [e for e in events if e["type"] == "task_end" and e["host"] == name and e["status"] == "changed"]
        live = [e for e in events if e["type"] == "progress" and e["host"] == name and e["stage"] == "live-migrate"]
        assert len(end) == 1 and live, [e for e in events if e.get("host") == name]
        assert live[0]["ts"] < end[0]["ts"] - 1.0 and live[-1]["done"] > 0, live
