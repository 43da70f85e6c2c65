"""Web dashboard cost (not run by CI; prints ratios against the budgets of issue 6).

1. 500 WebSocket clients at 1 Hz (pushes every second, 200 running jobs changing each second):
   server CPU as % of one core, budget 25 %.
2. 1000 jobs in the table, one tick updating all of them, fed through the real server and WebSocket
   to headless Chromium: page script of the tick as Chrome counts it (ScriptDuration), budget 100 ms.

    .venv/bin/python bench/bench_web.py [--clients 500] [--seconds 20] [--page-only]
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import secrets
import shutil
import tempfile
import time

from ansible.module_utils.urls import open_url

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEARER = secrets.token_hex(16)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url, body):
    open_url(url + "api/ingest", data=json.dumps(body), method="POST", timeout=10,
             headers={"Authorization": "Bearer " + BEARER, "Content-Type": "application/json"}).read()


async def clients_phase(url, count, seconds, pid):
    import aiohttp
    hosts = ["vm%04d" % i for i in range(200)]
    post(url, {"run": {"id": "bench"}, "events": [{"type": "run_start"}, {"type": "play_start", "hosts": hosts}]})
    received = [0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        for _i in range(count):
            sockets.append(await session.ws_connect(url.replace("http", "ws") + "ws", max_msg_size=0))

        async def drain(ws):
            async for _msg in ws:
                received[0] += 1
        readers = [asyncio.ensure_future(drain(ws)) for ws in sockets]
        await asyncio.sleep(2)
        start_cpu, start = cpu_seconds(pid), time.monotonic()
        for tick in range(seconds):
            events = [{"type": "progress", "host": h, "task": "Convert", "task_uuid": "u", "stage": "convert",
                       "done": tick * 1000000, "total": 10 ** 9, "rate": 5e7} for h in hosts]
            body = {"run": {"id": "bench"}, "events": events}
            await asyncio.get_running_loop().run_in_executor(None, post, url, body)
            await asyncio.sleep(1)
        used, wall = cpu_seconds(pid) - start_cpu, time.monotonic() - start
        for ws in sockets:
            await ws.close()
        for reader in readers:
            reader.cancel()
    return 100.0 * used / wall, received[0]


PAGE_TICKS = 8
JOBS = 1000


def page_phase(url, ticks=PAGE_TICKS):
    """Drive the real page through the real server: 1000 jobs, then `ticks` ingests that change every
    job; each tick is one push. Per tick: page script over the whole tick window as Chrome counts it
    (Performance.getMetrics ScriptDuration, which includes JSON.parse of the push, the handlers and the
    page's own 1 s timer), style + layout, and the page's own performance.now() of the push handler
    plus the frame that draws it. The browser is left to draw between ticks (two animation frames)."""
    from playwright.sync_api import sync_playwright
    hosts = ["vm%04d" % i for i in range(JOBS)]
    start = time.time()
    post(url, {"run": {"id": "page"}, "events": [
        {"type": "run_start", "playbook": "bench.yml"}, {"type": "play_start", "hosts": hosts}]})
    post(url, {"run": {"id": "page"}, "events": [
        {"type": "task_start", "host": h, "task": "Convert", "task_uuid": "u", "ts": start - 1200 + i}
        for i, h in enumerate(hosts)]})
    profile = tempfile.mkdtemp(prefix="v2kvm-bench-chromium-")
    rows = []
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", headless=True, viewport={"width": 1400, "height": 1000},
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(url)
            wait_in_page(page, "window.v2kvmDashboard && window.v2kvmDashboard.state.jobs.size === %d" % JOBS)
            frames(page)
            time.sleep(1.5)
            for tick in range(1, ticks + 1):
                before = chrome_metrics(cdp)
                post(url, {"run": {"id": "page"}, "events": [
                    {"type": "progress", "host": h, "task": "Convert", "task_uuid": "u", "stage": "convert",
                     "done": tick * 1000000 + i, "total": 10 ** 9, "rate": 5e7 + i * 1000, "target": "kvm%d" % (i % 8)}
                    for i, h in enumerate(hosts)]})
                # Every job shows this tick's numbers: all the pushes carrying them were handled.
                wait_in_page(page, "Array.from(window.v2kvmDashboard.state.jobs.values())"
                                   ".every(j => j.done === %d * 1000000 + Number(j.host.slice(2)))" % tick)
                frames(page)
                after = chrome_metrics(cdp)
                stats = page.evaluate("window.v2kvmDashboard.stats")
                rows.append({
                    "script": 1000 * (after["ScriptDuration"] - before["ScriptDuration"]),
                    "layout": 1000 * (after["LayoutDuration"] + after["RecalcStyleDuration"]
                                      - before["LayoutDuration"] - before["RecalcStyleDuration"]),
                    "task": 1000 * (after["TaskDuration"] - before["TaskDuration"]),
                    "handler": stats["lastApplyMs"] + stats["lastRenderMs"],
                })
                time.sleep(0.3)
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return rows


def chrome_metrics(cdp):
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def frames(page):
    # Two animation frames: the one that renders the push, and one after it (the paint is done).
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")


def wait_in_page(page, predicate, timeout=30):
    deadline = time.time() + timeout
    while not page.evaluate("() => !!(%s)" % predicate):
        if time.time() > deadline:
            raise AssertionError("page never reached: %s" % predicate)
        time.sleep(0.05)


def start_server(max_clients):
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    env = dict(os.environ, V2KVM_WEB_TOKEN=BEARER)
    server = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "web_dashboard.py"), "--port", str(port),
                               "--no-history", "--max-clients", str(max_clients), "--ingest-rate", "100"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _i in range(100):
        try:
            open_url(url + "healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    return server, url


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    server.wait(10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--ticks", type=int, default=PAGE_TICKS)
    parser.add_argument("--page-only", action="store_true", help="skip the 500-client phase")
    args = parser.parse_args()
    if not args.page_only:
        server, url = start_server(args.clients + 10)
        try:
            percent, received = asyncio.run(clients_phase(url, args.clients, args.seconds, server.pid))
        finally:
            stop_server(server)
        print("%d WebSocket clients at 1 Hz: server CPU %.1f %% of one core (budget 25 %%, ratio %.2f); "
              "%d messages received" % (args.clients, percent, percent / 25.0, received))
    server, url = start_server(10)
    try:
        rows = page_phase(url, args.ticks)
    finally:
        stop_server(server)
    for key, what in (("script", "page script (Chrome ScriptDuration)"),
                      ("handler", "push handler + its frame (performance.now)"),
                      ("layout", "style + layout"), ("task", "all main-thread tasks")):
        print("  %-44s %s ms" % (what, " ".join("%6.1f" % row[key] for row in rows)))
    scripts = sorted(row["script"] for row in rows)
    print("%d jobs, one tick updating all: page script worst %.1f ms, median %.1f ms (budget 100 ms, ratio %.2f)"
          % (JOBS, scripts[-1], scripts[len(scripts) // 2], scripts[-1] / 100.0))


if __name__ == "__main__":
    main()
