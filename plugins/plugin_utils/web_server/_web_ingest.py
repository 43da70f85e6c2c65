# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the web dashboard accepts from a run: strict JSON and a typed schema per event type.

``parse_batch(body)`` turns the bytes of one ``/api/ingest`` request (or one ``--stdin`` line) into a
``Batch`` whose every value has the type the board folds, or raises ``IngestError`` naming the field,
what it must be and what the v2kvm.migrate publisher sends. Nothing is applied before the whole
batch passed, so a refused batch changes nothing (neither the live board nor the history).

The rules (docs/web-dashboard.md, "What ingest accepts"):

- UTF-8 JSON, nesting at most ``MAX_DEPTH`` deep; no NaN/Infinity; numbers finite and within
  +-2**53 (what a browser reads exactly), so every API answer stays valid JSON for every viewer.
- Known fields are typed (below); unknown fields are dropped, so a newer publisher still reports to
  an older server; texts are cut to a bounded length.

Plain Python (json, re, itertools), no Ansible import.
"""

from __future__ import annotations

import itertools
import json
import math
import re

from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import untrusted

EVENT_TYPES = ("run_start", "play_start", "task_start", "progress", "task_end", "vm_end", "run_end")
TASK_STATUSES = ("ok", "changed", "failed", "skipped", "unreachable", "ignored")
VM_VERDICTS = ("succeeded", "failed")
MAX_DEPTH = 20
MAX_EVENTS = 5000
MAX_HOSTS_PER_EVENT = 10000
MAX_NUMBER = 2 ** 53
RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PUBLISHER = "the publisher of v2kvm.migrate (the web callback) sends"

# A JSON string, escapes included: skipped whole by the depth scan, so brackets inside texts do not count.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class IngestError(ValueError):
    """Refused input; the message names the problem and the fix (sent back as HTTP 400)."""


def show(value, limit: int = 60) -> str:
    """A client value inside a message: ASCII-escaped (no control character reaches a log) and cut."""
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


def kind_of(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean %s" % str(value).lower()
    if isinstance(value, (int, float)):
        return "number %s" % show(value)
    if isinstance(value, str):
        return "string %s" % show(value)
    if isinstance(value, list):
        return "a list of %d" % len(value)
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- strict JSON ------------------------------------------------------------------------------------


def nesting_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text, without recursion: strings are cut out, the brackets
    left are summed (+1 open, -1 close) in C loops (accumulate/map), so 1 MiB of '[' costs milliseconds."""
    skeleton = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, skeleton)), default=0)


def _refuse_constant(name):
    raise IngestError("%s is not JSON: numbers must be finite (send null for a value you do not have)" % name)


def _float(text):
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise IngestError("number %s is out of range: numbers must be finite and within +-2**53" % show(text))
    return value


def _int(text):
    if len(text) > 17:  # more digits than 2**53 has: refused before int() builds a huge number
        raise IngestError("number %s is out of range: numbers must be finite and within +-2**53" % show(text))
    value = int(text)
    if abs(value) > MAX_NUMBER:
        raise IngestError("number %s is out of range: numbers must be finite and within +-2**53" % show(text))
    return value


