# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pictures of the dashboards from a real run, for the README and the guides in docs/.

    .venv/bin/python scripts/screenshots.py            # writes docs/images/
    .venv/bin/python scripts/screenshots.py --out DIR  # somewhere else

Migrates the demo appliances (tests/rig/appliances.py: BIOS, two disks, UEFI and the broken one
that fails validation and is rolled back) with the real playbook, with the terminal dashboard as
the stdout callback in a tmux pane and the web callback's embedded server next to it, and saves

- terminal-dashboard.svg       the tmux pane while the disks convert (ANSI colours rendered by Rich)
- terminal-dashboard-done.svg  the same pane when the run has ended
- web-dashboard.png            the web page (headless Debian Chromium) while the disks convert
- web-dashboard-done.png       the web page after the run, the failed VM's details open

Needs root (a libvirt daemon on qemu:///system, a pool under /var/lib/libvirt/images), tmux and
chromium (bindep.txt). The domains are named after the appliances (demo-bios, ...), as the pictures
show them, in the pool ``v2kvm-screenshots``; the script refuses to start when any of them exists, and
removes at the end, whatever happened, the domains (with NVRAM), the pool and its directory, the tmux
session, the embedded web server and its scratch directory (the playbook runs there, under relative
paths, so no directory of this machine shows in the pictures).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.rig.appliances import build_demo_set  # noqa: E402
from tests.rig.libvirt_cleanup import remove_migration  # noqa: E402
from tests.rig.libvirtd import ensure_libvirtd  # noqa: E402

BIN = os.path.dirname(sys.executable)
CHROMIUM = os.environ.get("V2KVM_CHROMIUM", "/usr/bin/chromium")
URI = "qemu:///system"
RUN = uuid.uuid4().hex[:6]
# Fixed names, as they show in the pictures; the script refuses to start when any of them exists
# (a `make demo` fleet still defined: `make demo-clean` removes it).
POOL = "v2kvm-screenshots"
POOL_PATH = f"/var/lib/libvirt/images/{POOL}"
HOSTS = ("demo-bios", "demo-twodisk", "demo-uefi", "demo-broken")
COLUMNS, LINES = 132, 28
# Wide enough for the eight cards and the four charts in one row each, the job table under them.
WEB_SIZE = {"width": 1440, "height": 700}  # full-page shots: as tall as the page


def log(message):
    print("screenshots: %s" % message, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pane:
    """A detached tmux session running one command in a COLUMNS x LINES terminal."""

    def __init__(self, command, cwd):
        self.name = "v2kvm-shots-%s" % RUN
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(COLUMNS), "-y", str(LINES),
                        "-c", cwd, command], check=True)

    def capture(self, escapes=False, history=False):
        argv = (["tmux", "capture-pane", "-p", "-t", self.name] + (["-e"] if escapes else [])
                + (["-S", "-%d" % (4 * LINES)] if history else []))
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


def save_svg(ansi_screen, path, title):
    """Render a captured pane (SGR escapes included) the way a terminal shows it."""
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=COLUMNS, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    lines = ansi_screen.rstrip("\n").split("\n")
    for line in lines:
        console.print(Text.from_ansi(line), end="\n", overflow="crop", no_wrap=True, crop=True)
    console.save_svg(path, title=title)


