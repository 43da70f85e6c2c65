"""The callback's allow_hosts option reaches the embedded server: a real ansible-playbook run whose play
variable names the host the page is opened by; the server answers for it and refuses (421) any other name,
the environment variable's included (the variable wins, and the server does not add the variable's)."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from web.conftest import REPO

pytestmark = pytest.mark.integration
BIN = os.path.dirname(sys.executable)


def _status(url, host):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/healthz", headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_allow_hosts_from_a_play_variable_reaches_the_embedded_server(tmp_path):
    play = [{"hosts": "all", "gather_facts": False,
             # A dashboard variable beside: the web callback reads only its own (it has no option "mode").
             "vars": {"v2kvm_web_allow_hosts": ["dash.example.test", "Other.Example.Test:8443"],
                      "v2kvm_dashboard_mode": "line"},
             "tasks": [{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts").write_text("vm1 ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_CALLBACKS_ENABLED="v2kvm.migrate.web", V2KVM_WEB_PORT="0", V2KVM_WEB_LINGER="60",
               V2KVM_WEB_HISTORY=str(tmp_path / "h.sqlite3"), V2KVM_WEB_LOG_FILE=str(tmp_path / "web.log"),
               V2KVM_WEB_ALLOW_HOSTS="env.example.test", PATH=BIN + os.pathsep + os.environ["PATH"])
    env.pop("V2KVM_WEB_URL", None)
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts"),
                           str(tmp_path / "play.yml")], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Callback dispatch" not in output and "[WARNING]" not in output, output
    url = re.search(r"dashboard of this run at (\S+)", output).group(1)
    server_pid = json.loads(urllib.request.urlopen(url + "api/metrics", timeout=5).read())["health"]["pid"]
    try:
        # The run reached the server that lingers after it.
        jobs = json.loads(urllib.request.urlopen(url + "api/jobs", timeout=5).read())["jobs"]
        assert [(job["host"], job["status"]) for job in jobs] == [("vm1", "succeeded")]
        port = urllib.parse.urlsplit(url).port
        assert _status(url, "dash.example.test:%d" % port) == 200
        assert _status(url, "other.example.test") == 200  # names match without port, any case
        assert _status(url, "localhost:%d" % port) == 200
        assert _status(url, "env.example.test") == 421
        assert _status(url, "evil.example.test") == 421
    finally:
        os.kill(server_pid, signal.SIGTERM)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    log = (tmp_path / "web.log").read_text()
    assert "Traceback" not in log, log