def loads(data, max_depth: int = MAX_DEPTH):
    """Strict JSON: UTF-8, at most ``max_depth`` nested, no NaN/Infinity, numbers within +-2**53."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    depth = nesting_depth(data)
    if depth > max_depth:
        raise IngestError("JSON nested %d deep: at most %d levels are accepted (a batch needs 4)" % (depth, max_depth))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError("the body is not UTF-8 (byte %d): send JSON encoded as UTF-8" % exc.start) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_float, parse_int=_int)
    except IngestError:
        raise
    except (ValueError, RecursionError) as exc:
        raise IngestError("the body is not valid JSON (%s): send one JSON object {run, events, controller}"
                          % show(str(exc), 120)) from None


# -- field types ------------------------------------------------------------------------------------


class Field:
    """One typed field: ``check(value)`` returns the value to keep or raises ValueError."""

    def __init__(self, what: str, sends: str, check, required: bool = False):
        self.what, self.sends, self.check, self.required = what, sends, check, required


def _text(limit):
    def check(value):
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError
        # Lone surrogates (\ud800) cannot be stored as UTF-8 (history, logs): replaced, not refused. Any
        # publisher may post: control characters are escaped here as the callbacks escape theirs.
        return untrusted(value[:limit].encode("utf-8", "replace").decode("utf-8"))
    return check


def _label(limit):
    """A text a module chose (a loop item, a delegated host): any scalar is shown as text."""
    text = _text(limit)

    def check(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, (list, dict)):
            return text(json.dumps(value, separators=(",", ":"))[:limit])
        return text(value)
    return check


def _host(value):
    if not isinstance(value, str) or not value:
        raise ValueError
    return _text(255)(value)


def _number(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    return value


def _flag(value):
    if value is None or isinstance(value, bool):
        return value
    raise ValueError


def _choice(*allowed):
    def check(value):
        if value not in allowed:
            raise ValueError
        return value
    return check


def _hosts(value):
    if not isinstance(value, list) or len(value) > MAX_HOSTS_PER_EVENT:
        raise ValueError
    return [_host(name) for name in value]


def _task_verdict(value):
    """A module's verdict object (validate, kvm_migrate): only what the page shows is kept, as text/flag."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError
    ok = value.get("ok", value.get("booted"))
    line = value.get("line", value.get("matched_line"))
    return {"ok": ok if isinstance(ok, bool) else None, "reason": _label(500)(_scalar(value.get("reason"))),
            "line": _label(500)(_scalar(line))}


def _scalar(value):
    return value if isinstance(value, (str, int, float)) else None


HOST = Field("the inventory host name (a non-empty string)", '"host": "vm1"', _host, required=True)
TASK = Field("the task name (a string)", '"task": "Convert the disks"', _text(500))
UUID = Field("the task's uuid (a string)", '"task_uuid": "0242ac11-..."', _text(64))
TS = Field("epoch seconds (a number)", '"ts": 1765000000.5', _number)
TARGET = Field("the host the task ran on (a string)", '"target": "kvm01"', _label(255))
ITEM = Field("the loop item's label (a string)", '"item": "disk0"', _label(200))
COMMON = {"ts": TS, "target": TARGET}

SCHEMA = {
    "run_start": {"playbook": Field("the playbook file name (a string)", '"playbook": "migrate.yml"', _text(255))},
    "play_start": {
        "play": Field("the play name (a string)", '"play": "Migrate"', _text(500)),
        "hosts": Field("a list of host names (strings, at most %d)" % MAX_HOSTS_PER_EVENT,
                       'the inventory host names of the play: "hosts": ["vm1", "vm2"]', _hosts),
    },
    "task_start": {"host": HOST, "task": TASK, "task_uuid": UUID,
                   "bookkeeping": Field("true or false", '"bookkeeping": true for set_fact and includes', _flag)},
    "progress": {
        "host": HOST, "task": TASK, "task_uuid": UUID, "item": ITEM,
        "stage": Field("the stage name (a string)", '"stage": "convert"', _text(200)),
        "done": Field("a byte count (a number) or null", '"done": 268435456', _number),
        "total": Field("a byte count (a number) or null", '"total": 1073741824', _number),
        "rate": Field("bytes per second (a number) or null", '"rate": 64000000.0', _number),
        "eta": Field("seconds left (a number) or null", '"eta": 12.5', _number),
        "source": Field("the module that reports (a string)", '"source": "disk_convert"', _text(100)),
        "sample_ts": Field("the module's epoch seconds (a number) or null", '"sample_ts": 1765000000.5', _number),
    },
    "task_end": {
        "host": HOST, "task": TASK, "task_uuid": UUID, "item": ITEM,
        "status": Field("one of %s" % ", ".join(TASK_STATUSES), '"status": "changed"', _choice(*TASK_STATUSES),
                        required=True),
        "msg": Field("the failure message (a string)", '"msg": "no space left"', _text(2000)),
        "spec_name": Field("the VM name (a string)", '"spec_name": "web01"', _text(255)),
        "original_name": Field("the source's own VM name (a string)", '"original_name": "Web Server 01"', _text(255)),
        "source_type": Field("the source kind (a string)", '"source_type": "ova"', _text(64)),
        "phase": Field("the role's phase (a string)", '"phase": "convert"', _text(64)),
        "verdict": Field("the module's verdict object", '"verdict": {"booted": true, "reason": "..."}',
                         _task_verdict),
    },
    "vm_end": {
        "host": HOST,
        "verdict": Field("one of %s" % ", ".join(VM_VERDICTS), '"verdict": "succeeded"', _choice(*VM_VERDICTS),
                         required=True),
        "msg": Field("the failure message (a string)", '"msg": "interrupted"', _text(2000)),
    },
    "run_end": {"interrupted": Field("true or false", '"interrupted": true after Ctrl-C', _flag)},
}

