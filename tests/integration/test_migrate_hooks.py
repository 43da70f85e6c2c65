"""Pre and post hooks per VM through the real playbook on a real libvirt daemon: the hooks see the VM's
spec and placement, a failing pre hook stops its VM before anything is created, a failing post hook rolls
the VM back or keeps it as asked, --check writes nothing and a re-run of a finished migration skips them.
The hook that records is the one docs/fleet.md shows."""

import os
import uuid

import pytest
import yaml
from rig.digests import file_sha256
from rig.doc_examples import example
from rig.libvirt_cleanup import remove_domains, remove_pool
from rig.playbook import run_playbook, write_inventory

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-hook-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
NAMES = {host: f"v2kvm-test-hook-{RUN}-{host}" for host in ("ok", "prefail", "postback", "postkeep")}
PRE_FAIL = """\
- name: Quiesce the application
  ansible.builtin.fail:
    msg: the application did not stop
"""
POST_FAIL = """\
- name: Point DNS at the migrated VM
  ansible.builtin.fail:
    msg: DNS update refused
"""


def our_domains(conn):
    return sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(f"v2kvm-test-hook-{RUN}"))


def pool_files(name):
    return sorted(f for f in os.listdir(POOL_PATH) if f.startswith(name)) if os.path.isdir(POOL_PATH) else []


@pytest.fixture(scope="module")
def rig(libvirt_daemon, appliances, tmp_path_factory):
    conn = libvirt.open("qemu:///system")
    tmp = tmp_path_factory.mktemp("hooks")
    # The docs' hook file and variables as the reader saves them; the paths of the reader's site (the
    # playbook's hooks/ folder, /var/log/v2kvm-hooks) become the test's own.
    (tmp / "record.yml").write_text(example("docs/fleet.md", "fleet-hook-tasks").text)
    (tmp / "pre_fail.yml").write_text(PRE_FAIL)
    (tmp / "post_fail.yml").write_text(POST_FAIL)
    hook_vars = yaml.safe_load(example("docs/fleet.md", "fleet-hook-vars").text)
    documented = "{{ playbook_dir }}/hooks/record.yml"
    assert hook_vars["migrate_vm_pre_hook"] == hook_vars["migrate_vm_post_hook"] == documented
    assert hook_vars["migrate_vm_post_hook_failure"] == "rollback"
    hook_vars.update({"migrate_vm_pre_hook": str(tmp / "record.yml"), "migrate_vm_post_hook": str(tmp / "record.yml"),
                      "fleet_hook_dir": str(tmp / "log")})
    (tmp / "log").mkdir()
    source = appliances["demo-bios"]
    hosts = {
        # Validated: the post hook sees the verdict, the re-run finds the migration finished.
        "ok": {**hook_vars},
        "prefail": {"migrate_vm_pre_hook": str(tmp / "pre_fail.yml"), "migrate_vm_validate": False},
        # Validated too: the rollback must remove a domain validate marked finished.
        "postback": {"migrate_vm_post_hook": str(tmp / "post_fail.yml")},
        "postkeep": {"migrate_vm_post_hook": str(tmp / "post_fail.yml"), "migrate_vm_post_hook_failure": "keep",
                     "migrate_vm_validate": False},
    }
    for host, hostvars in hosts.items():
        hostvars.update({"migrate_vm_source_path": source, "migrate_vm_name": NAMES[host]})
    inventory = write_inventory(tmp / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        "migrate_vm_boot_timeout": 300,
    }, hosts)
    state = {"conn": conn, "inventory": inventory, "log": tmp / "log", "source": source, "digest": file_sha256(source),
             "pre_fail": str(tmp / "pre_fail.yml"), "post_fail": str(tmp / "post_fail.yml")}
    yield state
    remove_domains(conn, our_domains(conn))
    remove_pool(conn, POOL, POOL_PATH)
    conn.close()


