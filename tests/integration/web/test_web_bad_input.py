"""Bad input against the real standalone server (scripts/web_dashboard.py) over real HTTP: each refusal
names the problem and the fix; a refused batch changes neither the live board nor the history; the
Host allow-list; undecodable credentials; per-run caps; no temporary folder left at exit."""

import http.client
import json
import os
import sqlite3

import pytest

from web.conftest import TOKEN

pytestmark = pytest.mark.integration


def strict(text):
    """JSON as a browser's JSON.parse reads it: NaN/Infinity are not JSON."""
    def refuse(name):
        raise AssertionError("the server sent %s, which is not JSON" % name)
    return json.loads(text, parse_constant=refuse)


def request(server, method, path, body=b"", headers=None, host=None):
    """One request with exactly these bytes (http.client sends bytes header values as they are)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else "127.0.0.1:%d" % server.port)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, (strict(data) if data.startswith(b"{") else data)
    finally:
        conn.close()


def ingest(server, body, token=TOKEN):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": "Bearer %s" % token, "Content-Type": "application/json"}
    return request(server, "POST", "/api/ingest", data, headers)


def batch(run_id, *events):
    return {"run": {"id": run_id, "name": "bad.yml"}, "events": list(events)}


START = [{"type": "run_start", "playbook": "bad.yml"}, {"type": "play_start", "play": "p", "hosts": ["vm1", "vm2"]}]


def refused(server, body, status=400):
    code, answer = ingest(server, body)
    assert code == status, (code, answer)
    return answer["error"]


def test_nan_infinity_and_huge_numbers_are_refused_and_say_numbers_must_be_finite(web_server):
    server = web_server()
    progress = '{"run":{"id":"r1"},"events":[{"type":"progress","host":"vm1","done":%s}]}'
    for token in ("NaN", "Infinity", "-Infinity"):
        error = refused(server, (progress % token).encode())
        assert "%s is not JSON" % token in error and "numbers must be finite" in error and "send null" in error
    for number in ("1e400", "-1e400", "1" + "0" * 30):
        error = refused(server, (progress % number).encode())
        assert "out of range" in error and "finite and within +-2**53" in error, error
    assert request(server, "GET", "/api/jobs") == (200, {"jobs": [], "count": 0})


def test_json_nested_100000_deep_is_a_400_that_gives_the_limit(web_server):
    server = web_server()
    deep = b'{"run":{"id":"r1"},"events":[' + b"[" * 100000 + b"]" * 100000 + b"]}"
    error = refused(server, deep)
    assert "nested 100002 deep" in error and "at most 20 levels" in error
    # Brackets inside texts are text, not nesting.
    code, answer = ingest(server, batch("r1", {"type": "run_start", "playbook": "[" * 5000}))
    assert code == 202, answer


@pytest.mark.parametrize("hosts", [5, "abc", [1, 2], [""], {"vm1": 1}])
def test_play_hosts_of_the_wrong_type_are_refused_naming_the_field_and_what_the_publisher_sends(web_server, hosts):
    server = web_server()
    error = refused(server, batch("r1", {"type": "play_start", "play": "p", "hosts": hosts}))
    assert "events[0] (play_start): field hosts must be a list of host names" in error
    assert 'the publisher of v2kvm.migrate (the web callback) sends the inventory host names' in error
    assert json.dumps(request(server, "GET", "/api/jobs")[1]) == json.dumps({"jobs": [], "count": 0})


def test_each_event_field_is_typed_and_a_missing_required_field_is_named(web_server):
    server = web_server()
    cases = [
        ({"type": "progress", "host": "vm1", "done": "abc"}, "field done must be a byte count (a number) or null",
         '"done": 268435456'),
        ({"type": "task_end", "host": "vm1", "status": "exploded"}, "field status must be one of ok, changed",
         '"status": "changed"'),
        ({"type": "task_end", "host": "vm1"}, "field status is missing", '"status": "changed"'),
        ({"type": "vm_end", "host": 7, "verdict": "failed"}, "field host must be the inventory host name",
         '"host": "vm1"'),
        ({"type": "task_start", "host": "vm1", "bookkeeping": "yes"}, "field bookkeeping must be true or false",
         '"bookkeeping": true'),
        ({"type": "teleport", "host": "vm1"}, "unknown event type string 'teleport'", "update the server"),
        ("progress", "events[0] must be a JSON object", "one object per event"),
    ]
    for event, problem, fix in cases:
        error = refused(server, batch("r1", event))
        assert problem in error and fix in error, error
    for body, problem, fix in (
            ([], "the body must be a JSON object", "{run, events, controller}"),
            ({"run": {"id": "../etc"}}, "field run.id must be 1-64 characters", "a random hex id"),
            ({"run": {"id": "r1"}, "events": {}}, "field events must be a list of at most 5000", "in batches"),
            ({"run": {"id": "r1"}, "controller": {"rss": "big"}}, "controller: field rss must be a number",
             '"rss": 12.5'),
            (b'{"run": {"id": "r1"}, "events": [\xff]}', "the body is not UTF-8", "encoded as UTF-8"),
            (b'{"run": {"id": "r1"', "the body is not valid JSON", "send one JSON object")):
        error = refused(server, body)
        assert problem in error and fix in error, error


def test_a_batch_refused_half_way_changes_neither_the_live_board_nor_the_history(web_server):
    server = web_server()
    assert ingest(server, batch("r1", *START))[0] == 202
    before = request(server, "GET", "/api/jobs")[1]
    bad = batch("r1", {"type": "task_start", "host": "vm1", "task": "Convert"},
                {"type": "vm_end", "host": "vm2", "verdict": "succeeded"},
                {"type": "progress", "host": "vm1", "done": {"x": 1}})
    error = refused(server, bad)
    assert "events[2] (progress): field done" in error
    assert request(server, "GET", "/api/jobs")[1] == before
    assert request(server, "GET", "/api/runs/r1")[1]["events"] == 2
    with sqlite3.connect(server.history) as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE run_id='r1'").fetchone()[0] == 2
    # The same board comes back from the history after a restart.
    server.stop()
    server.start()
    assert request(server, "GET", "/api/jobs")[1] == before


def test_undecodable_credentials_get_401_never_500(web_server):
    server = web_server()
    body = json.dumps(batch("r1")).encode()
    for value in (b"Bearer \xff\xfe\x80", b"Bearer \xc3\x28" + TOKEN.encode(), b"Basic !!!not-base64!!!",
                  b"Basic " + b"\xe9" * 40, b"Bearer", TOKEN.encode() + b"\xff"):
        code, answer = request(server, "POST", "/api/ingest", body, {"Authorization": value})
        assert code == 401, (value, code, answer)
        assert "missing or wrong token: send 'Authorization: Bearer <token>'" in answer["error"]
    assert ingest(server, batch("r1"))[0] == 202


def test_a_foreign_host_name_gets_421_and_the_allowed_names_are_served(web_server):
    server = web_server("--allow-host", "dash.example.com", "--allow-host", "Other.Example")
    port = server.port
    for host in ("evil.example", "evil.example:%d" % port, "127.0.0.1.evil.example", "localhost.evil", "10.1.2.3"):
        code, answer = request(server, "GET", "/api/jobs", host=host)
        assert code == 421, (host, code)
        assert "does not answer for the name" in answer["error"] and "--allow-host NAME" in answer["error"]
    assert ingest(server, batch("r1"))[0] == 202
    code, answer = request(server, "POST", "/api/ingest", json.dumps(batch("r1")).encode(),
                           {"Authorization": "Bearer %s" % TOKEN}, host="evil.example")
    assert code == 421
    for host in ("127.0.0.1", "127.0.0.1:%d" % port, "localhost", "LOCALHOST:%d" % port, "[::1]:%d" % port, "::1",
                 "dash.example.com", "dash.example.com:%d" % port, "other.example"):
        assert request(server, "GET", "/api/jobs", host=host)[0] == 200, host
    code, metrics = request(server, "GET", "/metrics")
    assert code == 200 and b"v2kvm_host_refused_total 6" in metrics


def test_a_run_past_max_run_events_gets_413_and_keeps_what_it_had(web_server):
    server = web_server("--max-run-events", "5", "--keep-runs", "3")
    assert ingest(server, batch("r1", *START, *[{"type": "task_start", "host": "vm1", "task": "t"}] * 2))[0] == 202
    error = refused(server, batch("r1", *[{"type": "task_start", "host": "vm2", "task": "t"}] * 2), status=413)
    assert "run r1 holds 4 events and this batch brings 2: at most 5 per run (--max-run-events)" in error
    assert "start a new run" in error
    assert request(server, "GET", "/api/runs/r1")[1]["events"] == 4
    assert ingest(server, batch("r1", {"type": "run_end"}))[0] == 202
    # A flood of new runs that never end: the history keeps --keep-runs of them at all times.
    for n in range(8):
        assert ingest(server, batch("flood%d" % n, *START))[0] == 202
    with sqlite3.connect(server.history) as db:
        stored = [row[0] for row in db.execute("SELECT id FROM runs")]
    assert sorted(stored) == ["flood5", "flood6", "flood7"]


def test_an_old_history_holding_nan_is_served_as_valid_json(web_server, tmp_path):
    server = web_server()
    assert ingest(server, batch("old", *START, {"type": "run_end"}))[0] == 202
    server.stop()
    with sqlite3.connect(server.history) as db:
        # What an older server stored: a NaN in an event and in the summary, and a malformed event.
        db.execute("UPDATE events SET body=? WHERE run_id='old' AND seq=1",
                   ('{"type":"progress","host":"vm1","done":NaN,"rate":Infinity,"ts":1}',))
        db.execute("INSERT INTO events VALUES ('old', 9, 2, 'play_start', NULL, ?)",
                   ('{"type":"play_start","hosts":5,"ts":2}',))
        db.execute("UPDATE runs SET summary=? WHERE id='old'", ('{"metrics":{"elapsed":NaN}}',))
    server.start()
    for path in ("/api/jobs", "/api/runs", "/api/runs/old", "/api/metrics"):
        code, answer = request(server, "GET", path)
        assert code == 200 and isinstance(answer, dict), path  # strict() refused any NaN/Infinity


def test_scripts_web_dashboard_leaves_no_temporary_folder(web_server, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = web_server("--no-history", env={"TMPDIR": str(scratch)})
    assert ingest(server, batch("r1", *START))[0] == 202
    server.stop()
    assert os.listdir(scratch) == []


def test_control_characters_from_any_publisher_are_escaped_and_the_source_name_is_served(web_server):
    """A publisher that is not our callback (which escapes already) posts ESC, CR/LF and a bidi override in a
    failure message: the API serves them escaped. A derived domain name comes with the source's own name."""
    server = web_server()
    hostile = "boom\x1b[2J\r\nok: [vm2] => fine\u202e"
    code, answer = ingest(server, batch("r1", *START, {
        "type": "task_end", "host": "vm1", "task": "Read the source", "status": "failed", "msg": hostile,
        "spec_name": "Web-Server-01-1a2b3c4d", "original_name": "Web Server 01"}))
    assert code == 202, answer
    jobs = {job["host"]: job for job in request(server, "GET", "/api/jobs")[1]["jobs"]}
    assert jobs["vm1"]["error"] == "boom\\x1b[2J\\r\\nok: [vm2] => fine\\u202e"
    assert jobs["vm1"]["name"] == "Web-Server-01-1a2b3c4d" and jobs["vm1"]["original_name"] == "Web Server 01"
