"""Kill a whole ansible-playbook run with SIGKILL at an observable moment, as a crashed controller, an OOM kill
or an AWX cancel would, and find what it left running.

The run gets a session (and process group) of its own; ``Run.kill`` takes ansible-playbook and every process
under it (its workers, which sit in sessions of their own, and every module they run the plain way). Modules run
through the progress action are started by Ansible's ``async_wrapper``, which daemonizes them away from the
run: they survive, exactly as they do on a real target whose controller died.

Every process of a run carries ``V2KVM_KILL_RUN=<tag>`` in its environment (modules and qemu-img inherit it),
which is how ``processes(tag)`` finds them, and only them, among other runs' processes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time

from rig.playbook import BIN, CALLBACKS, REPO

TAG_VARIABLE = "V2KVM_KILL_RUN"


def environ(tag, env=None):
    environ_ = dict(os.environ)
    environ_.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(REPO, ".work", "collections"),
        "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
        "ANSIBLE_FORKS": "4",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": BIN + os.pathsep + environ_.get("PATH", ""),
        TAG_VARIABLE: tag,
    })
    environ_.update(env or {})
    return environ_


class Run:
    """ansible-playbook in a session of its own, its output in a file (read while it runs)."""

    def __init__(self, playbook, inventory, tag, extra_args=(), env=None):
        self.tag = tag
        handle, self.log = tempfile.mkstemp(prefix="v2kvm-kill-run-", suffix=".log")
        cmd = [os.path.join(BIN, "ansible-playbook"), "-i", str(inventory), os.path.join(REPO, "playbooks", playbook),
               *extra_args]
        self.proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=environ(tag, env),
                                     start_new_session=True)
        os.close(handle)
        self.started = time.monotonic()

    def output(self):
        with open(self.log, errors="replace") as fh:
            return fh.read()

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL to ansible-playbook, its process group and every process under it: Ansible's workers each
        call setsid(), so the group alone would miss them, and a surviving worker would go on polling (and
        heartbeating) the job it started. The tree is frozen first (SIGSTOP), so nothing forks between the listing
        and the kill. Modules async_wrapper daemonized are no longer under the run: they survive."""
        tree = {self.proc.pid}
        for _attempt in range(3):
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
            tree |= set(descendants(self.proc.pid))
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=60)

    def wait(self, timeout=900):
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.running():
            self.kill()
        try:
            os.unlink(self.log)
        except OSError:
            pass


def descendants(pid):
    """Every process under ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_when(run, moment, timeout=600, poll=0.05):
    """Kill ``run`` as soon as ``moment()`` is true; False (and no kill) when the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not run.running():
            return False
        if moment():
            run.kill()
            return True
        time.sleep(poll)
    raise AssertionError("the kill moment never came within %d s; output:\n%s" % (timeout, run.output()[-3000:]))


def processes(tag):
    """{pid: command line} of the live processes carrying ``V2KVM_KILL_RUN=tag`` (zombies excluded)."""
    wanted = ("%s=%s" % (TAG_VARIABLE, tag)).encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as fh:
                if wanted not in fh.read().split(b"\0"):
                    continue
            with open("/proc/%s/stat" % entry) as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                found[int(entry)] = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def module_processes(tag):
    """The modules (and their children) a killed run left: processes of the run other than async_wrapper's
    supervisors, which only wait for them."""
    return {pid: cmd for pid, cmd in processes(tag).items() if "async_wrapper" not in cmd}


def wait_gone(tag, timeout=120):
    """Wait until no process of the run is left; returns what is still there at the end."""
    deadline = time.monotonic() + timeout
    while True:
        left = processes(tag)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def kill_all(tag):
    """Test clean-up: SIGKILL whatever the run left (only its own processes)."""
    for pid in processes(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def progress_samples(path):
    """The JSON lines of a progress file so far (a line being written is skipped)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return []
    samples = []
    for line in text.splitlines():
        try:
            samples.append(json.loads(line))
        except ValueError:
            continue
    return samples


def seeded_rng(variable="V2KVM_FAULT_SEED"):
    """(seed, Random): the seed from the environment variable to replay a run, else a fresh one."""
    seed = int(os.environ.get(variable) or random.SystemRandom().randrange(1, 10 ** 9))
    return seed, random.Random(seed)
