"""The dashboard's options can come from play variables and extra variables, not only ansible.cfg and
the environment: a real ansible-playbook run writes the reports those variables name."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from defusedxml import ElementTree as ET

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def test_play_vars_and_extra_vars_set_the_callback_options(tmp_path):
    events, summary, junit = tmp_path / "events.jsonl", tmp_path / "summary.json", tmp_path / "junit.xml"
    play = [{"hosts": "all", "gather_facts": False,
             "vars": {"v2kvm_dashboard_events_file": str(events), "v2kvm_dashboard_summary_file": str(summary),
                      # Reports only, nothing on stdout; the extra variable below wins over it.
                      "v2kvm_dashboard_mode": "off"},
             "tasks": [{"name": "Say hello", "ansible.builtin.debug": {"msg": "hello"}}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts").write_text("vm1 ansible_connection=local\nvm2 ansible_connection=local\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".work", "collections"),
               ANSIBLE_STDOUT_CALLBACK="v2kvm.migrate.dashboard", PATH=BIN + os.pathsep + os.environ["PATH"])
    env.pop("V2KVM_DASHBOARD_MODE", None)

    def run(*extra):
        argv = [os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts"), str(tmp_path / "play.yml")]
        proc = subprocess.run(argv + list(extra), capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Ansible survives an exception in a callback method with only this warning: a view is broken.
        assert "Callback dispatch" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        return proc.stdout

    # The play's mode=off: the run prints no dashboard lines at all.
    assert "vm1" not in run()
    events.unlink()
    # -e mode=line wins over the play: plain progress lines, no escape codes.
    out = run("-e", "v2kvm_dashboard_mode=line", "-e", "v2kvm_dashboard_junit_file=%s" % junit)
    assert "\x1b" not in out and "vm1" in out and "vm2" in out, out
    kinds = [json.loads(line)["type"] for line in events.read_text().splitlines()]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and kinds.count("vm_end") == 2
    assert json.loads(summary.read_text())
    suite = ET.parse(junit).getroot()
    assert len(suite.findall(".//testcase")) == 2
