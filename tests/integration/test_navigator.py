"""ansible-navigator without an execution environment, in stdout mode, runs the migration playbook as
docs/ee.md shows it (the block marked navigator-no-ee, run as written): a real migration of one demo OVA on
the test libvirt daemon next to a VM whose source is missing. The dashboard's line mode shows both in
navigator's output, and navigator exits with the playbook's code. The command runs in a folder laid out
like the repo's (its playbooks and collections path linked in), so navigator's log, caches and temporary
files land in tmp_path and nothing in the checkout."""

import os
import re
import subprocess
import sys
import uuid

import pytest
from rig.doc_examples import example
from rig.libvirt_cleanup import remove_migration
from rig.playbook import write_inventory

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-nav-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
NAME = f"v2kvm-test-nav-{RUN}"
CONVERT_TASK = "Convert each disk into the pool"
# ansible-runner's event markers (base64 between erase-line escapes): a terminal hides them, a pipe keeps them.
RUNNER_MARKER = re.compile(r"\x1b\[K[A-Za-z0-9+/=]*\x1b\[\d+D\x1b\[K|\x1b\[K")
CLOCK = r"\d\d:\d\d:\d\d"


@pytest.fixture
def site(libvirt_daemon, appliances, tmp_path):
    """The folder the doc's command runs in: playbooks/ and .work/collections of the repo, inventory.yml."""
    site = tmp_path / "site"
    (site / ".work").mkdir(parents=True)
    os.symlink(os.path.join(REPO, "playbooks"), site / "playbooks")
    os.symlink(os.path.join(REPO, ".work", "collections"), site / ".work" / "collections")
    write_inventory(site / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        "migrate_vm_boot_timeout": 300,
    }, {
        "nav-vm": {"migrate_vm_source_path": appliances["demo-bios"], "migrate_vm_name": NAME},
        "nav-missing": {"migrate_vm_source_path": str(tmp_path / "missing.ova"),
                        "migrate_vm_name": NAME + "-missing"},
    })
    yield site
    remove_migration("qemu:///system", [NAME, NAME + "-missing"], POOL, POOL_PATH)


def test_navigator_runs_a_migration_with_the_dashboard_in_line_mode(site, tmp_path):
    command = example("docs/ee.md", "navigator-no-ee").text
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ)
    for name in [name for name in env if name.startswith(("ANSIBLE_", "V2KVM_"))]:
        del env[name]
    env.update({
        "PATH": BIN + os.pathsep + env.get("PATH", ""),  # the venv's ansible-navigator and ansible-playbook
        "TMPDIR": str(scratch),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # navigator's helper scripts and collection doc cache
        # Besides what the doc sets: a line per VM every second (not 10), so a short conversion shows.
        "V2KVM_DASHBOARD_LINE_INTERVAL": "1",
        "ANSIBLE_FORKS": "2",
    })
    playbooks_before = sorted(os.listdir(os.path.join(REPO, "playbooks")))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=site, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=1200, check=False)
    out = RUNNER_MARKER.sub("", proc.stdout)
    lines = out.splitlines()
    context = out[-4000:] + proc.stderr[-2000:]

    # The playbook failed for one VM (ansible-playbook's 2), and navigator says so.
    assert proc.returncode == 2, context

    # Progress lines of the conversion (its first sample and its last at least), then the VM's end.
    convert = [line for line in lines if re.match(r"%s nav-vm \S+ (convert|done) \S+ [\d.]+%% " % CLOCK, line)]
    assert convert, context
    assert re.search(r" done \S+ 100(\.0)?% (\S+ \S+)/\2 ", convert[-1]), convert
    assert [line for line in lines if re.match(r"%s nav-vm \u2714 .*elapsed " % CLOCK, line)], context
    # The missing source fails with its reason, and the run's summary counts both.
    failed = [line for line in lines if re.match(r"%s nav-missing FAILED " % CLOCK, line)]
    assert failed and "missing.ova" in failed[0], context
    assert "VMs 2: 1 succeeded, 1 failed, 0 active, 0 pending" in out, context
    assert "\x1b" not in out, "escape codes besides runner's markers: %r" % out[-2000:]

    # The migrated guest is there and running.
    conn = libvirt.open("qemu:///system")
    try:
        assert conn.lookupByName(NAME).isActive()
    finally:
        conn.close()

    # Navigator's log is in the folder it ran in; no playbook artifact (--pae false), nothing in the repo.
    assert sorted(os.listdir(site)) == [".work", "ansible-navigator.log", "inventory.yml", "playbooks"]
    assert sorted(os.listdir(os.path.join(REPO, "playbooks"))) == playbooks_before
