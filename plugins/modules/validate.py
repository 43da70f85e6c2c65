#!/usr/bin/python
# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate
short_description: Check a migrated VM's disks, boot it and judge the boot from its serial console
version_added: 0.1.0
description:
  - Runs, in this order, the checks that need the domain shut off, then boots it and watches the console.
  - O(content_compare) runs C(qemu-img compare) of each source disk against its converted target. It only
    makes sense before the first boot (a booted guest writes to its disks), so it requires the domain to be
    shut off and always runs before the domain is started.
  - O(check_images) runs C(qemu-img check) on every disk of the domain while it is shut off. When the domain
    is already running the check is reported as skipped, because qemu holds the image lock.
  - Then the domain is started (unless it is running already) and its serial console log is read until
    O(success_pattern) or one of O(failure_patterns) shows up, the domain stops, or O(boot_timeout) passes.
    Lines are judged in the order the guest printed them.
  - Only the current boot's console output is read. Domains defined by M(v2kvm.migrate.domain) log with
    C(append='off'), so libvirt truncates the log at start; for a log that appends, the module notes the file
    size before starting and reads from there.
  - The module fails, with the reason and the structured RV(verdict), when any check fails, the console shows
    a failure, or nothing decisive appears in time.
  - With O(progress_file) (the action plugin sets one, so dashboards follow the task live) each comparison
    reports its bytes as stage C(compare <target file>), and the boot wait reports the console's latest line,
    prefixed with C(boot), as its stage, without a byte count.
  - While it works (not in check mode) the module holds a lock per domain (under C(~/.ansible/v2kvm/locks) of the
    user it runs as). A validation of the same domain left running by a killed run of the same job (same
    O(progress_file)) is stopped first (it stops the guest it started); one of another run is waited for, and
    stopped only once its controller has not polled it for 30 seconds.
