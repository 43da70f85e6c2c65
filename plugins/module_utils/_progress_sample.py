# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress sample, defined once: what a module writes to its progress file, what the progress
action forwards to the controller under ``PROGRESS_KEY``, and what the callbacks read.

A sample is one JSON object per line::

    {"ts": epoch seconds, "stage": str, "done": bytes, "total": bytes,
     "rate": bytes per second (smoothed), "eta": seconds or null}

The action adds ``source`` (the module that wrote it) when it forwards the sample.
"""

from __future__ import annotations

import json

PROGRESS_KEY = "v2kvm_progress"
SAMPLE_FIELDS = ("ts", "stage", "done", "total", "rate", "eta")
FORWARDED_FIELDS = ("stage", "done", "total", "rate", "eta", "source")
# Final stages: every progress job ends with one of them, so a reader knows the writer ended on purpose.
DONE = "done"
FAILED = "failed"


def make_sample(ts: float, stage: str, done: int, total: int, rate, eta) -> dict:
    """One sample with exactly the documented fields, in their order."""
    return {"ts": ts, "stage": stage, "done": done, "total": total, "rate": rate, "eta": eta}


def encode_sample(sample: dict) -> bytes:
    """The sample as one progress-file line."""
    return (json.dumps(sample, separators=(",", ":")) + "\n").encode()


def parse_sample(raw) -> dict | None:
    """One progress line as a dict with exactly the documented fields, or None if it is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or "stage" not in value:
        return None
    return {key: value.get(key) for key in SAMPLE_FIELDS}
