# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watching a started guest boot: its serial console log until a verdict, the console's newest line as the
progress stage, and the guest agent's ``guest-ping``."""

from __future__ import annotations

import json
import time
import traceback

from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import libvirt

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None
    LIBVIRT_QEMU_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_QEMU_IMPORT_ERROR = None

POLL_SECONDS = 0.25
STAGE_LINE = 100  # characters of a console line shown as the boot stage
WAITING = "boot: waiting for the first console line"


def boot_stage(text, current):
    """The progress stage for console ``text``: its newest non-empty line (escape sequences and control
    characters dropped) as "boot: <line>"; the waiting stage while there is none yet; None to keep
    ``current`` (an earlier line stays shown rather than flipping back to waiting)."""
    printable = ("".join(ch for ch in line if ch.isprintable()).strip() for line in sv.tail(text[-4096:], 5))
    lines = [line for line in printable if line]
    if lines:
        return "boot: " + lines[-1][:STAGE_LINE]
    if not current.startswith("boot"):
        return WAITING
    return None


def watch_console(dom, console, patterns, deadline, on_text, timeout_reason):
    """Poll ``console`` (a ConsoleLog) until a verdict, the domain stopping, or ``deadline`` (monotonic);
    ``on_text(text)`` sees the text of each poll. Returns (verdict, text)."""
    success, failures = patterns
    while True:
        text = console.read()
        on_text(text)
        verdict = sv.judge(text, success, failures)
        if verdict is not None:
            return verdict, text
        if not dom.isActive():
            text = console.read()
            verdict = sv.judge(text, success, failures, final=True)
            if verdict is not None:
                return verdict, text
            state, reason = dom.state()
            return {"booted": False, "matched_line": None,
                    "reason": "the domain stopped (libvirt state %d, reason %d) before the console showed "
                              "the success pattern" % (state, reason)}, text
        if time.monotonic() >= deadline:
            verdict = sv.judge(text, success, failures, final=True)
            if verdict is not None:
                return verdict, text
            return {"booted": False, "matched_line": None, "reason": timeout_reason}, text
        time.sleep(POLL_SECONDS)


def ping_agent(dom, deadline):
    """{"responded", "detail"} after pinging the guest agent until it answers or the deadline passes."""
    last_error = "no attempt made: boot_timeout already used up"
    while time.monotonic() < deadline:
        timeout = max(1, min(5, int(deadline - time.monotonic())))
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps({"execute": "guest-ping"}), timeout, 0)
            return {"responded": True, "detail": "guest-ping answered: %s" % reply}
        except libvirt.libvirtError as exc:
            last_error = str(exc)
        time.sleep(1)
    return {"responded": False, "detail": "the guest agent did not answer guest-ping in time: %s" % last_error}
