# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source VM's power around a cold copy or a cutover: ``PowerGuard`` powers it off (guest shutdown first,
a hard power-off only when allowed) and, when the copy fails, on again if it was running."""

from __future__ import annotations

import time

from ansible_collections.v2kvm.migrate.plugins.module_utils._vsphere_conn import (
    VsphereError,
    call,
    read_call,
    wait_task,
)


def power_state(conn, vm):
    return str(read_call(conn, "read the power state", lambda: vm.runtime.powerState))


def vm_name(conn, vm):
    """The VM's name; a property read goes over the network too, so it is retried like any read."""
    return str(read_call(conn, "read the VM name", lambda: vm.name))


class PowerGuard:
    """Powers the VM off (guest shutdown first, hard power-off only when allowed) and, if anything
    fails afterwards, powers it on again when it was running before: ``with PowerGuard(...) as guard``."""

    def __init__(self, conn, vm, *, shutdown_timeout, allow_hard_power_off, wanted_off):
        self.conn, self.vm = conn, vm
        self.shutdown_timeout = shutdown_timeout
        self.allow_hard = allow_hard_power_off
        self.wanted_off = wanted_off
        self.original = None
        self.actions = []

    def __enter__(self):
        self.original = power_state(self.conn, self.vm)
        if self.wanted_off and self.original != "poweredOff":
            self.power_off()
        return self

    def power_off(self):
        if power_state(self.conn, self.vm) == "poweredOff":
            return
        name = vm_name(self.conn, self.vm)
        if self.original == "poweredOn":
            try:
                call(self.conn, "shut down the guest of %s" % name, self.vm.ShutdownGuest)
                self.actions.append("guest shutdown")
                deadline = time.monotonic() + self.shutdown_timeout
                while time.monotonic() < deadline:
                    if power_state(self.conn, self.vm) == "poweredOff":
                        return
                    time.sleep(min(1.0, max(0.05, self.shutdown_timeout / 50)))
                why = "did not power off within %d s of a guest shutdown" % self.shutdown_timeout
            except VsphereError as exc:
                why = "refused a guest shutdown (%s)" % exc.problem
        else:
            why = "is %s" % self.original
        if not self.allow_hard:
            raise VsphereError("VM %s %s; a hard power-off was not allowed" % (name, why),
                               "shut the guest down yourself, raise shutdown_timeout, or set "
                               "allow_hard_power_off: true to accept a crash-consistent copy")
        wait_task(self.conn, call(self.conn, "power off %s" % name, self.vm.PowerOffVM_Task), "power off " + name,
                  timeout=max(60, self.conn.timeout))
        self.actions.append("hard power-off")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.original == "poweredOn" and self.actions:
            try:
                if power_state(self.conn, self.vm) != "poweredOn":
                    wait_task(self.conn, self.vm.PowerOnVM_Task(), "power on " + vm_name(self.conn, self.vm),
                              timeout=300)
                    self.actions.append("powered on again after the failure")
            except Exception as restore_exc:  # keep the original error; say the VM is left off
                self.actions.append("could NOT power it on again (%s): start it by hand" % type(restore_exc).__name__)
        return False
