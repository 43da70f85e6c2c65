"""A libvirt daemon for tests: the system one when it answers, else a private virtlogd + libvirtd.

There is no systemd in the rig, so the daemons are started the way an init script would
(``-d -p PIDFILE``), with their pid files in the caller's state directory. ``Daemon.stop()``
only ever stops what ``ensure_libvirtd`` started, by the PIDs it recorded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

SYSTEM_URI = "qemu:///system"
SOCKET = "/var/run/libvirt/libvirt-sock"
VIRTLOGD_SOCKET = "/var/run/libvirt/virtlogd-sock"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class LibvirtdError(RuntimeError):
    """The daemon could not be reached or started; the message says what to install or check."""


def answers(uri):
    """The daemon at ``uri`` accepts a connection and answers a call."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    try:
        conn.getLibVersion()
        return True
    finally:
        conn.close()


def _socket_answers(path):
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _read_pid(pidfile, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(pidfile, encoding="ascii") as handle:
                text = handle.read().strip()
            if text:
                return int(text)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise LibvirtdError(f"{pidfile} did not appear within {timeout:.0f} s: the daemon failed to start")


def alive(pid):
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A daemonized process is not our child, so there is no wait(); a zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Daemon:
    """The daemon tests talk to; ``started`` lists the (name, pid) pairs this rig launched."""

    def __init__(self, uri, started=None):
        self.uri = uri
        self.started = list(started or [])

    @property
    def owned(self):
        return bool(self.started)

    def stop(self):
        # libvirtd first: it holds virtlogd connections for running guests' logs.
        for _name, pid in reversed(self.started):
            if not alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                while alive(pid):
                    time.sleep(0.1)
        self.started = []


def _start(binary, state_dir, name, extra=()):
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/sbin/{binary}") if os.path.exists(p)), None)
    if path is None:
        raise LibvirtdError(f"{binary} is not installed: apt-get install -y libvirt-daemon-system")
    pidfile = os.path.join(state_dir, f"{name}.pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    proc = subprocess.run([path, "-d", "-p", pidfile, *extra], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LibvirtdError(f"{binary} -d failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return _read_pid(pidfile, START_TIMEOUT)


def ensure_libvirtd(state_dir, uri=SYSTEM_URI):
    """Return a Daemon answering on ``uri``, starting virtlogd and libvirtd when nothing answers."""
    if answers(uri):
        return Daemon(uri)
    if os.geteuid() != 0:
        raise LibvirtdError(f"{uri} does not answer and only root can start the system daemon: run the tests as root")
    os.makedirs(state_dir, exist_ok=True)
    daemon = Daemon(uri)
    try:
        # A virtlogd left from an earlier daemon keeps serving; a second one could not bind its socket.
        if not _socket_answers(VIRTLOGD_SOCKET):
            daemon.started.append(("virtlogd", _start("virtlogd", state_dir, "virtlogd")))
        daemon.started.append(("libvirtd", _start("libvirtd", state_dir, "libvirtd")))
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(uri):
            if time.monotonic() > deadline:
                raise LibvirtdError(f"libvirtd started but {uri} did not answer within {START_TIMEOUT:.0f} s "
                                    f"(socket {SOCKET}); see /var/log/libvirt/libvirtd.log")
            time.sleep(0.1)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def main(argv):
    """``libvirtd.py ensure STATE_DIR``: leave a daemon answering (the demo's guests live in it)."""
    if len(argv) != 3 or argv[1] != "ensure":
        print("usage: libvirtd.py ensure STATE_DIR", file=sys.stderr)
        return 2
    try:
        daemon = ensure_libvirtd(argv[2])
    except LibvirtdError as exc:
        print(f"libvirtd: {exc}", file=sys.stderr)
        return 1
    pids = ", ".join(f"{name} pid {pid}" for name, pid in daemon.started)
    print(f"libvirtd: started {pids} (pid files in {argv[2]})" if pids else f"libvirtd: {daemon.uri} answers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
