"""The web dashboard server over HTTP and WebSocket (aiohttp's test server, real sockets): REST,
deltas, snapshot requests, security (token, Origin, client cap, rate limit), metrics, history."""

import asyncio
import json
import os
import secrets
import subprocess

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_history import History  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_hub import job_id  # noqa: E402
from ansible_collections.v2kvm.migrate.plugins.plugin_utils.web_server._web_server import (  # noqa: E402
    Config, DashboardServer, ssl_context)

# Made per run: a fixed string here would read as a leaked credential to scanners.
TOKEN = secrets.token_hex(16)
AUTH = {"Authorization": "Bearer %s" % TOKEN}


def events_of_a_run(hosts=("vm1", "vm2")):
    return [
        {"type": "run_start", "playbook": "migrate.yml", "ts": 100.0},
        {"type": "play_start", "hosts": list(hosts), "ts": 100.5},
        {"type": "task_start", "host": hosts[0], "task": "Convert", "task_uuid": "u1", "ts": 101.0},
        {"type": "progress", "host": hosts[0], "task": "Convert", "task_uuid": "u1", "stage": "convert",
         "done": 256 << 20, "total": 1 << 30, "rate": 64e6, "ts": 102.0, "target": "kvm01"},
    ]


def run(coro):
    return asyncio.run(coro)


async def _client(tmp_path, **settings):
    settings.setdefault("token", TOKEN)
    settings.setdefault("history", str(tmp_path / "history.sqlite3"))
    settings.setdefault("interval", 3600)  # the tests tick by hand
    server = DashboardServer(Config(**settings))
    client = TestClient(TestServer(server.make_app()))
    await client.start_server()
    return server, client


def test_ingest_needs_the_token_and_refuses_bad_input_with_a_clear_message(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path)
        try:
            body = {"run": {"id": "r1"}, "events": events_of_a_run()}
            resp = await client.post("/api/ingest", json=body)
            assert resp.status == 401 and "token" in (await resp.json())["error"]
            resp = await client.post("/api/ingest", json=body, headers={"Authorization": "Bearer wrong"})
            assert resp.status == 401
            resp = await client.post("/api/ingest", json={"run": {"id": "../etc"}, "events": []}, headers=AUTH)
            assert resp.status == 400 and "run.id" in (await resp.json())["error"]
            resp = await client.post("/api/ingest", json={"run": {"id": "r1"}, "events": [{"type": "nope"}]},
                                     headers=AUTH)
            assert resp.status == 400 and "unknown event type" in (await resp.json())["error"]
            resp = await client.post("/api/ingest", json=body, headers=AUTH)
            assert resp.status == 202 and (await resp.json()) == {"accepted": 4}
            jobs = (await (await client.get("/api/jobs")).json())["jobs"]
            assert {j["host"]: j["status"] for j in jobs} == {"vm1": "running", "vm2": "pending"}
            vm1 = [j for j in jobs if j["host"] == "vm1"][0]
            assert vm1["pct"] == 25.0 and vm1["target"] == "kvm01"
        finally:
            await client.close()
    run(scenario())


def test_websocket_sends_a_snapshot_then_only_changed_jobs_and_a_snapshot_on_request(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path)
        try:
            server.hub.ingest("r1", events_of_a_run(("vm1", "vm2", "vm3")))
            await server.broadcast_tick()  # the first push carries the three new jobs
            ws = await client.ws_connect("/ws")
            snap = json.loads((await ws.receive()).data)
            assert snap["type"] == "snapshot" and len(snap["jobs"]) == 3
            server.hub.ingest("r1", [{"type": "task_start", "host": "vm2", "task": "Define", "task_uuid": "u2"}])
            await server.broadcast_tick()
            delta = json.loads((await ws.receive()).data)
            assert delta["type"] == "delta" and delta["seq"] == snap["seq"] + 1
            assert [j["host"] for j in delta["jobs"]] == ["vm2"]  # a delta, not a full dump
            assert delta["metrics"]["active"] == 2 and delta["point"]["active"] == 2
            await server.broadcast_tick()
            quiet = json.loads((await ws.receive()).data)
            assert quiet["jobs"] == [] and quiet["seq"] == delta["seq"] + 1
            await ws.send_str(json.dumps({"type": "snapshot"}))
            again = json.loads((await ws.receive()).data)
            assert again["type"] == "snapshot" and len(again["jobs"]) == 3 and len(again["series"]) == 3
            await ws.close()
        finally:
            await client.close()
    run(scenario())