options:
  name:
    description:
      - Name of the libvirt domain.
    type: str
    required: true
  start:
    description:
      - Start the domain when it is shut off. When false a shut-off domain fails validation.
    type: bool
    default: true
  boot_timeout:
    description:
      - Seconds to wait for the console to show a verdict after the start (or, for a running domain, from now).
    type: int
    default: 120
  success_pattern:
    description:
      - Regular expression that marks a successful boot in a console line.
      - The default matches the test rig's C(V2KVM-BOOT-OK) marker and a getty C(login:) prompt, which nearly
        every Linux guest prints on its serial console once it is up. Guests that print nothing on the serial
        port (most Windows guests) need O(guest_agent=true) or another pattern.
    type: str
    default: "V2KVM-BOOT-OK|login:"
  failure_patterns:
    description:
      - Regular expressions that mark a failed boot. The first console line matching one of them (before a
        success line) fails validation.
    type: list
    elements: str
    default:
      - Kernel panic
      - No bootable device
      - Boot failed
      - not a bootable disk
      - "error: no such device"
      - "error: unknown filesystem"
      - Entering emergency mode
      - Give root password for maintenance
      - "VFS: Unable to mount root fs"
      - "ALERT! .* does not exist"
      - dracut-initqueue timeout
      - INACCESSIBLE_BOOT_DEVICE
      - No bootable option or device was found
  serial_log:
    description:
      - Serial console log to read. Defaults to the log file of the domain's first serial port.
    type: path
  guest_agent:
    description:
      - After the console shows success, also require the QEMU guest agent to answer C(guest-ping) before
        O(boot_timeout) runs out.
    type: bool
    default: false
  check_images:
    description:
      - Run C(qemu-img check) on each disk of the domain before starting it.
    type: bool
    default: true
  content_compare:
    description:
      - Source/target pairs compared with C(qemu-img compare) before the domain starts. Skipped, and said so in
        RV(verdict.checks), when the domain is already running.
    type: list
    elements: dict
    suboptions:
      source:
        description:
          - A VM spec disk entry (dict; a disk inside an OVA is read in place) or a path to an image file.
        type: raw
        required: true
      container:
        description:
          - The OVA holding a spec disk whose C(path) is null (the spec's C(source.path)).
        type: path
      source_format:
        description:
          - Format of a source path. Defaults to the spec entry's C(format), or what C(qemu-img info) detects.
        type: str
      target:
        description:
          - Path of the converted image.
        type: path
        required: true
      target_format:
        description:
          - Format of the target. Defaults to what C(qemu-img info) detects.
        type: str
  on_failure:
    description:
      - What to do with a domain this module started when validation fails. V(destroy) stops it (a failed
        boot only burns CPU); V(keep) leaves it running for inspection with C(virsh console).
    type: str
    choices: [destroy, keep]
    default: destroy
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - v2kvm.migrate.progress
  - v2kvm.migrate.libvirt
attributes:
  check_mode:
    support: partial
    details: Runs the read-only checks but neither starts the domain nor waits for a boot.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: A second run against the running, validated domain only reads its console.
    support: partial
notes:
  - C(changed) is true only when the module started the domain.
author:
  - v2kvm.migrate developers (@v2kvm)
"""

EXAMPLES = r"""
- name: Compare the converted disk with the source, then boot and wait for a login prompt
  v2kvm.migrate.validate:
    name: "{{ spec.name }}"
    content_compare:
      - source: "{{ spec.disks[0] }}"
        container: "{{ spec.source.path }}"
        target: "/var/lib/libvirt/images/{{ spec.name }}-0.qcow2"
    boot_timeout: 300

- name: Windows guests print nothing on the serial port; wait for the guest agent instead
  v2kvm.migrate.validate:
    name: win01
    success_pattern: "."
    failure_patterns: []
    guest_agent: true
"""

RETURN = r"""
verdict:
  description: What validation found.
  returned: always
  type: dict
  contains:
    booted:
      description: The console showed the success pattern (null in check mode when the domain was not started).
      type: bool
    reason:
      description: Why the verdict is what it is, in words.
      type: str
    matched_line:
      description: The console line that decided the verdict, if any.
      type: str
    console_tail:
      description: The last 20 non-empty lines of this boot's console, escape sequences removed.
      type: list
      elements: str
    seconds_to_boot:
      description: Seconds from start to the success line (null when the module did not start the domain).
      type: float
    serial_log:
      description: The console log that was read.
      type: str
    checks:
      description: Image checks and content comparisons, each with C(name), C(target), C(ok) (null = skipped)
        and C(detail).
      type: list
      elements: dict
    agent:
      description: Guest agent result C({responded, detail}), null unless O(guest_agent=true).
      type: dict
  sample:
    booted: true
    reason: console shows the success pattern
    matched_line: V2KVM-BOOT-OK web01
    console_tail: ["V2KVM-BOOT-OK web01", "V2KVM-DISKS vda"]
    seconds_to_boot: 5.8
    serial_log: /var/log/libvirt/qemu/web01-serial0.log
    checks: [{name: qemu-img check, target: /var/lib/libvirt/images/web01-0.qcow2, ok: true, detail: clean}]
    agent: null
"""

import json
import os
import signal
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_xml as dxml
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img as qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv
from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._domain_metadata import parse_libvirt_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import (
    connect_for_module,
    libvirt,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._stop_signal import Interrupted, raise_on_sigterm

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None
    LIBVIRT_QEMU_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_QEMU_IMPORT_ERROR = None

POLL_SECONDS = 0.25
_STAGE_LINE = 100  # characters of a console line shown as the boot stage


class Report:
    """Progress samples for the dashboards, or nothing when no progress file was asked for."""

    def __init__(self, path):
        self._writer = ProgressWriter(path) if path else None
        self._stage = None

    def update(self, stage, done=0, total=0):
        if self._writer is not None:
            self._stage = stage
            self._writer.update(stage, done, total)

    def bytes_of(self, stage, size):
        """A callback for qemu-img's progress fractions, reporting bytes of ``size`` (starts at 0 now)."""
        self.update(stage, 0, size)
        return lambda fraction: self.update(stage, int(fraction * size), size)

    def console(self, text):
        """The newest non-empty console line as the boot stage (escape sequences and control characters
        dropped)."""
        printable = ("".join(ch for ch in line if ch.isprintable()).strip() for line in sv.tail(text[-4096:], 5))
        lines = [line for line in printable if line]
        if lines:
            self.update("boot: " + lines[-1][:_STAGE_LINE])
        elif self._stage is None or not self._stage.startswith("boot"):
            self.update("boot: waiting for the first console line")

    def end(self, ok):
        if self._writer is not None:
            self._writer.update("done" if ok else "failed", 0, 0)
            self._writer.close()
            self._writer = None


def domain_disks(conn, domain_xml):
    """[(path, format)] of the domain's disk devices, resolving pool volumes to their paths."""
    disks = []
    for disk in parse_libvirt_xml(domain_xml).findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        driver = disk.find("driver")
        fmt = driver.get("type") if driver is not None else None
        if source is None:
            continue
        if source.get("pool"):
            vol = conn.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(source.get("volume"))
            disks.append((vol.path(), fmt))
        elif source.get("file"):
            disks.append((source.get("file"), fmt))
    return disks


def image_checks(disks, running):
    checks = []
    for path, fmt in disks:
        entry = {"name": "qemu-img check", "target": path}
        if running:
            entry.update(ok=None, detail="skipped: the domain is running and qemu holds the image lock")
        else:
            try:
                res = qemu_img.check(path, fmt)
            except qemu_img.QemuImgError as exc:
                entry.update(ok=False, detail=str(exc))
            else:
                if not res.get("supported", True):
                    detail = "%s has no metadata to check" % fmt
                elif res["ok"]:
                    detail = "clean (%d leaked clusters)" % res["leaks"] if res["leaks"] else "clean"
                else:
                    detail = "%d corruptions, %d leaks" % (res["corruptions"], res["leaks"])
                entry.update(ok=res["ok"], detail=detail)
        checks.append(entry)
    return checks


def _format_of(path, fmt):
    return fmt or qemu_img.info(path)["format"]


def content_checks(items, report):
    checks = []
    for item in items:
        source = item["source"]
        label = source.get("file") or source.get("path") if isinstance(source, dict) else str(source)
        try:
            if isinstance(source, dict):
                src = qemu_img.image_source(source, item.get("container"))
                src_fmt = item.get("source_format") or source.get("format")
            else:
                src = str(source)
                src_fmt = _format_of(src, item.get("source_format"))
            target_info = qemu_img.info(item["target"], item.get("target_format"))
            dst_fmt = item.get("target_format") or target_info["format"]
            size = int(target_info["virtual-size"])
            stage = "compare %s" % os.path.basename(item["target"])
            same, message = qemu_img.compare(src, src_fmt, item["target"], dst_fmt,
                                             on_progress=report.bytes_of(stage, size))
        except qemu_img.QemuImgError as exc:
            checks.append({"name": "qemu-img compare", "source": label, "target": item["target"], "ok": False,
                           "detail": str(exc)})
            continue
        checks.append({"name": "qemu-img compare", "source": label, "target": item["target"], "ok": same,
                       "detail": message or ("identical" if same else "content differs")})
    return checks


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


def watch_console(module, dom, console, success, failures, deadline, report):
    """Poll the console until a verdict, the domain stopping, or the deadline."""
    text = ""
    while True:
        text = console.read()
        report.console(text)
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
            reason = ("no line matching success_pattern %r within boot_timeout=%ds; raise boot_timeout or "
                      "adjust success_pattern" % (module.params["success_pattern"], module.params["boot_timeout"]))
            return {"booted": False, "matched_line": None, "reason": reason}, text
        time.sleep(POLL_SECONDS)


def record_validated(module, dom, domain_xml):
    """Note the passed validation in the v2kvm metadata, so a re-run of the migration can tell this
    guest is finished without redoing any phase. Returns whether it wrote anything."""
    # The persistent definition is the record: a redefinition while the guest ran is only there.
    meta = meta_xml.from_domain_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else domain_xml)
    if meta is None or meta.get("phase") == "validated":
        return False
    if module.check_mode:
        return True
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    try:
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, meta_xml.to_plain_xml(meta_xml.mark_validated(meta)),
                        meta_xml.PREFIX, meta_xml.NAMESPACE, flags)
    except libvirt.libvirtError as exc:
        module.warn("could not record the validation in the domain metadata: %s" % exc)
        return False
    return True