def web_server_pid(url):
    try:
        with urllib.request.urlopen(url + "api/metrics", timeout=2) as response:  # noqa: S310 (http://127.0.0.1)
            return json.loads(response.read())["health"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def mid_run(screen):
    """Disks convert: at least two percentages between 30 and 85 on the migrations panel."""
    partial = [float(p) for p in re.findall(r"(\d+(?:\.\d)?)%", screen) if 30 <= float(p) <= 85]
    return len(partial) >= 2 and "MB/s" in screen


# At least two rows of the page's job table with a progress between 30 and 85 %.
PAGE_MID_RUN = """[...document.querySelectorAll('#jobs-body .pct')]
    .map(e => parseFloat(e.textContent)).filter(p => p >= 30 && p <= 85).length >= 2"""


def optimise_png(path):
    """Quantise the screenshot to a palette: a dashboard has few colours, the file gets 3-4 times smaller."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def wait_for(predicate, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError("timed out after %d s waiting for %s" % (timeout, what))


def write_inventory(path, appliances):
    import yaml

    group_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "migrate_vm_storage_pool": POOL,
        "migrate_vm_storage_pool_path": POOL_PATH,
        "migrate_vm_network_map": {"VM Network": "user"},
        # Throttled, as a real fleet's conversions are slow: the pictures show bars moving.
        "migrate_vm_convert_rate_limit": 2 * 1024 * 1024,
        "migrate_vm_boot_timeout": 300,
    }
    hosts = {host: {"migrate_vm_source_path": "appliances/%s.ova" % host}
             for host in HOSTS}
    os.makedirs(os.path.join(os.path.dirname(path), "appliances"))
    for host in HOSTS:
        os.symlink(appliances[host], os.path.join(os.path.dirname(path), "appliances", host + ".ova"))
    with open(path, "w") as handle:
        yaml.safe_dump({"migrate": {"vars": group_vars, "hosts": hosts}}, handle)
    # The role reads relative source paths from the playbook's directory: a copy of the playbook here.
    shutil.copy(os.path.join(REPO, "playbooks", "migrate.yml"), os.path.join(os.path.dirname(path), "migrate.yml"))


def shoot(out, work):
    cache = os.path.join(REPO, ".work", "test-cache")
    appliances = build_demo_set(os.path.join(cache, "appliances"), workdir=os.path.join(cache, "build"))
    write_inventory(os.path.join(work, "inventory.yml"), appliances)
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    env = {
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "v2kvm.migrate.dashboard",
        "ANSIBLE_CALLBACKS_ENABLED": "v2kvm.migrate.web",
        "ANSIBLE_FORKS": "4", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "TERM": "xterm-256color", "V2KVM_DASHBOARD_KEYS": "false",
        "V2KVM_DASHBOARD_SUMMARY_FILE": "reports/summary.json",
        "V2KVM_DASHBOARD_JUNIT_FILE": "reports/junit.xml",
        "V2KVM_WEB_PORT": str(port), "V2KVM_WEB_LINGER": "900", "V2KVM_WEB_RUN_LABEL": "demo fleet",
        "V2KVM_WEB_HISTORY": "web/history.sqlite3", "V2KVM_WEB_LOG_FILE": "web/server.log",
        "PATH": BIN + ":/usr/bin:/bin",
    }
    os.makedirs(os.path.join(work, "reports"))
    os.makedirs(os.path.join(work, "web"))
    exports = " ".join("%s='%s'" % item for item in env.items())
    # Relative paths only: the pane shows nothing of this machine's directories.
    command = ("env -u CI -u JOB_ID -u COLUMNS -u LINES %s ansible-playbook -i inventory.yml migrate.yml; "
               "echo EXIT=$?; sleep 3600" % exports)
    pane = Pane(command, work)
    server_pid = None
    try:
        from playwright.sync_api import sync_playwright

        profile = os.path.join(work, "chromium")
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, viewport=WEB_SIZE, color_scheme="dark",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      "--disable-crash-reporter", "--disable-breakpad"])
            page = browser.new_page()
            server_pid = wait_for(lambda: web_server_pid(url), 120, "the embedded web server")
            page.goto(url)
            log("run started; web dashboard at %s" % url)

            # Both views while the disks convert (the page gets the same events, batched, a little later).
            wait_for(lambda: "EXIT=" in pane.capture() or (mid_run(pane.capture()) and page.evaluate(PAGE_MID_RUN)),
                     600, "disks converting", interval=0.2)
            if "EXIT=" in pane.capture():
                raise RuntimeError("the run ended before the disks converted:\n" + pane.capture())
            save_svg(pane.capture(escapes=True), os.path.join(out, "terminal-dashboard.svg"), "v2kvm.migrate")
            page.screenshot(path=os.path.join(out, "web-dashboard.png"), full_page=True)
            log("mid-run pictures taken")

            wait_for(lambda: "EXIT=" in pane.capture(), 1800, "the end of the run", interval=1.0)
            screen = pane.capture()
            rc = re.search(r"EXIT=(\d+)", screen).group(1)
            log("playbook exit code %s (2 is expected: demo-broken fails on purpose)" % rc)
            # The dashboard's last frame stays above the EXIT line, scrolled up by it: cut it out of the
            # scroll-back, from its title line to the line before EXIT.
            lines = pane.capture(escapes=True, history=True).split("\n")
            end = max(i for i, line in enumerate(lines) if "EXIT=" in line)
            start = max(i for i, line in enumerate(lines[:end]) if "v2kvm.migrate dashboard" in line)
            final = "\n".join(lines[start:end])
            save_svg(final, os.path.join(out, "terminal-dashboard-done.svg"), "v2kvm.migrate")
            wait_for(lambda: page.evaluate("document.getElementById('card-failed').textContent === '1'"),
                     60, "the web page's failed VM", interval=0.2)
            page.locator("#jobs-body tr:has-text('demo-broken')").first.click()
            time.sleep(1.0)  # the detail panel opens
            page.screenshot(path=os.path.join(out, "web-dashboard-done.png"), full_page=True)
            browser.close()
        for name in ("web-dashboard.png", "web-dashboard-done.png"):
            optimise_png(os.path.join(out, name))
        log("pictures in %s" % out)
    finally:
        pane.close()
        pid = server_pid or web_server_pid(url)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def names_in_use():
    import libvirt

    conn = libvirt.open(URI)
    try:
        names = set(conn.listDefinedDomains()) | {dom.name() for dom in conn.listAllDomains()}
        pools = set(conn.listStoragePools()) | set(conn.listDefinedStoragePools())
    finally:
        conn.close()
    return sorted(names & set(HOSTS)) + sorted(pools & {POOL}) + ([POOL_PATH] if os.path.exists(POOL_PATH) else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "images"), help="directory of the pictures")
    args = parser.parse_args(argv)
    for tool in ("tmux", CHROMIUM):
        if shutil.which(tool) is None:
            parser.error("%s is not installed (see bindep.txt)" % tool)
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)
    daemon = ensure_libvirtd(os.path.join(REPO, ".work", "test-libvirtd"))
    taken = names_in_use()
    if taken:
        daemon.stop()
        parser.error("%s already exist on %s: this script makes and removes them (`make demo-clean` removes "
                     "the demo fleet)" % (", ".join(taken), URI))
    work = tempfile.mkdtemp(prefix="v2kvm-shots-")
    try:
        shoot(out, work)
    finally:
        remove_migration(URI, list(HOSTS), POOL, POOL_PATH)
        shutil.rmtree(work, ignore_errors=True)
        daemon.stop()
        log("removed the run's domains, pool %s and scratch directory" % POOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
