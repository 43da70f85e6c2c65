"""The orphan watchdog in real module processes: each child opens a ProgressWriter (what disk_convert,
kvm_migrate and vsphere_export do), blocks its main thread in a read that never returns, and records in a
marker file when its own SIGTERM handler runs. The test plays the controller by writing the heartbeat
file (or not) on a shared timeline, so all cases run side by side in a few seconds."""

import os
import subprocess
import sys
import time

from ansible_collections.v2kvm.migrate.plugins.module_utils import _orphan_watch

SILENCE = 2  # seconds written into the heartbeat, as the action writes v2kvm_progress_orphan_timeout
COLLECTIONS = os.path.abspath(os.path.join(os.path.dirname(_orphan_watch.__file__), *[os.pardir] * 5))

CHILD = r"""
import os, signal, sys, time
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter

progress, marker = sys.argv[1], sys.argv[2]

def on_term(signum, frame):
    with open(marker, "w") as fh:
        fh.write("%r" % time.monotonic())
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
writer = ProgressWriter(progress)
writer.update("convert", 0, 100)
r, w = os.pipe()
print("ready", flush=True)
os.read(r, 1)  # like disk_convert waiting on qemu-img: only a signal aimed at this thread wakes it
"""


def _beat(path):
    with open(path, "w") as fh:
        fh.write("%d\n" % SILENCE)


def _fired_at(case):
    try:
        with open(case["marker"]) as fh:
            return float(fh.read())
    except (OSError, ValueError):
        return None


def test_stale_heartbeat_terminates_the_module_and_fresh_or_missing_ones_do_not(tmp_path):
    names = ("stale", "fresh", "missing", "leftover", "removed")
    cases = {}
    for name in names:
        progress = str(tmp_path / ("%s.progress" % name))
        cases[name] = {"progress": progress, "alive": progress + ".alive", "marker": str(tmp_path / name)}
    # A heartbeat left by an earlier run that was killed: it never changes while this module runs.
    _beat(cases["leftover"]["alive"])
    os.utime(cases["leftover"]["alive"], (time.time() - 3600, time.time() - 3600))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    for case in cases.values():
        case["proc"] = subprocess.Popen([sys.executable, "-c", CHILD, case["progress"], case["marker"]],
                                        env=env, stdout=subprocess.PIPE, text=True)
    try:
        for case in cases.values():
            assert case["proc"].stdout.readline().strip() == "ready"
        start = time.monotonic()
        _beat(cases["stale"]["alive"])
        cases["stale"]["last_beat"] = time.monotonic()
        while time.monotonic() - start < 3 * SILENCE:
            beating = ["fresh"] + (["removed"] if time.monotonic() - start < 1.5 else [])
            for name in beating:
                _beat(cases[name]["alive"])
                cases[name]["last_beat"] = time.monotonic()
            if len(beating) == 1 and os.path.exists(cases["removed"]["alive"]):
                os.unlink(cases["removed"]["alive"])  # what a cancel does: the fallback if its kill missed
            time.sleep(0.2)
        # Polled all along: still running after three times the allowed silence.
        assert _fired_at(cases["fresh"]) is None and cases["fresh"]["proc"].poll() is None
        deadline = time.monotonic() + 10 * SILENCE
        while time.monotonic() < deadline and any(
                cases[name]["proc"].poll() is None for name in ("stale", "fresh", "removed")):
            time.sleep(0.1)
        for name in ("stale", "fresh", "removed"):
            fired = _fired_at(cases[name])
            assert fired is not None, "%s: the SIGTERM handler never ran" % name
            assert fired - cases[name]["last_beat"] >= SILENCE, "%s: fired before the silence ran out" % name
            assert cases[name]["proc"].wait(5) == 0
            assert not os.path.exists(cases[name]["alive"])  # nobody polls any more to remove it
        # Never heartbeaten, or only by an earlier run: no watchdog, however long the module runs.
        for name in ("missing", "leftover"):
            assert _fired_at(cases[name]) is None and cases[name]["proc"].poll() is None, name
        assert os.path.exists(cases["leftover"]["alive"])
    finally:
        for case in cases.values():
            if case["proc"].poll() is None:
                case["proc"].kill()
            case["proc"].wait()
            case["proc"].stdout.close()


def test_closing_the_writer_stops_the_watchdog(tmp_path):
    """A module that finished (writer closed) is not signalled, even if the controller then goes away."""
    from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter

    progress = tmp_path / "p.progress"
    writer = ProgressWriter(str(progress))
    watch = writer._orphan_watch
    writer.close()
    assert not watch._thread.is_alive() and not watch.fired
