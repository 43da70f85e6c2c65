"""The progress file as dashboards read it: byte stages carry a rate and an ETA, a stage without a byte
count (validate's boot watch) carries neither, and no rate leaks from one into the other."""

import json

from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter
from ansible_collections.v2kvm.migrate.plugins.module_utils._boot_watch import boot_stage
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import ProgressJob

MIB = 1 << 20


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stage_without_bytes_has_no_rate_and_the_next_byte_stage_starts_fresh(tmp_path):
    path, clock = tmp_path / "p.progress", Clock()
    writer = ProgressWriter(str(path), interval=1.0, clock=clock)
    try:
        for second in range(5):
            writer.update("compare disk0.qcow2", second * 16 * MIB, 64 * MIB)
            clock.now += 1.0
        writer.update("boot: Linux version 6.1", 0, 0)
        clock.now += 1.0
        writer.update("compare disk1.qcow2", 0, 64 * MIB)
    finally:
        writer.close()
    lines = _lines(path)
    comparing = [line for line in lines if line["stage"] == "compare disk0.qcow2"]
    assert comparing[-1]["rate"] > 8 * MIB and comparing[-1]["eta"] is not None, comparing
    boot = [line for line in lines if line["stage"].startswith("boot")]
    assert boot and all(line["rate"] == 0 and line["eta"] is None for line in boot), boot
    assert lines[-1]["stage"] == "compare disk1.qcow2" and lines[-1]["rate"] == 0, lines[-1]


def _console(job, text):
    """What validate does with each read of the console: the boot stage it shows, if it changes."""
    stage = boot_stage(text, job.stage)
    if stage is not None:
        job.update(stage)


def test_validate_reports_the_newest_console_line_without_escape_sequences(tmp_path):
    path = tmp_path / "v.progress"
    with ProgressJob(str(path)) as job:
        _console(job, "")
        # What SeaBIOS and syslinux print before the kernel: a terminal reset and a screen clear.
        _console(job, "SeaBIOS (version 1.16)\r\n\x1bc\x1b[?7l\x1b[2J")
        _console(job, "SeaBIOS (version 1.16)\r\n\x1bc\x1b[?7l\x1b[2J\r\n"
                      "[    0.000000] Linux version 6.1.0\r\n\x07\r\n")
        job.finish(True, 0, 0)
    stages = [line["stage"] for line in _lines(path)]
    assert stages == ["boot: waiting for the first console line", "boot: SeaBIOS (version 1.16)",
                      "boot: [    0.000000] Linux version 6.1.0", "done"], stages
    assert _lines(path)[-1]["eta"] is None  # nothing was counted, so no "0:00 left" either


def test_validate_without_a_progress_file_writes_nothing(tmp_path):
    with ProgressJob(None) as job:
        _console(job, "[    0.000000] Linux version 6.1.0\n")
        job.bytes_of("compare disk0.qcow2", 64 * MIB)(0.5)
        job.finish(False)
    assert list(tmp_path.iterdir()) == []


def test_the_sample_that_completes_a_stage_is_written_at_once(tmp_path):
    path, clock = tmp_path / "c.progress", Clock()
    writer = ProgressWriter(str(path), interval=10.0, clock=clock)
    try:
        writer.update("compare disk0.qcow2", 0, 64 * MIB)
        clock.now += 0.1
        writer.update("compare disk0.qcow2", 32 * MIB, 64 * MIB)  # within the interval: not written
        clock.now += 0.1
        writer.update("compare disk0.qcow2", 64 * MIB, 64 * MIB)  # complete: written although within it
        clock.now += 0.1
        writer.update("compare disk0.qcow2", 64 * MIB, 64 * MIB)  # nothing new
        writer.update("boot: SeaBIOS", 0, 0)
    finally:
        writer.close()
    assert [(line["stage"], line["done"]) for line in _lines(path)] == [
        ("compare disk0.qcow2", 0), ("compare disk0.qcow2", 64 * MIB), ("boot: SeaBIOS", 0)]
