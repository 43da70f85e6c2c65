# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The boot check of a migrated domain (the validate module), as a reconciler.

It reads the domain's state (defined? running? does its v2kvm metadata already say validated?), plans
what this run does (disk checks or their skips, start or not, record the pass or not), acts only outside
check mode, and returns the result with ``changed``: true only when the run started the domain or
recorded the validation. Failures come back as results too ({"failed": True, "msg", ...}), so the
module only hands them to ``fail_json``.
"""

from __future__ import annotations

import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.v2kvm.migrate.plugins.module_utils import _boot_watch as watch
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_xml as dxml
from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv
from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils._boot_disk_checks import (
    content_checks,
    failure_reason,
    image_checks,
    skipped_compares,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_adapter import domain_disks, lookup_domain
from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import connect_for_module, libvirt
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted, ProgressJob

# What happens to a shut-off domain.
START, PREDICT_START, REFUSE_START, ALREADY_RUNNING = "start", "predict start", "refuse start", "already running"


class BootState:
    """The domain as this run found it."""

    def __init__(self, dom, domain_xml, running, metadata):
        self.dom = dom
        self.domain_xml = domain_xml
        self.running = running
        self.metadata = metadata  # the v2kvm metadata of the persistent definition, or None

    @property
    def validated(self):
        return self.metadata is not None and self.metadata.get("phase") == "validated"

    @property
    def needs_record(self):
        """A v2kvm-defined domain not yet marked validated gets the mark when it passes."""
        return self.metadata is not None and not self.validated


def read_state(conn, name):
    """The BootState of domain ``name``, or None when it is not defined."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return None
    domain_xml = dom.XMLDesc(0)
    # The persistent definition is the record: a redefinition while the guest ran is only there.
    recorded = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else domain_xml
    return BootState(dom, domain_xml, bool(dom.isActive()), meta_xml.from_domain_xml(recorded))


def plan(state, params, check_mode):
    """What this run does with the domain: {"compare": "run"|"skip"|None, "check_images": bool,
    "start": START|PREDICT_START|REFUSE_START|ALREADY_RUNNING}."""
    if state.running:
        start = ALREADY_RUNNING
    elif not params["start"]:
        start = REFUSE_START
    else:
        start = PREDICT_START if check_mode else START
    compare = ("skip" if state.running else "run") if params["content_compare"] else None
    return {"compare": compare, "check_images": bool(params["check_images"]), "start": start}


def new_verdict():
    return {"booted": None, "reason": None, "matched_line": None, "console_tail": [],
            "seconds_to_boot": None, "serial_log": None, "checks": [], "agent": None}


def failure(msg, **result):
    return dict(result, failed=True, msg=msg)