def run(module, conn, report):
    params = module.params
    name = params["name"]
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        if module.check_mode:
            # A check-mode run of the whole pipeline gets here with nothing defined: that is the plan.
            module.exit_json(changed=params["start"], verdict={
                "booted": None, "reason": "check mode: domain %s is not defined yet; it would be defined, "
                                          "started and its console watched" % name, "checks": []})
        module.fail_json(msg="domain %s does not exist: define it first with v2kvm.migrate.domain" % name)
    try:
        success, failures = sv.compile_patterns(params["success_pattern"], params["failure_patterns"])
    except sv.PatternError as exc:
        module.fail_json(msg=str(exc))

    domain_xml = dom.XMLDesc(0)
    running = bool(dom.isActive())
    verdict = {"booted": None, "reason": None, "matched_line": None, "console_tail": [],
               "seconds_to_boot": None, "serial_log": None, "checks": [], "agent": None}

    def finish(started, ok):
        report.end(ok)
        if not ok:
            if started and params["on_failure"] == "destroy" and dom.isActive():
                dom.destroy()
            module.fail_json(msg="validation of %s failed: %s" % (name, verdict["reason"]),
                             changed=started, verdict=verdict)
        recorded = record_validated(module, dom, domain_xml)
        module.exit_json(changed=started or recorded, verdict=verdict)

    if params["content_compare"]:
        if running:
            # The guest has written to its disks since its first boot, which was validated then: a re-run
            # must neither fail on that nor stop a good guest to compare stale content.
            verdict["checks"].extend(
                {"name": "qemu-img compare", "target": item["target"], "ok": None,
                 "detail": "skipped: the domain is running, so its disks have moved on from the source"}
                for item in params["content_compare"])
        else:
            verdict["checks"].extend(content_checks(params["content_compare"], report))
    if params["check_images"]:
        verdict["checks"].extend(image_checks(domain_disks(conn, domain_xml), running))
    failed = [c for c in verdict["checks"] if c["ok"] is False]
    if failed:
        verdict["booted"] = False
        verdict["reason"] = "; ".join("%s of %s failed: %s" % (c["name"], c["target"], c["detail"]) for c in failed)
        finish(False, False)

    log_path, appends = dxml.serial_log_path(domain_xml)
    log_path = params["serial_log"] or log_path
    if not log_path:
        module.fail_json(msg="domain %s has no serial console log to read: define it with v2kvm.migrate.domain "
                             "(which adds one) or set serial_log" % name, verdict=verdict)
    verdict["serial_log"] = log_path
    console = sv.ConsoleLog(log_path)

    started = False
    if not running:
        if not params["start"]:
            verdict.update(booted=False, reason="domain is shut off and start=false")
            finish(False, False)
        if module.check_mode:
            verdict["reason"] = "check mode: the domain would be started and its console watched"
            module.exit_json(changed=True, verdict=verdict)
        if appends:
            console.mark()
        began = time.monotonic()
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            verdict.update(booted=False, reason="libvirt could not start the domain: %s" % exc)
            finish(False, False)
        started = True
    else:
        if appends:
            module.warn("the serial log %s appends across boots and %s was already running: earlier boots' "
                        "output may be judged too" % (log_path, name))
        began = time.monotonic()
    deadline = began + params["boot_timeout"]

    try:
        outcome, text = watch_console(module, dom, console, success, failures, deadline, report)
        verdict.update(outcome)
        verdict["console_tail"] = sv.tail(text)
        if outcome["booted"] and started:
            verdict["seconds_to_boot"] = round(time.monotonic() - began, 2)
        if outcome["booted"] and params["guest_agent"]:
            verdict["agent"] = ping_agent(dom, deadline)
            if not verdict["agent"]["responded"]:
                verdict["booted"] = False
                verdict["reason"] = verdict["agent"]["detail"]
    except Interrupted as exc:
        # A stopped run (Ctrl-C, the orphan watchdog) is a failed validation: with on_failure=destroy the guest
        # this run started does not go on booting unwatched.
        verdict.update(booted=False, reason="interrupted (signal %d) while the guest booted" % exc.signum,
                       console_tail=sv.tail(console.read()))
    finish(started, bool(verdict["booted"]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str", default="qemu:///system"),
            name=dict(type="str", required=True),
            start=dict(type="bool", default=True),
            boot_timeout=dict(type="int", default=120),
            success_pattern=dict(type="str", default=sv.DEFAULT_SUCCESS_PATTERN),
            failure_patterns=dict(type="list", elements="str", default=list(sv.DEFAULT_FAILURE_PATTERNS)),
            serial_log=dict(type="path"),
            guest_agent=dict(type="bool", default=False),
            check_images=dict(type="bool", default=True),
            content_compare=dict(
                type="list", elements="dict",
                options=dict(
                    source=dict(type="raw", required=True),
                    container=dict(type="path"),
                    source_format=dict(type="str"),
                    target=dict(type="path", required=True),
                    target_format=dict(type="str"),
                ),
            ),
            on_failure=dict(type="str", choices=["destroy", "keep"], default="destroy"),
            progress_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if module.params["guest_agent"] and libvirt_qemu is None:
        module.fail_json(msg=missing_required_lib("libvirt-python (libvirt_qemu)"), exception=LIBVIRT_QEMU_IMPORT_ERROR)
    if module.params["boot_timeout"] < 1:
        module.fail_json(msg="boot_timeout must be at least 1 second")
    conn = connect_for_module(module, module.params["uri"])
    if not module.check_mode:
        # One validation per domain: one left running by a killed run never boots or stops the guest under us.
        lock_name = "%s@%s" % (module.params["name"], module.params["uri"])
        target_lock.own(module, target_lock.state_lock_path("validate", lock_name),
                        "validation of %s" % module.params["name"], ProgressWriter)
    report = Report(module.params["progress_file"])
    # Once: stopping the guest this run started must not be cut short by a second signal.
    previous = raise_on_sigterm(once=True)
    try:
        run(module, conn, report)
    except Interrupted as exc:
        # The run was stopped (or its controller went away): qemu-img compare is killed on the way here.
        report.end(False)
        module.fail_json(msg="validation of %s was interrupted (signal %d)" % (module.params["name"], exc.signum))
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