def test_websocket_from_a_foreign_origin_is_refused_same_origin_is_served(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path, allow_origins=["https://awx.example.com"])
        try:
            resp = await client.get("/ws", headers={"Origin": "http://evil.example", "Connection": "Upgrade",
                                                    "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
            assert resp.status == 403 and "origin" in (await resp.json())["error"].lower()
            own = "http://%s:%d" % (client.host, client.port)
            for origin in (own, "https://awx.example.com"):
                ws = await client.ws_connect("/ws", headers={"Origin": origin})
                assert json.loads((await ws.receive()).data)["type"] == "snapshot"
                await ws.close()
        finally:
            await client.close()
    run(scenario())


def test_client_cap_refuses_the_extra_client_with_a_reason(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path, max_clients=2)
        try:
            kept = [await client.ws_connect("/ws") for _n in range(2)]
            for ws in kept:
                await ws.receive()
            extra = await client.ws_connect("/ws")
            msg = json.loads((await extra.receive()).data)
            assert msg["type"] == "refused" and "at most 2" in msg["reason"]
            closing = await extra.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4429
            assert len(server.clients) == 2
            await kept[0].close()
            await asyncio.sleep(0.1)
            again = await client.ws_connect("/ws")  # a freed place is served again
            assert json.loads((await again.receive()).data)["type"] == "snapshot"
            for ws in (kept[1], again):
                await ws.close()
        finally:
            await client.close()
    run(scenario())


def test_ingest_rate_limit_answers_429_with_retry_after(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path, ingest_rate=1.0, ingest_burst=3)
        try:
            body = {"run": {"id": "r1"}, "events": []}
            codes = [(await client.post("/api/ingest", json=body, headers=AUTH)).status for _n in range(3)]
            assert codes == [202, 202, 202]
            resp = await client.post("/api/ingest", json=body, headers=AUTH)
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        finally:
            await client.close()
    run(scenario())


def test_reads_need_the_token_when_asked_but_the_page_and_healthz_do_not(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path, auth_reads=True)
        try:
            for path in ("/api/jobs", "/api/metrics", "/api/runs", "/metrics"):
                assert (await client.get(path)).status == 401, path
                assert (await client.get(path, headers=AUTH)).status == 200, path
            assert (await client.get("/")).status == 200
            assert (await client.get("/healthz")).status == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.ws_connect("/ws")
            assert info.value.status == 401
            ws = await client.ws_connect("/ws?token=%s" % TOKEN)
            assert json.loads((await ws.receive()).data)["type"] == "snapshot"
            await ws.close()
        finally:
            await client.close()
    run(scenario())


def test_page_is_served_with_a_strict_content_security_policy(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path)
        try:
            resp = await client.get("/")
            assert resp.status == 200 and "<canvas id=\"chart-status\">" in await resp.text()
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            vendored = await client.get("/static/vendor/chart.umd.min.js")
            assert vendored.status == 200 and "Chart.js v4" in (await vendored.text())[:200]
        finally:
            await client.close()
    run(scenario())


def test_job_detail_holds_events_errors_and_validation_verdicts(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path)
        try:
            events = events_of_a_run() + [
                {"type": "task_end", "host": "vm1", "task": "Convert", "task_uuid": "u1", "status": "changed"},
                {"type": "task_end", "host": "vm1", "task": "Validate", "task_uuid": "u3", "status": "failed",
                 "msg": "no marker on the console", "verdict": {"ok": False, "reason": "timeout", "line": None}},
                {"type": "vm_end", "host": "vm1", "verdict": "failed", "msg": "no marker on the console"},
            ]
            server.hub.ingest("r1", events)
            resp = await client.get("/api/jobs/%s" % job_id("r1", "vm1"))
            detail = await resp.json()
            assert detail["job"]["status"] == "failed"
            assert [e["msg"] for e in detail["errors"]] == ["no marker on the console"]
            assert detail["verdicts"][0]["verdict"] == {"ok": False, "reason": "timeout", "line": None}
            assert [e["type"] for e in detail["events"]][-2:] == ["vm_end", "progress"] or \
                "vm_end" in [e["type"] for e in detail["events"]]
            assert (await client.get("/api/jobs/nope")).status == 404
            severities = [a["severity"] for a in server.hub.alerts]
            assert severities == ["warning", "critical"]
        finally:
            await client.close()
    run(scenario())


def _samples(text):
    """{(sample name, sorted labels): value} of a Prometheus text body, read by prometheus_client's own parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_prometheus_metrics_and_healthz(tmp_path):
    async def scenario():
        server, client = await _client(tmp_path)
        try:
            server.hub.ingest("r1", events_of_a_run(), controller={"cpu_percent": 7.5, "rss": 1 << 26})
            response = await client.get("/metrics")
            assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
            samples = _samples(await response.text())
            assert samples[("v2kvm_jobs", (("status", "running"),))] == 1
            assert samples[("v2kvm_jobs", (("status", "pending"),))] == 1
            assert samples[("v2kvm_data_processed_bytes", ())] == 256 << 20
            assert samples[("v2kvm_controller_cpu_usage_ratio", ())] == 0.075
            assert samples[("v2kvm_controller_resident_memory_bytes", ())] == 1 << 26
            assert samples[("v2kvm_events_ingested_total", ())] == 4
            assert samples[("v2kvm_run_info", (("label", ""), ("name", "migrate.yml"), ("run", "r1")))] == 1
            assert samples[("v2kvm_job_processed_bytes", (("host", "vm1"), ("run", "r1")))] == 256 << 20
            assert samples[("v2kvm_job_size_bytes", (("host", "vm1"), ("run", "r1")))] == 1 << 30
            assert samples[("process_cpu_seconds_total", ())] > 0 and samples[("process_resident_memory_bytes", ())]
            # Only running jobs have series of their own (vm2 is pending).
            assert not [key for key in samples if ("host", "vm2") in key[1]]
            health = await (await client.get("/healthz")).json()
            assert health["status"] == "ok"
        finally:
            await client.close()
    run(scenario())


def test_metrics_of_hostile_host_and_run_names_parse(tmp_path):
    """Host and run names come from publishers: quotes, backslashes and newlines in label values are escaped."""
    hostile = 'vm "1" \\ back\\slash\nnew\nline } x{y="z"'

    async def scenario():
        server, client = await _client(tmp_path)
        try:
            # Straight into the hub: raw control characters too (ingest would already have escaped them).
            server.hub.ingest("r1", events_of_a_run(hosts=(hostile, "vm2")), name='run "a"\\\nb')
            # And over the API, as a publisher sends it.
            body = {"run": {"id": "r2", "name": 'x"\\y', "label": "l\nl"},
                    "events": events_of_a_run(hosts=("h\\\"2", "vm3"))}
            response = await client.post("/api/ingest", data=json.dumps(body), headers=AUTH)
            assert response.status == 202
            text = await (await client.get("/metrics")).text()
            samples = _samples(text)
            jobs = await (await client.get("/api/jobs?status=running")).json()
            hosts = {job["run"]: job["host"] for job in jobs["jobs"]}
            assert hosts["r1"] == hostile
            for run_id, host in hosts.items():
                assert samples[("v2kvm_job_processed_bytes", (("host", host), ("run", run_id)))] == 256 << 20
            names = {dict(key[1])["run"]: dict(key[1])["name"] for key in samples if key[0] == "v2kvm_run_info"}
            assert names == {"r1": 'run "a"\\\nb', "r2": 'x"\\y'}
        finally:
            await client.close()
    run(scenario())


def test_history_is_sqlite_wal_and_a_restarted_server_shows_the_same_runs(tmp_path):
    path = str(tmp_path / "h.sqlite3")

    async def first():
        server, client = await _client(tmp_path, history=path)
        try:
            resp = await client.post("/api/ingest", json={"run": {"id": "r1", "name": "migrate.yml"},
                                                          "events": events_of_a_run()}, headers=AUTH)
            assert resp.status == 202
            return await (await client.get("/api/jobs")).json()
        finally:
            await client.close()

    async def second():
        server, client = await _client(tmp_path, history=path)
        try:
            runs = (await (await client.get("/api/runs")).json())["runs"]
            one = await (await client.get("/api/runs/r1")).json()
            return (await (await client.get("/api/jobs")).json()), runs, one
        finally:
            await client.close()

    before = run(first())
    history = History(path)
    try:
        assert history.journal_mode() == "wal"
    finally:
        history.close()
    after, runs, one = run(second())
    assert after == before
    assert [r["id"] for r in runs] == ["r1"] and one["summary"]["playbook"] == "migrate.yml"


def test_tls_context_loads_a_certificate_and_a_half_configuration_is_refused(tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    assert ssl_context(Config(tls_cert=cert, tls_key=key)) is not None
    with pytest.raises(SystemExit, match="go together"):
        Config(tls_cert=cert).validate()
    with pytest.raises(SystemExit, match="cannot load TLS"):
        ssl_context(Config(tls_cert=key, tls_key=cert))
    assert os.path.exists(cert)