class BootCheck:
    """One boot check of ``module.params["name"]`` (module duck-typed: params, check_mode, warn)."""

    def __init__(self, module, conn, job):
        self.params = module.params
        self.check_mode = module.check_mode
        self.warn = module.warn
        self.conn = conn
        self.job = job
        self.name = self.params["name"]

    def run(self):
        state = read_state(self.conn, self.name)
        if state is None:
            return self._missing()
        try:
            patterns = sv.compile_patterns(self.params["success_pattern"], self.params["failure_patterns"])
        except sv.PatternError as exc:
            return failure(str(exc))
        steps = plan(state, self.params, self.check_mode)
        verdict = new_verdict()
        verdict["checks"] = self._disk_checks(state, steps)
        reason = failure_reason(verdict["checks"])
        if reason:
            verdict.update(booted=False, reason=reason)
            return self._conclude(state, verdict, started=False)
        console, appends = self._console(state, verdict)
        if console is None:
            return failure("domain %s has no serial console log to read: define it with v2kvm.migrate.domain "
                           "(which adds one) or set serial_log" % self.name, verdict=verdict)
        if steps["start"] == REFUSE_START:
            verdict.update(booted=False, reason="domain is shut off and start=false")
            return self._conclude(state, verdict, started=False)
        if steps["start"] == PREDICT_START:
            verdict["reason"] = "check mode: the domain would be started and its console watched"
            return {"changed": True, "verdict": verdict}
        began = time.monotonic()
        if steps["start"] == START:
            began = self._start(state, console, appends, verdict)
            if began is None:
                return self._conclude(state, verdict, started=False)
        self._boot(state, console, patterns, began, started=steps["start"] == START, verdict=verdict)
        return self._conclude(state, verdict, started=steps["start"] == START)

    def _missing(self):
        if self.check_mode:
            # A check-mode run of the whole pipeline gets here with nothing defined: that is the plan.
            return {"changed": self.params["start"], "verdict": {
                "booted": None, "reason": "check mode: domain %s is not defined yet; it would be defined, "
                                          "started and its console watched" % self.name, "checks": []}}
        return failure("domain %s does not exist: define it first with v2kvm.migrate.domain" % self.name)

    def _disk_checks(self, state, steps):
        checks = []
        if steps["compare"] == "skip":
            checks.extend(skipped_compares(self.params["content_compare"]))
        elif steps["compare"] == "run":
            checks.extend(content_checks(self.params["content_compare"], self.job.bytes_of))
        if steps["check_images"]:
            checks.extend(image_checks(domain_disks(state.domain_xml, self.conn), state.running))
        return checks

    def _console(self, state, verdict):
        """(ConsoleLog of the serial log, whether the log appends across boots); (None, False) when the
        domain has no serial log to read."""
        log_path, appends = dxml.serial_log_path(state.domain_xml)
        log_path = self.params["serial_log"] or log_path
        if not log_path:
            return None, False
        verdict["serial_log"] = log_path
        if appends and state.running:
            self.warn("the serial log %s appends across boots and %s was already running: earlier boots' "
                      "output may be judged too" % (log_path, self.name))
        return sv.ConsoleLog(log_path), appends

    def _start(self, state, console, appends, verdict):
        """Start the shut-off domain; the monotonic start time, or None (and the verdict says why)."""
        if appends:
            console.mark()
        began = time.monotonic()
        try:
            state.dom.create()
        except libvirt.libvirtError as exc:
            verdict.update(booted=False, reason="libvirt could not start the domain: %s" % exc)
            return None
        return began

    def _boot(self, state, console, patterns, began, started, verdict):
        """Watch the console (and the guest agent) until a verdict; fills ``verdict``."""
        deadline = began + self.params["boot_timeout"]
        timeout_reason = ("no line matching success_pattern %r within boot_timeout=%ds; raise boot_timeout or "
                          "adjust success_pattern" % (self.params["success_pattern"], self.params["boot_timeout"]))
        try:
            outcome, text = watch.watch_console(state.dom, console, patterns, deadline, self._show_console,
                                                timeout_reason)
            verdict.update(outcome)
            verdict["console_tail"] = sv.tail(text)
            if outcome["booted"] and started:
                verdict["seconds_to_boot"] = round(time.monotonic() - began, 2)
            if outcome["booted"] and self.params["guest_agent"]:
                verdict["agent"] = watch.ping_agent(state.dom, deadline)
                if not verdict["agent"]["responded"]:
                    verdict["booted"] = False
                    verdict["reason"] = verdict["agent"]["detail"]
        except Interrupted as exc:
            # A stopped run (Ctrl-C, the orphan watchdog) is a failed validation: with on_failure=destroy the
            # guest this run started does not go on booting unwatched.
            verdict.update(booted=False, reason="interrupted (signal %d) while the guest booted" % exc.signum,
                           console_tail=sv.tail(console.read()))

    def _show_console(self, text):
        stage = watch.boot_stage(text, self.job.stage)
        if stage is not None:
            self.job.update(stage)

    def _conclude(self, state, verdict, started):
        ok = bool(verdict["booted"])
        self.job.finish(ok, 0, 0)
        if not ok:
            if started and self.params["on_failure"] == "destroy" and state.dom.isActive():
                state.dom.destroy()
            return failure("validation of %s failed: %s" % (self.name, verdict["reason"]),
                           changed=started, verdict=verdict)
        recorded = self._record(state)
        return {"changed": started or recorded, "verdict": verdict}

    def _record(self, state):
        """Note the passed validation in the v2kvm metadata, so a re-run of the migration can tell this
        guest is finished without redoing any phase. Returns whether it wrote (would write) anything."""
        if not state.needs_record:
            return False
        if self.check_mode:
            return True
        dom = state.dom
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
        try:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                            meta_xml.to_plain_xml(meta_xml.mark_validated(state.metadata)),
                            meta_xml.PREFIX, meta_xml.NAMESPACE, flags)
        except libvirt.libvirtError as exc:
            self.warn("could not record the validation in the domain metadata: %s" % exc)
            return False
        return True


def run_module(module):
    """The validate module's whole run: argument checks, connection, the per-domain lock, the progress job
    around one BootCheck; ends the module with exit_json or fail_json."""
    params = module.params
    if params["guest_agent"] and watch.libvirt_qemu is None:
        module.fail_json(msg=missing_required_lib("libvirt-python (libvirt_qemu)"),
                         exception=watch.LIBVIRT_QEMU_IMPORT_ERROR)
    if params["boot_timeout"] < 1:
        module.fail_json(msg="boot_timeout must be at least 1 second")
    conn = connect_for_module(module, params["uri"])
    if not module.check_mode:
        # One validation per domain: one left running by a killed run never boots or stops the guest under us.
        target_lock.own(module, target_lock.state_lock_path("validate", "%s@%s" % (params["name"], params["uri"])),
                        "validation of %s" % params["name"], ProgressWriter)
    # stop_once: stopping the guest this run started must not be cut short by a second signal.
    with ProgressJob(params["progress_file"] if not module.check_mode else None, stop_once=True) as job:
        try:
            result = BootCheck(module, conn, job).run()
        except Interrupted as exc:
            # The run was stopped (or its controller went away): qemu-img compare is killed on the way here.
            job.finish(False, 0, 0)
            module.fail_json(msg="validation of %s was interrupted (signal %d)" % (params["name"], exc.signum))
        job.finish(not result.get("failed"), 0, 0)
        if result.pop("failed", False):
            module.fail_json(**result)
        module.exit_json(**result)
