"""The real migration playbook under the dashboard in a real terminal (tmux): the bars and percentages
advance while disks convert, `d` switches the theme, `q` stops the run without leaving anything that
looks finished, and a re-run afterwards completes with every guest validated."""

import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from rig.libvirt_cleanup import remove_migration
from rig.playbook import run_playbook, write_inventory

libvirt = pytest.importorskip("libvirt")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RUN = uuid.uuid4().hex[:6]
POOL = f"v2kvm-test-tmux-{RUN}"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
VMS = {"tm-bios": ("demo-bios", f"v2kvm-test-tmux-{RUN}-bios"),
       "tm-twodisk": ("demo-twodisk", f"v2kvm-test-tmux-{RUN}-twodisk")}


class Tmux:
    def __init__(self, command, width=160, height=45):
        self.name = "v2kvm-mig-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        command], check=True)

    def capture(self, escapes=False):
        argv = ["tmux", "capture-pane", "-p", "-t", self.name] + (["-e"] if escapes else [])
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


def percents(screen):
    return [float(p) for p in re.findall(r"(\d+(?:\.\d)?)%", screen)]


def colours(screen_with_escapes):
    """The set of SGR colour sequences on the screen: a theme switch changes it."""
    return set(re.findall(r"\x1b\[[0-9;]*m", screen_with_escapes))


@pytest.fixture
def fleet(libvirt_daemon, appliances, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        # Slow conversions, as a real fleet's are: the screen must show them moving.
        "migrate_vm_convert_rate_limit": 1024 * 1024,
        "migrate_vm_boot_timeout": 300,
    }, {host: {"migrate_vm_source_path": appliances[app], "migrate_vm_name": name}
        for host, (app, name) in VMS.items()})
    yield inventory
    remove_migration("qemu:///system", [name for _app, name in VMS.values()], POOL, POOL_PATH)


def test_dashboard_shows_a_real_migration_d_switches_theme_q_stops_and_a_rerun_finishes(fleet):
    env = {"ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "v2kvm.migrate.dashboard", "ANSIBLE_FORKS": "4",
           "TERM": "xterm-256color", "V2KVM_DASHBOARD_REFRESH_INTERVAL": "0.3", "PATH": BIN + ":/usr/bin:/bin"}
    exports = " ".join("%s=%s" % item for item in env.items())
    playbook = os.path.join(REPO, "playbooks", "migrate.yml")
    command = ("env -u CI -u JOB_ID -u COLUMNS -u LINES %s %s -i %s %s; echo EXIT=$?; sleep 120"
               % (exports, os.path.join(BIN, "ansible-playbook"), fleet, playbook))
    term = Tmux(command)
    try:
        # Percentages on the migrations panel advance while the disks convert.
        seen, deadline = [], time.time() + 120
        while time.time() < deadline and len(set(seen)) < 3:
            screen = term.capture()
            assert "EXIT=" not in screen, screen
            partial = [p for p in percents(screen) if 0 < p < 100]
            if partial and (not seen or max(partial) != seen[-1]):
                seen.append(max(partial))
            time.sleep(0.25)
        assert len(set(seen)) >= 3, (seen, term.capture())
        assert "Convert each disk into the pool" in term.capture() or "convert" in term.capture()

        # d switches between the dark and the light theme: the colours on screen change.
        before = colours(term.capture(escapes=True))
        term.keys("d")
        deadline = time.time() + 10
        while time.time() < deadline and colours(term.capture(escapes=True)) == before:
            time.sleep(0.2)
        assert colours(term.capture(escapes=True)) != before

        # q stops the run: ansible-playbook ends, no half-written disk is left under its final name.
        term.keys("q")
        deadline = time.time() + 60
        while time.time() < deadline and "EXIT=" not in term.capture():
            time.sleep(0.2)
        screen = term.capture()
        assert "EXIT=" in screen and "EXIT=0" not in screen, screen

        def leftover_parts():
            names = os.listdir(POOL_PATH) if os.path.isdir(POOL_PATH) else []
            return [f for f in names if f.endswith(".part")]

        # The stopped module removes its .part in its SIGTERM handler, right after qemu-img dies.
        deadline = time.time() + 20
        while leftover_parts() and time.time() < deadline:
            time.sleep(0.2)
        leftovers = os.listdir(POOL_PATH) if os.path.isdir(POOL_PATH) else []
        assert not [f for f in leftovers if f.endswith(".part")], leftovers
        for disk in [f for f in leftovers if f.endswith(".qcow2")]:
            assert f".{disk}.v2kvm.json" in leftovers, f"{disk} has no sidecar: it would look finished"
    finally:
        term.close()

    # A re-run resumes: every guest ends validated and running.
    run = run_playbook("migrate.yml", fleet)
    assert run.rc == 0, run.output[-3000:]
    conn = libvirt.open("qemu:///system")
    try:
        for host, (_app, name) in VMS.items():
            assert conn.lookupByName(name).isActive(), name
            verdict = run.result_of(host, "Validate the migrated guest")["result"]["verdict"]
            assert verdict["booted"] is True and "V2KVM-BOOT-OK" in verdict["matched_line"]
    finally:
        conn.close()
