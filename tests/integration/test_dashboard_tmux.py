"""The dashboard's terminal view in a real terminal (tmux): bars advance while disk_convert runs,
and q stops the run cleanly."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

import test_progress_channel
from test_progress_channel import PYTHON, REPO, _convert_task, _processes_mentioning

# The session fixture lives with the progress-channel tests; binding it here lets pytest find it.
slow_source = test_progress_channel.slow_source

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]
BIN = os.path.dirname(sys.executable)


class Tmux:
    def __init__(self, command, width=150, height=40):
        self.name = "v2kvm-dash-%s" % uuid.uuid4().hex[:8]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        command], check=True)

    def capture(self):
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True,
                             check=False)
        return out.stdout

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


def _start(tmp_path, source):
    dest = tmp_path / "out"
    dest.mkdir()
    (tmp_path / "inventory").write_text("[vms]\nvm1 ansible_connection=local ansible_python_interpreter=%s\n"
                                        % PYTHON)
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "vms", "gather_facts": False,
                                                    "tasks": [_convert_task(source, str(dest))]}]))
    env = {"ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
           "ANSIBLE_STDOUT_CALLBACK": "v2kvm.migrate.dashboard", "TERM": "xterm-256color",
           "V2KVM_DASHBOARD_REFRESH_INTERVAL": "0.3"}
    exports = " ".join("%s=%s" % (k, v) for k, v in env.items())
    # CI/AWX variables of the test runner would switch the callback to line mode; COLUMNS/LINES (set by
    # pytest) would override the pane size.
    command = ("env -u CI -u JOB_ID -u COLUMNS -u LINES %s %s -i %s %s; echo EXIT=$?; sleep 60"
               % (exports, os.path.join(BIN, "ansible-playbook"), tmp_path / "inventory", tmp_path / "play.yml"))
    return Tmux(command), dest


def _vm1_percent(screen):
    for line in screen.splitlines():
        if "vm1" in line:
            match = re.search(r"(\d+\.\d)%", line)
            if match:
                return float(match.group(1))
    return None


def test_terminal_view_shows_bars_advancing(tmp_path, slow_source):
    term, dest = _start(tmp_path, slow_source)
    try:
        seen, screen, screens = [], "", []
        deadline = time.time() + 120
        while time.time() < deadline:
            screen = term.capture()
            screens.append(screen)
            if "EXIT=" in screen:
                break
            pct = _vm1_percent(screen)
            if pct is not None and (not seen or pct != seen[-1]):
                seen.append(pct)
            time.sleep(0.25)
        assert "EXIT=0" in screen, screen
        # The bar moved through at least three positions, one of them part-way (the page cache makes the
        # warm conversion take ~2 s, so more cannot be promised on every run).
        partial = [p for p in seen if 0 < p < 100]
        assert len(set(seen)) >= 3 and partial, (seen, screens[len(screens) // 2])
        assert seen == sorted(seen), seen
        assert "━" in screen and "metrics" in screen and "succeeded 1" in screen and "(finished)" in screen
        assert "\x1b" not in screen  # capture-pane gives text: the frame was drawn, not escape garbage
        assert os.path.exists(dest / "vm1.qcow2")
    finally:
        term.close()


def test_q_stops_the_run_and_leaves_no_partial_image(tmp_path, slow_source):
    term, dest = _start(tmp_path, slow_source)
    part = dest / ".vm1.qcow2.part"
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (_vm1_percent(term.capture()) or 0) <= 0:
            time.sleep(0.2)
        assert part.exists(), term.capture()
        term.keys("q")
        deadline = time.time() + 60
        while time.time() < deadline and "EXIT=" not in term.capture():
            time.sleep(0.2)
        screen = term.capture()
        assert "EXIT=" in screen and "EXIT=0" not in screen, screen
        # qemu-img dies at once; the module removes its .part in its SIGTERM handler right after.
        deadline = time.time() + 15
        while (_processes_mentioning(str(part)) or os.listdir(dest)) and time.time() < deadline:
            time.sleep(0.2)
        assert _processes_mentioning(str(part)) == []
        assert os.listdir(dest) == []
    finally:
        term.close()
