"""Web dashboard cost (not run by CI; prints ratios against the budgets of issue 6).

1. 500 WebSocket clients at 1 Hz (pushes every second, 200 running jobs changing each second):
   server CPU as % of one core, budget 25 %.
2. 1000 jobs in the table, one tick updating all of them: page script time (apply + render with
   cards, table and charts) in headless Chromium, budget 100 ms.

    .venv/bin/python bench/bench_web.py [--clients 500] [--seconds 20]
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token"  # noqa: S105 - a bench token


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url, body):
    request = urllib.request.Request(url + "api/ingest", data=json.dumps(body).encode(), method="POST",  # noqa: S310 - our own http URL
                                     headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - our own http URL


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
            await asyncio.get_running_loop().run_in_executor(None, post, url, {"run": {"id": "bench"},
                                                                                 "events": events})
            await asyncio.sleep(1)
        used, wall = cpu_seconds(pid) - start_cpu, time.monotonic() - start
        for ws in sockets:
            await ws.close()
        for reader in readers:
            reader.cancel()
    return 100.0 * used / wall, received[0]


def page_phase(url):
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="v2kvm-bench-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", headless=True, viewport={"width": 1400, "height": 1000},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = context.new_page()
        page.goto(url)
        time.sleep(2)
        result = page.evaluate("""() => {
          const d = window.v2kvmDashboard, now = Date.now() / 1000;
          const job = (i, t) => ({id: 'j' + i, run: 'b', host: 'vm' + i, name: 'vm' + i, status: 'running',
            stage: 'convert', pct: (i + t) % 100, done: t * 1e6, total: 1e9, rate: 5e7 + i, source: 'ova',
            target: 'kvm' + (i % 8), started: now - 60, finished: null});
          const jobs = []; for (let i = 0; i < 1000; i++) jobs.push(job(i, 0));
          const series = []; for (let i = 0; i < 300; i++) series.push({ts: now - 300 + i, active: 1000, completed: 0,
            failed: 0, queued: 0, cpu: 5, rss: 5e7});
          d.onMessage({type: 'snapshot', seq: 1000000, jobs, series, alerts: [], metrics: {active: 1000},
            controller: {}, health: {}});
          d.render();
          const times = [];
          for (let t = 1; t <= 5; t++) {
            const delta = []; for (let i = 0; i < 1000; i++) delta.push(job(i, t));
            const t0 = performance.now();
            d.onMessage({type: 'delta', seq: 1000000 + t, jobs: delta, alerts: [], metrics: {active: 1000},
              controller: {}, health: {}, point: {ts: now + t, active: 1000, completed: 0, failed: 0, queued: 0}});
            d.render();
            times.push(performance.now() - t0);
          }
          return times;
        }""")
        context.close()
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    port = free_port()
    url = "http://127.0.0.1:%d/" % port
    env = dict(os.environ, V2KVM_WEB_TOKEN=TOKEN)
    server = subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "web_dashboard.py"), "--port", str(port),
                               "--no-history", "--max-clients", str(args.clients + 10), "--ingest-rate", "100"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _i in range(100):
            try:
                urllib.request.urlopen(url + "healthz", timeout=1)  # noqa: S310 - our own http URL
                break
            except OSError:
                time.sleep(0.1)
        percent, received = asyncio.run(clients_phase(url, args.clients, args.seconds, server.pid))
        print("%d WebSocket clients at 1 Hz: server CPU %.1f %% of one core (budget 25 %%, ratio %.2f); "
              "%d messages received" % (args.clients, percent, percent / 25.0, received))
        times = page_phase(url)
        worst = max(times)
        print("1000 jobs, one tick updating all: page script %s ms, worst %.1f ms (budget 100 ms, ratio %.2f)"
              % (", ".join("%.1f" % t for t in times), worst, worst / 100.0))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
