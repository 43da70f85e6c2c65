# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only notification callback: every task result and the final stats as one JSON file."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: test_record
type: notification
short_description: record task results for the test suite
description: Writes task results per host and the play stats to the file named by V2KVM_TEST_RECORD.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "test_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._results = []

    def _record(self, result, status):
        res = dict(result._result)
        res.pop("invocation", None)
        self._results.append({
            "host": result._host.get_name(),
            "task": result._task.name or result._task.get_name(),
            "status": status,
            "changed": bool(res.get("changed")),
            "result": json.loads(json.dumps(res, default=str)),
        })

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        summary = {h: stats.summarize(h) for h in sorted(stats.processed)}
        with open(os.environ["V2KVM_TEST_RECORD"], "w") as fh:
            json.dump({"results": self._results, "stats": summary}, fh)
