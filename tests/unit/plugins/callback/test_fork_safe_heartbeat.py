"""The dashboard's heartbeat thread never writes while the controller forks a worker."""

import os
import threading
import time

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._fork_safe_heartbeat import Heartbeat


def test_no_fork_lands_in_the_middle_of_a_beat():
    writing = threading.Event()

    def beat():
        # Stands for a frame being written: a fork now would copy a held stream lock into the child.
        writing.set()
        time.sleep(0.03)
        writing.clear()

    heartbeat = Heartbeat(beat, 0.05)
    heartbeat.start()
    caught = 0
    try:
        for _fork in range(40):
            pid = os.fork()
            if pid == 0:
                os._exit(1 if writing.is_set() else 0)
            _pid, status = os.waitpid(pid, 0)
            caught += os.waitstatus_to_exitcode(status)
            time.sleep(0.011)
    finally:
        heartbeat.stop()
    # Without the guard about a third of these forks would land inside a beat.
    assert heartbeat.beats >= 5
    assert caught == 0


def test_a_failing_beat_ends_the_heartbeat_quietly():
    calls = []

    def beat():
        calls.append(1)
        raise RuntimeError("broken frame")

    heartbeat = Heartbeat(beat, 0.05)
    heartbeat.start()
    heartbeat.join(2)
    assert not heartbeat.is_alive() and calls == [1]
