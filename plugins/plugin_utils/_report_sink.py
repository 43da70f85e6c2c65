# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The end-of-run reports: a summary JSON (per-VM results and metrics) and a JUnit XML (one testcase per VM).

Both are folds of the run's board, written once when the run ends (normally or interrupted), each
through a temporary file renamed into place so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import untrusted
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import FAILED, SUCCEEDED, MigrationBoard


class ReportSink(EventSink):
    """Writes the summary and/or the JUnit report of ``board`` at close; a path left empty is not written."""

    def __init__(self, board: MigrationBoard, summary_path: str = "", junit_path: str = ""):
        self.board = board
        self.summary_path = summary_path
        self.junit_path = junit_path

    def close(self) -> None:
        if self.summary_path:
            write_json_atomic(self.summary_path, self.board.summary())
        if self.junit_path:
            write_junit(self.junit_path, self.board)


def write_json_atomic(path, data):
    tmp = "%s.tmp" % path
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def _testcase(suite, vm, now):
    case = ET.SubElement(suite, "testcase", {
        "name": untrusted(vm.host), "classname": "v2kvm.migrate.%s" % untrusted(vm.source_type or "vm"),
        "time": "%.3f" % vm.elapsed(now),
    })
    props = ET.SubElement(case, "properties")
    for key, value in (("vm_name", vm.name), ("source_name", vm.original_name), ("bytes", vm.total),
                       ("stage", vm.stage)):
        ET.SubElement(props, "property", {"name": key, "value": untrusted(value)})
    if vm.status == FAILED:
        # XML 1.0 cannot hold most control characters: escaped, the report always parses.
        error = untrusted(vm.error or "failed")
        failure = ET.SubElement(case, "failure", {"message": error[:500]})
        failure.text = error
    elif vm.status != SUCCEEDED:
        ET.SubElement(case, "skipped", {"message": "not finished (%s)" % vm.status})


def write_junit(path, board: MigrationBoard):
    """One testsuite, one testcase per VM; a failed VM carries a <failure> with its error."""
    now = board.run_finished or board.last_update or time.time()
    vms = [board.vms[h] for h in sorted(board.vms)]
    failures = sum(1 for vm in vms if vm.status == FAILED)
    skipped = sum(1 for vm in vms if vm.status not in (FAILED, SUCCEEDED))
    suite = ET.Element("testsuite", {
        "name": "v2kvm.migrate", "tests": str(len(vms)), "failures": str(failures), "errors": "0",
        "skipped": str(skipped), "time": "%.3f" % ((now - board.run_started) if board.run_started else 0.0),
    })
    for vm in vms:
        _testcase(suite, vm, now)
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    tmp = "%s.tmp" % path
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
