"""The boot check (validate's reconciler) against libvirt's in-process test driver (test:///default) and real
qemu-img on tmp files.

The test driver has no guest that prints anything, so the "serial console" is a file these tests write:
what a guest would have printed is already there when the check reads it.
"""

import json
import os
import signal
import subprocess
import threading
import uuid

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _boot_check as bc  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _domain_metadata as meta_xml  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._boot_disk_checks import (  # noqa: E402
    content_checks,
    image_checks,
)
from ansible_collections.v2kvm.migrate.plugins.module_utils._boot_watch import WAITING, boot_stage  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import ProgressJob  # noqa: E402

MIB = 1 << 20


class Module:
    """What the boot check uses of an AnsibleModule."""

    def __init__(self, check_mode=False, **params):
        self.params = dict(dict(start=True, boot_timeout=60, success_pattern=sv.DEFAULT_SUCCESS_PATTERN,
                                failure_patterns=list(sv.DEFAULT_FAILURE_PATTERNS), serial_log=None,
                                guest_agent=False, check_images=True, content_compare=None, on_failure="destroy",
                                progress_file=None), **params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


@pytest.fixture
def domains(conn):
    made = []
    yield made
    for name in made:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def image(path, fmt="qcow2", data=b"V2KVM" * 1000):
    raw = str(path) + ".raw"
    with open(raw, "wb") as handle:
        handle.write(data)
        handle.truncate(4 * MIB)
    if fmt == "raw":
        os.rename(raw, path)
    else:
        qemu_img("convert", "-f", "raw", "-O", fmt, raw, str(path))
        os.unlink(raw)
    return str(path)


def define(conn, domains, disk, *, serial="", phase=None):
    name = "bootcheck-%s" % uuid.uuid4().hex[:8]
    dom = conn.defineXML(
        "<domain type='test'><name>%s</name><memory>65536</memory><os><type>hvm</type></os><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
        "<target dev='vda' bus='virtio'/></disk>%s</devices></domain>" % (name, disk, serial))
    domains.append(name)
    if phase:
        meta = meta_xml.new_metadata(phase=phase, spec_digest="sha256:s", config_digest="sha256:c", source=None,
                                     volumes=[{"path": disk, "owned": True}], extra=None)
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, meta_xml.to_plain_xml(meta), meta_xml.PREFIX,
                        meta_xml.NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return name


def console(tmp_path, text):
    path = tmp_path / "serial0.log"
    path.write_text(text)
    return str(path)


def phase(conn, name):
    return meta_xml.from_domain_xml(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))["phase"]


def check(conn, module, progress_file=None):
    with ProgressJob(progress_file, stop_once=True) as job:
        return bc.BootCheck(module, conn, job).run()


def test_a_missing_domain_is_the_plan_in_check_mode_and_a_failure_naming_the_fix_otherwise(conn):
    planned = check(conn, Module(check_mode=True, name="no-such-vm"))
    assert planned["changed"] is True and "failed" not in planned
    assert "not defined yet" in planned["verdict"]["reason"] and planned["verdict"]["booted"] is None
    assert check(conn, Module(check_mode=True, name="no-such-vm", start=False))["changed"] is False

    failed = check(conn, Module(name="no-such-vm"))
    assert failed["failed"] is True
    assert failed["msg"] == "domain no-such-vm does not exist: define it first with v2kvm.migrate.domain"


