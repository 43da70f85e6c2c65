"""The web dashboard in real headless Chromium: live updates from a real throttled disk_convert
run through the v2kvm.migrate.web callback (embedded server), XSS corpus, 401 without token, the
client cap, reconnect after a server restart. Screenshots go to tests/output/web/."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from web.conftest import REPO, TOKEN

pytestmark = pytest.mark.integration

BIN = os.path.dirname(sys.executable)
RECORD_CALLBACKS = os.path.join(REPO, "tests", "rig", "callback_plugins")
MIB = 1 << 20


def _wait(page, script, timeout=20):
    # Polled from Python: a string predicate polled in the page would need eval, which the page's CSP forbids.
    deadline = time.time() + timeout
    while True:
        if page.evaluate("() => (%s)" % script):
            return
        if time.time() > deadline:
            raise AssertionError("timed out after %s s waiting for %s" % (timeout, script))
        time.sleep(0.1)


def _text(page, selector):
    return page.locator(selector).first.text_content()


def test_cards_table_and_charts_follow_a_real_throttled_conversion(tmp_path, page, screenshot_dir):
    src = tmp_path / "source.raw"
    with open(src, "wb") as fh:
        for _i in range(96):
            fh.write(os.urandom(MIB))  # 96 MiB at 4 MiB/s: about 24 s of qemu-img per VM
    dest = tmp_path / "out"
    dest.mkdir()
    inventory = tmp_path / "inventory"
    inventory.write_text("[vms]\n" + "".join(
        "%s ansible_connection=local ansible_python_interpreter=%s\n" % (h, sys.executable)
        for h in ("web-vm1", "web-vm2", "web-broken")))
    convert = {"v2kvm.migrate.disk_convert": {
        "src": "{{ '%s' if inventory_hostname != 'web-broken' else '%s/missing.raw' }}" % (src, tmp_path),
        "src_format": "raw", "dest": "%s/{{ inventory_hostname }}.qcow2" % dest, "force": True,
        "rate_limit": 4 * MIB}, "name": "Convert", "delegate_to": "localhost"}
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "vms", "gather_facts": False, "tasks": [convert]}]))
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_CALLBACK_PLUGINS": RECORD_CALLBACKS, "ANSIBLE_CALLBACKS_ENABLED": "v2kvm.migrate.web",
        "V2KVM_WEB_PORT": "0", "V2KVM_WEB_LINGER": "30", "V2KVM_WEB_HISTORY": str(tmp_path / "h.sqlite3"),
        "V2KVM_WEB_LOG_FILE": str(tmp_path / "web.log"), "ANSIBLE_FORKS": "3", "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False", "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), str(playbook)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pid = None
    try:
        url, seen = None, []
        for line in proc.stdout:
            seen.append(line)
            match = re.search(r"dashboard of this run at (\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url, "".join(seen)
        # Keep reading ansible-playbook's output so it never blocks on a full pipe.
        reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
        reader.start()
        server_pid = json.loads(urllib.request.urlopen(url + "api/metrics").read())["health"]["pid"]
        page.goto(url)
        _wait(page, "document.getElementById('conn').dataset.state === 'live'")
        try:
            _wait(page, "Number(document.getElementById('card-active').textContent) >= 2", timeout=60)
        except AssertionError:
            raise AssertionError(urllib.request.urlopen(url + "api/jobs").read().decode() + "".join(seen)) from None
        row = "#jobs-body tr:has-text('web-vm1')"
        percents, data_cards, points = set(), set(), []
        deadline = time.time() + 60
        while time.time() < deadline and len(percents - {""}) < 3:
            percents.add(_text(page, row + " .pct"))
            data_cards.add(_text(page, "#card-data"))
            points.append(page.evaluate("window.v2kvmDashboard.chartPoints().timeline"))
            time.sleep(1.0)
        page.screenshot(path=os.path.join(screenshot_dir, "live-run.png"), full_page=True)
        assert len(percents - {""}) >= 3, percents  # the bar moved while qemu-img ran
        assert len(data_cards) >= 3 and points[-1] > points[0], (data_cards, points)
        assert "convert" in _text(page, row + " td.stage")
        assert page.evaluate("window.v2kvmDashboard.chartPoints().status")[0] >= 2  # doughnut: 2 running
        proc.wait(timeout=120)
        reader.join(10)
        assert proc.returncode == 2, "".join(seen)  # web-broken fails, the others succeed
        _wait(page, "document.getElementById('card-completed').textContent === '2'")
        _wait(page, "document.getElementById('card-failed').textContent === '1'")
        assert _text(page, row + " td.target") == "localhost"  # from the delegated task's result
        assert page.locator("#alerts .alert.critical").count() >= 1
        assert page.locator("#alerts .alert").count() <= 3
        page.locator("#jobs-body tr:has-text('web-broken')").click()
        _wait(page, "document.getElementById('detail-errors').textContent.includes('missing.raw')")
        assert page.evaluate("window.v2kvmDashboard.chartPoints().timeline") >= 10
        page.screenshot(path=os.path.join(screenshot_dir, "run-finished.png"), full_page=True)
        assert page.js_errors == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server_pid:
            try:
                os.kill(server_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


XSS = [
    "<img src=x onerror=window.__xss=1>", "<script>window.__xss=2</script>", "\"><svg onload=window.__xss=3>",
    "javascript:window.__xss=4", "' onmouseover='window.__xss=5", "<iframe src=javascript:window.__xss=6>",
    "{{constructor.constructor('window.__xss=7')()}}", "&lt;b&gt;entity&lt;/b&gt;",
]


def test_xss_corpus_in_vm_names_and_messages_stays_inert(web_server, page, screenshot_dir):
    server = web_server()
    events = [{"type": "run_start", "playbook": XSS[1]}, {"type": "play_start", "hosts": XSS}]
    for i, name in enumerate(XSS):
        events += [{"type": "task_start", "host": name, "task": XSS[(i + 1) % len(XSS)], "task_uuid": "u"},
                   {"type": "progress", "host": name, "task": name, "task_uuid": "u", "stage": XSS[i - 1],
                    "done": 1, "total": 2, "rate": 1e6, "target": XSS[(i + 2) % len(XSS)]},
                   {"type": "task_end", "host": name, "task": name, "task_uuid": "u", "status": "failed",
                    "msg": XSS[(i + 3) % len(XSS)], "spec_name": name, "source_type": XSS[0]},
                   {"type": "vm_end", "host": name, "verdict": "failed", "msg": XSS[(i + 3) % len(XSS)]}]
    server.post("xss", events)
    page.goto(server.url)
    _wait(page, "document.querySelectorAll('#jobs-body tr').length === %d" % len(XSS))
    page.locator("#jobs-body tr").first.click()
    _wait(page, "document.getElementById('detail-events').children.length > 0")
    page.locator("#jobs-body tr").first.hover()
    time.sleep(1.5)
    page.screenshot(path=os.path.join(screenshot_dir, "xss.png"), full_page=True)
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []
    injected = page.evaluate("document.querySelectorAll('main img, main svg, main iframe, #detail img, #alerts img,"
                             " script:not([src])').length")
    assert injected == 0
    names = page.locator("#jobs-body td.vm .name").all_text_contents()
    assert sorted(names) == sorted(XSS)  # shown literally, character for character
    assert XSS[1] in page.locator("#alerts").text_content()  # a message holding <script>, as text


def test_api_and_page_refuse_reads_without_the_token(web_server, page):
    server = web_server("--auth-reads")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "api/jobs")
    assert info.value.code == 401
    page.goto(server.url)
    _wait(page, "document.getElementById('conn').dataset.state === 'unauthorized'")
    assert "401" in _text(page, "#conn-text")
    page.goto(server.url + "#token=" + TOKEN)
    page.reload()
    _wait(page, "document.getElementById('conn').dataset.state === 'live'")


def test_client_cap_holds_and_the_refused_page_says_why(web_server, browser):
    server = web_server("--max-clients", "2")
    pages = [browser.new_page() for _n in range(3)]
    try:
        for p in pages[:2]:
            p.goto(server.url)
            _wait(p, "document.getElementById('conn').dataset.state === 'live'")
        pages[2].goto(server.url)
        _wait(pages[2], "document.getElementById('conn').dataset.state === 'refused'")
        assert "too many clients" in _text(pages[2], "#conn-text")
        health = json.loads(urllib.request.urlopen(server.url + "api/metrics").read())["health"]
        assert health["clients"] == 2
    finally:
        for p in pages:
            p.close()


def test_page_reconnects_after_a_server_restart_and_keeps_history(web_server, page):
    server = web_server()
    server.post("r1", [{"type": "run_start", "playbook": "p.yml"}, {"type": "play_start", "hosts": ["keep-me"]}])
    page.goto(server.url)
    _wait(page, "document.getElementById('conn').dataset.state === 'live'")
    _wait(page, "document.querySelector('#jobs-body tr') !== null")
    server.stop()
    _wait(page, "document.getElementById('conn').dataset.state === 'down'")
    server.start()
    server.post("r1", [{"type": "vm_end", "host": "keep-me", "verdict": "succeeded"}])
    _wait(page, "document.getElementById('conn').dataset.state === 'live'", timeout=40)
    _wait(page, "document.getElementById('card-completed').textContent === '1'")
    assert "keep-me" in _text(page, "#jobs-body")
