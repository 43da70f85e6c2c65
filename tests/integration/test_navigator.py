"""ansible-navigator without an execution environment, in stdout mode, runs the migration playbook: a real
migration of one demo OVA on the test libvirt daemon next to a VM whose source is missing. The dashboard's
line mode shows both in navigator's output, and navigator exits with the playbook's code. Navigator's log,
artifacts, caches and temporary files go to tmp_path."""

import os
import re
import subprocess
import sys
import uuid

import pytest
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
def migration(libvirt_daemon, appliances, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", {
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
    yield inventory
    remove_migration("qemu:///system", [NAME, NAME + "-missing"], POOL, POOL_PATH)


def test_navigator_runs_a_migration_with_the_dashboard_in_line_mode(migration, tmp_path):
    work, scratch = tmp_path / "navigator", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    env = dict(os.environ)
    env.update({
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        "TMPDIR": str(scratch),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "v2kvm.migrate.dashboard",
        # Under ansible-runner the stdout callback is runner's (it wraps this one), so `auto` would pick
        # no view: line mode is asked for, as docs/ee.md says.
        "V2KVM_DASHBOARD_MODE": "line",
        "V2KVM_DASHBOARD_LINE_INTERVAL": "1",
        "ANSIBLE_FORKS": "2",
    })
    log_file = tmp_path / "navigator.log"
    argv = [os.path.join(BIN, "ansible-navigator"), "run", os.path.join(REPO, "playbooks", "migrate.yml"),
            "-i", str(migration), "--ee", "false", "--mode", "stdout",
            "--playbook-artifact-enable", "false", "--log-file", str(log_file), "--log-level", "info",
            "--collection-doc-cache-path", str(tmp_path / "doc-cache.db")]
    proc = subprocess.run(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=1200, check=False)
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

    # Navigator wrote its log where it was told, and nothing else where it ran.
    assert log_file.exists()
    assert os.listdir(work) == []