def test_check_mode_runs_the_hooks_in_check_mode_and_creates_nothing(rig):
    run = run_playbook("migrate.yml", rig["inventory"], extra_args=["--check", "--limit", "ok"])
    assert run.stats, run.output[-3000:]
    assert run.stats["ok"]["failures"] == 0, run.failure_messages("ok")
    hooks = [r for r in run.task_results("ok") if r["task"] == "Record the VM's hook"]
    assert len(hooks) == 2 and all(r["changed"] for r in hooks), hooks
    assert os.listdir(rig["log"]) == []
    assert our_domains(rig["conn"]) == []
    assert pool_files("v2kvm-test-hook") == []


def test_hooks_run_see_the_vm_and_their_failures_stop_roll_back_or_keep(rig):
    conn = rig["conn"]
    run = run_playbook("migrate.yml", rig["inventory"])
    rig["first"] = run
    assert run.stats, run.output[-3000:]

    # The docs' hook ran before and after, and saw the spec, the placement and (after) the domain.
    assert run.stats["ok"]["failures"] == 0, run.failure_messages("ok")
    name = NAMES["ok"]
    mac = conn.lookupByName(name).XMLDesc(0).split("<mac address='")[1].split("'")[0]
    lines = (rig["log"] / f"{name}.log").read_text().splitlines()
    assert lines == [
        f"pre vm={name} vcpus=1 host=localhost uri=qemu:///system pool={POOL} macs= booted=-",
        f"post vm={name} vcpus=1 host=localhost uri=qemu:///system pool={POOL} macs={mac} booted=True",
    ], lines
    assert conn.lookupByName(name).isActive()

    # A failing pre hook: named in the failure, nothing made on the target, the other VMs went on.
    assert run.stats["prefail"]["failures"] == 1
    report = run.failure_messages("prefail")[-1]
    assert report.startswith(f"pre hook {rig['pre_fail']} failed: the application did not stop"), report
    assert "removed nothing" in report, report
    assert NAMES["prefail"] not in our_domains(conn)
    assert pool_files(NAMES["prefail"]) == []
    assert run.result_of("prefail", "Convert each disk into the pool") is None

    # A failing post hook with rollback: the validated domain and its volume are gone.
    assert run.stats["postback"]["failures"] == 1
    report = run.failure_messages("postback")[-1]
    assert report.startswith(f"post hook {rig['post_fail']} failed: DNS update refused"), report
    assert "rolled back" in report and f"domain {NAMES['postback']}" in report, report
    assert run.result_of("postback", "Validate the migrated guest")["result"]["verdict"]["booted"] is True
    assert NAMES["postback"] not in our_domains(conn)
    assert pool_files(NAMES["postback"]) == []

    # A failing post hook with keep: the host is ok, the VM stays, the failure is reported.
    assert run.stats["postkeep"]["failures"] == 0, run.failure_messages("postkeep")
    assert NAMES["postkeep"] in our_domains(conn)
    assert pool_files(NAMES["postkeep"]) == [f"{NAMES['postkeep']}-disk0.qcow2"]
    reported = run.result_of("postkeep", "Report the failed post hook (the migrated VM is kept)")
    assert reported["status"] == "ok", reported
    assert reported["result"]["msg"].startswith(f"post hook {rig['post_fail']} failed: DNS update refused"), reported

    assert run.rc == 2
    assert file_sha256(rig["source"]) == rig["digest"]


def test_a_rerun_of_a_finished_migration_skips_the_hooks_and_changes_nothing(rig):
    assert "first" in rig, "needs the real run"
    run = run_playbook("migrate.yml", rig["inventory"], extra_args=["--limit", "ok"])
    assert run.rc == 0, run.output[-3000:]
    assert run.stats["ok"]["changed"] == 0, run.changed_tasks("ok")
    assert run.result_of("ok", "Record the VM's hook") is None
    assert len((rig["log"] / f"{NAMES['ok']}.log").read_text().splitlines()) == 2
