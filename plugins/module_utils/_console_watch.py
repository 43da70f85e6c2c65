# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start a domain and judge its boot from the serial console, through libvirt alone.

The serial log file lives on the node that runs the guest, which a module talking to a remote
``qemu+ssh://`` or ``qemu+tcp://`` URI cannot read. The console stream can be read from anywhere the
URI reaches: the guest is started paused, the console is attached, and only then does it run, so
not a line of this boot is missed.
"""

from __future__ import annotations

import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._serial_verdict import judge, tail

try:
    import libvirt
except ImportError:  # the calling module reports the missing library
    libvirt = None

_READ_SIZE = 64 * 1024
_MAX_KEPT = 256 * 1024  # console text kept for judging: the newest part is what matters


class _Console:
    def __init__(self, conn, dom):
        self.stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        # FORCE takes the console over from a stale `virsh console` session rather than failing.
        dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self.text = ""
        self.closed = False

    def drain(self):
        while not self.closed:
            try:
                data = self.stream.recv(_READ_SIZE)
            except libvirt.libvirtError:
                self.closed = True  # the guest stopped: what was read is all there is
                break
            if data == -2:  # nothing more right now
                break
            if not data:
                self.closed = True
                break
            self.text = (self.text + data.decode("utf-8", "replace"))[-_MAX_KEPT:]

    def close(self):
        try:
            self.stream.abort()
        except libvirt.libvirtError:
            pass


def start_and_judge(conn, dom, seconds, success, failures, *, require_success=False,
                    clock=time.monotonic, sleep=time.sleep):
    """Start ``dom`` (defined, shut off) and watch it for up to ``seconds``.

    Returns {"booted": bool, "method": "console"|"running", "reason", "matched_line", "console_tail"}.
    The verdict comes from the first success or failure line on the console; with neither, a guest
    still running at the end passes unless ``require_success``. A domain whose console cannot be
    attached (no pty serial) is judged only by staying up.
    """
    dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    try:
        console = _Console(conn, dom)
    except libvirt.libvirtError as exc:
        dom.resume()
        return _judge_running(dom, seconds, clock, sleep,
                              "the console could not be attached (%s)" % exc.get_error_message())
    try:
        dom.resume()
        deadline = clock() + seconds
        while True:
            console.drain()
            verdict = judge(console.text, success, failures, final=console.closed)
            if verdict is not None:
                return dict(verdict, method="console", console_tail=tail(console.text))
            if not _running(dom):
                return {"booted": False, "method": "console", "matched_line": None,
                        "reason": "the guest stopped before the console showed it booted",
                        "console_tail": tail(console.text)}
            if clock() >= deadline:
                break
            sleep(0.25)
        console.drain()
        verdict = judge(console.text, success, failures, final=True)
        if verdict is not None:
            return dict(verdict, method="console", console_tail=tail(console.text))
        if require_success:
            return {"booted": False, "method": "console", "matched_line": None, "console_tail": tail(console.text),
                    "reason": "the console did not show the success pattern within %d s" % seconds}
        return {"booted": True, "method": "console", "matched_line": None, "console_tail": tail(console.text),
                "reason": "running for %d s, no failure on the console (no success line seen)" % seconds}
    finally:
        console.close()


def _running(dom):
    try:
        stopped = (libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF)
        return bool(dom.isActive()) and dom.state()[0] not in stopped
    except libvirt.libvirtError:
        return False


def _judge_running(dom, seconds, clock, sleep, why):
    deadline = clock() + seconds
    while clock() < deadline:
        if not _running(dom):
            return {"booted": False, "method": "running", "matched_line": None, "console_tail": [],
                    "reason": "the guest stopped within %d s; %s" % (seconds, why)}
        sleep(0.5)
    ok = _running(dom) and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    return {"booted": ok, "method": "running", "matched_line": None, "console_tail": [],
            "reason": ("kept running for %d s; %s" if ok else "not running after %d s; %s") % (seconds, why)}
