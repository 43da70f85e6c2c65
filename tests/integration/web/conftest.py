"""Fixtures of the web dashboard browser tests: a real server process (scripts/web_dashboard.py)
on a free port and Debian's headless Chromium driven by Playwright (no downloaded browser)."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = os.path.dirname(TESTS)
OUTPUT = os.path.join(TESTS, "output", "web")
CHROMIUM = os.environ.get("V2KVM_CHROMIUM", "/usr/bin/chromium")
# Made per run: a fixed string here would read as a leaked credential to scanners.
TOKEN = secrets.token_hex(16)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """scripts/web_dashboard.py in its own process; stop()/start() keep port and history (restart test)."""

    def __init__(self, workdir, *extra, env=None):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.history = os.path.join(str(workdir), "history.sqlite3")
        self.log = os.path.join(str(workdir), "server.log")
        self.extra = list(extra)
        self.env = dict(env or {})
        self.proc = None

    def start(self):
        env = dict(os.environ, V2KVM_WEB_TOKEN=TOKEN, **self.env)
        cmd = [sys.executable, os.path.join(REPO, "scripts", "web_dashboard.py"), "--port", str(self.port),
               "--history", self.history, *self.extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "healthz", timeout=1).read()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise AssertionError("web dashboard did not start: %s" % open(self.log).read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def post(self, run_id, events, token=TOKEN, controller=None):
        body = {"run": {"id": run_id, "name": "test.yml"}, "events": events}
        if controller:
            body["controller"] = controller
        request = urllib.request.Request(self.url + "api/ingest", data=json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": "Bearer %s" % token,
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture
def web_server(tmp_path):
    servers = []

    def start(*extra, env=None):
        server = ServerProcess(tmp_path / ("s%d" % len(servers)), *extra, env=env)
        os.makedirs(os.path.dirname(server.history), exist_ok=True)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


# Module scope: playwright's sync API keeps an asyncio loop running in this thread until it stops,
# and later tests (the web unit tests) need to run loops of their own.
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium chromium-driver)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    profile = tempfile.mkdtemp(prefix="v2kvm-chromium-")
    with playwright_api.sync_playwright() as pw:
        # Debian's Chromium, never a downloaded one; no network beyond 127.0.0.1 is needed.
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1400, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: (errors.append("dialog: %s" % dialog.message), dialog.dismiss()))
    page.js_errors = errors
    yield page
    page.close()


@pytest.fixture
def screenshot_dir():
    os.makedirs(OUTPUT, exist_ok=True)
    return OUTPUT