def test_check_mode_runs_the_image_checks_and_predicts_the_start_without_starting(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"), phase="defined")
    result = check(conn, Module(check_mode=True, name=name, serial_log=console(tmp_path, "V2KVM-BOOT-OK\n")))
    assert result["changed"] is True and "failed" not in result
    assert result["verdict"]["reason"] == "check mode: the domain would be started and its console watched"
    assert [(c["name"], c["ok"], c["detail"]) for c in result["verdict"]["checks"]] == [
        ("qemu-img check", True, "clean")]
    assert not conn.lookupByName(name).isActive()
    assert phase(conn, name) == "defined"


def test_a_good_boot_starts_the_guest_records_validated_and_a_rerun_changes_nothing(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"), phase="defined")
    log = console(tmp_path, "SeaBIOS\r\nV2KVM-BOOT-OK %s\r\nV2KVM-TICK 1\n" % name)
    progress = str(tmp_path / "progress.jsonl")

    result = check(conn, Module(name=name, serial_log=log), progress)
    verdict = result["verdict"]
    assert result["changed"] is True and verdict["booted"] is True, result
    assert verdict["matched_line"] == "V2KVM-BOOT-OK %s" % name and verdict["serial_log"] == log
    assert verdict["seconds_to_boot"] is not None and verdict["console_tail"][-1] == "V2KVM-TICK 1"
    assert conn.lookupByName(name).isActive() and phase(conn, name) == "validated"
    samples = [json.loads(line) for line in open(progress)]
    assert "boot: V2KVM-TICK 1" in [s["stage"] for s in samples]
    assert (samples[-1]["stage"], samples[-1]["done"], samples[-1]["total"]) == ("done", 0, 0)

    again = check(conn, Module(name=name, serial_log=log))
    assert again["changed"] is False and again["verdict"]["booted"] is True
    assert again["verdict"]["seconds_to_boot"] is None, "this run did not start the guest"
    skipped = again["verdict"]["checks"][0]
    assert skipped["ok"] is None and "qemu holds the image lock" in skipped["detail"]


def test_check_mode_on_a_running_guest_not_yet_recorded_predicts_the_record_and_writes_nothing(
        conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"), phase="defined")
    conn.lookupByName(name).create()
    result = check(conn, Module(check_mode=True, name=name, serial_log=console(tmp_path, "debian login: \n")))
    assert result["changed"] is True and result["verdict"]["booted"] is True
    assert phase(conn, name) == "defined"


def test_a_domain_without_v2kvm_metadata_passes_without_a_record(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"))
    conn.lookupByName(name).create()
    result = check(conn, Module(name=name, check_images=False, serial_log=console(tmp_path, "login:\n")))
    assert result == {"changed": False, "verdict": result["verdict"]} and result["verdict"]["booted"] is True


def test_a_panic_fails_and_destroys_the_guest_it_started_unless_kept(conn, domains, tmp_path):
    log = console(tmp_path, "Booting\nKernel panic - not syncing: VFS\n")
    progress = str(tmp_path / "progress.jsonl")
    destroyed = define(conn, domains, image(tmp_path / "a.qcow2"), phase="defined")
    result = check(conn, Module(name=destroyed, serial_log=log), progress)
    assert result["failed"] is True and result["changed"] is True
    assert result["msg"] == "validation of %s failed: console shows a boot failure: " % destroyed + \
        "Kernel panic - not syncing: VFS"
    assert not conn.lookupByName(destroyed).isActive() and phase(conn, destroyed) == "defined"
    last = json.loads(open(progress).read().splitlines()[-1])
    assert (last["stage"], last["done"], last["total"]) == ("failed", 0, 0)

    kept = define(conn, domains, image(tmp_path / "b.qcow2"))
    result = check(conn, Module(name=kept, serial_log=log, on_failure="keep"))
    assert result["failed"] is True and conn.lookupByName(kept).isActive()


def test_a_shut_off_domain_with_start_false_fails_and_stays_off(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"))
    result = check(conn, Module(name=name, start=False, serial_log=console(tmp_path, "login:\n")))
    assert result["failed"] is True and result["changed"] is False
    assert result["verdict"]["reason"] == "domain is shut off and start=false"
    assert not conn.lookupByName(name).isActive()


def test_a_corrupt_image_fails_before_the_start(conn, domains, tmp_path):
    disk = image(tmp_path / "d.qcow2")
    with open(disk, "r+b") as handle:  # the L1 table offset now points past the end of the file
        handle.seek(40)
        handle.write((1 << 40).to_bytes(8, "big"))
    name = define(conn, domains, disk)
    result = check(conn, Module(name=name, serial_log=console(tmp_path, "login:\n")))
    assert result["failed"] is True and result["changed"] is False
    assert result["verdict"]["checks"][0]["ok"] is False
    assert result["msg"].startswith("validation of %s failed: qemu-img check of %s failed: " % (name, disk))
    assert not conn.lookupByName(name).isActive()


def test_no_serial_log_is_a_failure_naming_the_fix(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"))
    result = check(conn, Module(name=name))
    assert result["failed"] is True and "has no serial console log to read" in result["msg"]
    assert "changed" not in result and not conn.lookupByName(name).isActive()


def test_an_appending_log_is_read_only_from_this_boot_on(conn, domains, tmp_path):
    log = console(tmp_path, "V2KVM-BOOT-OK the previous boot\n")
    serial = "<serial type='pty'><log file='%s' append='on'/><target port='0'/></serial>" % log
    name = define(conn, domains, image(tmp_path / "d.qcow2"), serial=serial)
    result = check(conn, Module(name=name, boot_timeout=1))
    assert result["failed"] is True and result["verdict"]["serial_log"] == log
    assert "no line matching success_pattern" in result["verdict"]["reason"], result
    assert result["verdict"]["console_tail"] == []


def test_a_running_domain_skips_the_content_compare(conn, domains, tmp_path):
    disk = image(tmp_path / "d.qcow2")
    name = define(conn, domains, disk)
    conn.lookupByName(name).create()
    module = Module(name=name, check_images=False, serial_log=console(tmp_path, "login:\n"),
                    content_compare=[{"source": "/nonexistent.raw", "target": disk}])
    compare = check(conn, module)["verdict"]["checks"]
    assert [(c["name"], c["ok"]) for c in compare] == [("qemu-img compare", None)]
    assert "moved on from the source" in compare[0]["detail"]


def test_sigterm_during_the_boot_fails_the_check_and_stops_the_guest_it_started(conn, domains, tmp_path):
    name = define(conn, domains, image(tmp_path / "d.qcow2"))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        result = check(conn, Module(name=name, check_images=False, serial_log=console(tmp_path, "Booting\n")))
    finally:
        timer.cancel()
    assert result["failed"] is True and result["changed"] is True
    assert "interrupted (signal 15) while the guest booted" in result["msg"]
    assert result["verdict"]["console_tail"] == ["Booting"]
    assert not conn.lookupByName(name).isActive()


def test_boot_stage_shows_the_newest_printable_line_and_waits_only_before_the_first():
    assert boot_stage("", "") == WAITING == "boot: waiting for the first console line"
    assert boot_stage("\x1b[2J\r\n  \n", "compare web01-0.qcow2") == WAITING
    assert boot_stage("", "boot: Booting from Hard Disk...") is None
    assert boot_stage("SeaBIOS\r\n\x1b[0mBooting\x07 from Hard Disk...\r\n\n", "") == \
        "boot: Booting from Hard Disk..."
    assert boot_stage("x" * 300 + "\n", "") == "boot: " + "x" * 100


def test_image_checks_judge_each_disk_and_skip_them_while_running(tmp_path):
    disks = [{"path": image(tmp_path / "a.qcow2"), "format": "qcow2"},
             {"path": image(tmp_path / "b.raw", "raw"), "format": "raw"},
             {"path": str(tmp_path / "missing.qcow2"), "format": "qcow2"}]
    checks = image_checks(disks, running=False)
    assert [(c["target"], c["ok"]) for c in checks] == [(d["path"], ok) for d, ok in zip(disks, (True, True, False))]
    assert [c["detail"] for c in checks[:2]] == ["clean", "raw has no metadata to check"]
    assert all(c["ok"] is None for c in image_checks(disks, running=True))


def test_content_checks_compare_sources_with_targets_and_report_bytes(tmp_path):
    source = image(tmp_path / "source.raw", "raw")
    same = image(tmp_path / "same.qcow2")
    other = image(tmp_path / "other.qcow2", data=b"changed")
    seen = []

    def bytes_of(stage, size):
        seen.append((stage, size))
        return lambda fraction: seen.append((stage, int(fraction * size)))

    checks = content_checks([{"source": source, "target": same},
                             {"source": {"path": source, "format": "raw", "file": "source.raw"}, "target": other},
                             {"source": str(tmp_path / "gone.raw"), "target": same}], bytes_of)
    gone = str(tmp_path / "gone.raw")
    assert [(c["source"], c["ok"]) for c in checks] == [(source, True), ("source.raw", False), (gone, False)]
    assert checks[0]["detail"] == "Images are identical."
    assert checks[1]["detail"].startswith("Content mismatch at offset 0")
    assert ("compare same.qcow2", 4 * MIB) in seen and ("compare other.qcow2", 4 * MIB) in seen


class Exited(Exception):
    pass


class AnsibleLike(Module):
    """Module plus exit_json/fail_json, for run_module."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.params.setdefault("uri", "test:///default")
        self.result = None

    def exit_json(self, **result):
        self.result = result
        raise Exited()

    def fail_json(self, **result):
        self.result = dict(result, failed=True)
        raise Exited()


def run_module(module):
    with pytest.raises(Exited):
        bc.run_module(module)
    return module.result


def test_run_module_checks_its_arguments_then_ends_the_module_with_the_check_result(
        conn, domains, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the per-domain lock lives under ~/.ansible
    assert run_module(AnsibleLike(name="x", boot_timeout=0))["msg"] == "boot_timeout must be at least 1 second"

    progress = tmp_path / "progress.jsonl"
    planned = run_module(AnsibleLike(check_mode=True, name="no-such-vm", progress_file=str(progress)))
    assert planned["changed"] is True and "failed" not in planned
    assert not progress.exists(), "check mode writes no progress"

    name = define(conn, domains, image(tmp_path / "d.qcow2"))
    handler = signal.getsignal(signal.SIGTERM)
    passed = run_module(AnsibleLike(name=name, serial_log=console(tmp_path, "login:\n"), progress_file=str(progress)))
    assert passed["changed"] is True and passed["verdict"]["booted"] is True and "failed" not in passed
    last = json.loads(progress.read_text().splitlines()[-1])
    assert (last["stage"], last["done"], last["total"]) == ("done", 0, 0)
    assert signal.getsignal(signal.SIGTERM) is handler

    # Check mode: the lock this process still holds for the domain (until exit) is not taken again.
    bad = run_module(AnsibleLike(check_mode=True, name=name, success_pattern="("))
    assert bad["failed"] is True and "success_pattern '(' is not a valid regular expression" in bad["msg"]