CONTROLLER = {key: Field("a number or null", '"%s": 12.5' % key, _number)
              for key in ("cpu_percent", "rss", "mem_total", "mem_percent", "threads", "pid")}


def _refuse(where: str, name: str, field: Field, value) -> IngestError:
    parts = (where, name, field.what, kind_of(value), PUBLISHER, field.sends)
    return IngestError("%sfield %s must be %s, got %s; %s %s" % parts)


def _typed(raw: dict, fields: dict, where: str) -> dict:
    kept = {}
    for name, field in fields.items():
        if name not in raw:
            if field.required:
                parts = (where, name, field.what, PUBLISHER, field.sends)
                raise IngestError("%sfield %s is missing: it must be %s; %s %s" % parts)
            continue
        try:
            kept[name] = field.check(raw[name])
        except ValueError:
            raise _refuse(where, name, field, raw[name]) from None
    return kept


def clean_event(raw, index: int = 0) -> dict:
    """One event with only known fields, each of its type; anything else is refused (IngestError)."""
    if not isinstance(raw, dict):
        raise IngestError("events[%d] must be a JSON object {type, ts, ...}, got %s; %s one object per event"
                          % (index, kind_of(raw), PUBLISHER))
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in SCHEMA:
        raise IngestError("events[%d]: unknown event type %s: field type must be one of %s; %s those only (is the "
                          "publisher newer than this server? update the server)"
                          % (index, kind_of(kind), ", ".join(EVENT_TYPES), PUBLISHER))
    where = "events[%d] (%s): " % (index, kind)
    event = _typed(raw, dict(COMMON, **SCHEMA[kind]), where)
    event["type"] = kind
    return event


class Batch:
    def __init__(self, run_id, name, label, events, controller):
        self.run_id, self.name, self.label, self.events, self.controller = run_id, name, label, events, controller

    def hosts(self) -> set:
        """Every inventory host the batch names (for the per-run host cap)."""
        found = set()
        for event in self.events:
            if "host" in event:
                found.add(event["host"])
            found.update(event.get("hosts") or ())
        return found


def check_batch(body) -> Batch:
    """Validate a decoded body ``{run: {id, name, label}, events: [...], controller: {...}}`` whole."""
    if not isinstance(body, dict):
        raise IngestError("the body must be a JSON object {run, events, controller}, got %s" % kind_of(body))
    run = body.get("run")
    if not isinstance(run, dict):
        raise IngestError("field run must be an object {id, name, label}, got %s; %s "
                          '"run": {"id": "3f2a9c1b7d4e", "name": "migrate.yml"}' % (kind_of(run), PUBLISHER))
    run_id = run.get("id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise IngestError("field run.id must be 1-64 characters of A-Z a-z 0-9 . _ -, got %s; %s a random hex id"
                          % (kind_of(run_id), PUBLISHER))
    names = _typed(run, {"name": Field("a string", '"name": "migrate.yml"', _text(200)),
                         "label": Field("a string", '"label": "job 42"', _text(200))}, "run: ")
    events = body.get("events", [])
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise IngestError("field events must be a list of at most %d events, got %s; %s its events in batches"
                          % (MAX_EVENTS, kind_of(events), PUBLISHER))
    cleaned = [clean_event(event, index) for index, event in enumerate(events)]
    controller = body.get("controller")
    if controller is not None:
        if not isinstance(controller, dict):
            example = '"controller": {"cpu_percent": 12.5, "rss": 104857600}'
            raise IngestError("field controller must be an object of numbers, got %s; %s %s"
                              % (kind_of(controller), PUBLISHER, example))
        controller = _typed(controller, CONTROLLER, "controller: ")
    return Batch(run_id, names.get("name") or "", names.get("label") or "", cleaned, controller)


def parse_batch(data) -> Batch:
    """The bytes of one request (or one stdin line) to a validated Batch, or IngestError."""
    return check_batch(loads(data))
