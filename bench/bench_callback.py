"""Cost of the dashboard callback.

1. One terminal frame of the dashboard with 1000 VMs (50 running, 900 done, 50 failed): median CPU and
   wall ms per frame (goal <= 20 ms).
2. Progress event -> visible on the terminal: the callback in terminal mode, writing into a recording
   fake terminal, is fed in real time with progress at 1 Hz per VM for --vms VMs (with jitter), plus every
   5 s a burst of progress from 40 more VMs and, every other burst, their task results and next task
   starts. For each progress sample, the time until a written frame shows its numbers (or newer ones of
   the same VM) is recorded; prints p50/p95/max (goal p95 <= 1 s).
3. 100 hosts x 10 trivial tasks with the default stdout callback and with v2kvm.migrate.dashboard (line
   mode, as under CI; plus the JSON-lines, summary and JUnit reports), runs interleaved --repeat times;
   prints the median and best wall times, their ratios, and the CPU time of each run (goal <= 1.05x).

Run: .venv/bin/python bench/bench_callback.py [--repeat 5] [--forks 20] [--seconds 20] [--skip-playbook]
"""

import argparse
import io
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
COLLECTIONS = os.path.join(REPO, ".work", "collections")
BIN = os.path.dirname(sys.executable)


def _ensure_collection_link():
    link = os.path.join(COLLECTIONS, "ansible_collections", "v2kvm", "migrate")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(REPO, os.path.dirname(link)), link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


def run_playbook(workdir, callback, forks):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_STDOUT_CALLBACK=callback,
               ANSIBLE_FORKS=str(forks), ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
               V2KVM_DASHBOARD_EVENTS_FILE=os.path.join(workdir, "events.jsonl"),
               V2KVM_DASHBOARD_SUMMARY_FILE=os.path.join(workdir, "summary.json"),
               V2KVM_DASHBOARD_JUNIT_FILE=os.path.join(workdir, "junit.xml"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(workdir, "inventory"),
                           os.path.join(workdir, "play.yml")], env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit("%s run failed:\n%s%s" % (callback, proc.stdout[-2000:], proc.stderr[-2000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def bench_playbook(repeat, forks):
    with tempfile.TemporaryDirectory(prefix="v2kvm-bench-") as workdir:
        with open(os.path.join(workdir, "inventory"), "w") as fh:
            fh.write("[vms]\n")
            for i in range(100):
                fh.write("vm%03d ansible_connection=local ansible_python_interpreter=%s\n" % (i, sys.executable))
        tasks = [{"name": "trivial %d" % n, "ansible.builtin.debug": {"msg": "step %d" % n}} for n in range(10)]
        with open(os.path.join(workdir, "play.yml"), "w") as fh:
            json.dump([{"hosts": "vms", "gather_facts": False, "tasks": tasks}], fh)
        runs = {"ansible.builtin.default": [], "v2kvm.migrate.dashboard": []}
        # Interleaved, so a machine that gets busier during the benchmark weighs on both sides alike.
        for _attempt in range(repeat):
            for callback, results in runs.items():
                results.append(run_playbook(workdir, callback, forks))
    default, dashboard = runs["ansible.builtin.default"], runs["v2kvm.migrate.dashboard"]

    def median(values, index):
        return statistics.median(value[index] for value in values)

    print("100 hosts x 10 tasks, forks %d, %d runs each: wall median default %.2f s, dashboard %.2f s, "
          "ratio %.3f (best %.2f / %.2f s, ratio %.3f); CPU median %.2f / %.2f s, ratio %.3f (goal <= 1.05)"
          % (forks, repeat, median(default, 0), median(dashboard, 0), median(dashboard, 0) / median(default, 0),
             min(d[0] for d in default), min(d[0] for d in dashboard),
             min(d[0] for d in dashboard) / min(d[0] for d in default),
             median(default, 1), median(dashboard, 1), median(dashboard, 1) / median(default, 1)))


def bench_frame():
    _ensure_collection_link()
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils._dashboard_view import TerminalView
    from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import MigrationBoard

    board = MigrationBoard()
    hosts = ["vm%04d" % i for i in range(1000)]
    board.apply({"ts": 1.0, "type": "play_start", "hosts": hosts})
    for i, host in enumerate(hosts):
        board.apply({"ts": 2.0, "type": "task_start", "host": host, "task": "Convert", "task_uuid": "u"})
        if i < 900:
            board.apply({"ts": 3.0, "type": "vm_end", "host": host, "verdict": "succeeded"})
        elif i < 950:
            board.apply({"ts": 3.0, "type": "vm_end", "host": host, "verdict": "failed", "msg": "no space"})
        else:
            board.apply({"ts": 3.0, "type": "progress", "host": host, "task_uuid": "u", "stage": "convert",
                         "done": i, "total": 2000, "rate": 9e7, "eta": 12})
    view = TerminalView(board, stream=io.StringIO(), keys=False, size=(200, 60))
    view.draw(4.0)  # warm-up: imports, first layout
    frames = 50
    walls, cpus = [], []
    for n in range(frames):
        wall, cpu = time.perf_counter(), time.process_time()
        view.draw(5.0 + n)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    view.close()  # gives sys.stdout back (the live view redirects it while it runs)
    # CPU time is what the frame costs; wall time also holds whatever else the machine was doing.
    print("one frame with 1000 VMs (200x60 terminal): median %.1f ms CPU, %.1f ms wall (goal <= 20 ms)"
          % (1000 * statistics.median(cpus), 1000 * statistics.median(walls)))


class RecordingTerminal:
    """A terminal stand-in: keeps every write with the time it was made."""

    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append((time.monotonic(), text))
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    def fileno(self):
        raise io.UnsupportedOperation("no descriptor")


class _Host:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class _Task:
    def __init__(self, name, uuid):
        self.name, self._uuid = name, uuid

    def get_name(self):
        return self.name


class _Result:
    def __init__(self, host, task, data):
        self._host, self._task, self._result = host, task, data


def _progress(host, task, seq, total=10 << 30):
    # The rate encodes the sample's sequence number: "%.1f MB/s" of (seq + 1) * 1e5 is unique per VM.
    done = min(total, (seq + 1) * (64 << 20))
    return _Result(host, task, {"ansible_job_id": "j", "started": True, "finished": False, "v2kvm_progress": {
        "ts": time.time(), "stage": "convert", "done": done, "total": total, "rate": (seq + 1) * 100_000,
        "eta": 60, "source": "disk_convert"}})


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ROW = re.compile(r"\b((?:vm|bx)\d{3})\b.*?(\d+\.\d) MB/s")


def bench_latency(vms, seconds, refresh):
    """Progress event -> frame on the (fake) terminal showing it, in real time."""
    _ensure_collection_link()
    for name in ("CI", "JOB_ID", "BUILD_ID", "TF_BUILD"):
        os.environ.pop(name, None)
    os.environ.update(TERM="xterm-256color", COLUMNS="200", LINES="100")
    from ansible_collections.v2kvm.migrate.plugins.callback import dashboard

    screen = RecordingTerminal()
    cb = dashboard.CallbackModule(stream=screen)
    cb._plugin_options = {"mode": "terminal", "line_interval": 10.0, "refresh_interval": refresh,
                          "events_file": None, "summary_file": None, "junit_file": None, "keys": False,
                          "theme": "dark"}
    steady = [_Host("vm%03d" % i) for i in range(vms)]
    bursty = [_Host("bx%03d" % i) for i in range(40)]
    rng = random.Random(7)  # noqa: S311 - jitter of a benchmark schedule, not a secret
    convert = _Task("Convert each disk into the pool", "t-convert")
    schedule = []  # (at, order, call, args)
    for host in steady:
        at, seq = rng.uniform(0.2, 1.2), 0
        while at < seconds:
            schedule.append((at, len(schedule), "v2_runner_on_async_poll", (_progress, host, convert, seq)))
            at += 1.0 + rng.uniform(-0.05, 0.15)  # ~1 s polls with the jitter of a loaded worker
            seq += 1
    burst_seq = dict.fromkeys((h.name for h in bursty), 0)
    task = convert
    for number, burst in enumerate(range(5, int(seconds), 5)):
        if number % 2:  # the previous task ends on every burst VM and the next one starts
            previous, task = task, _Task("Burst task %d" % number, "t-burst-%d" % number)
        for index, host in enumerate(bursty):
            at = burst + index * 0.0005  # 40 progress events (and as many results and starts) within 20 ms
            if number % 2:
                schedule.append((at, len(schedule), "v2_runner_on_ok",
                                 (lambda h, t: _Result(h, t, {"changed": True}), host, previous)))
                schedule.append((at + 0.0001, len(schedule), "v2_runner_on_start", (None, host, task)))
            schedule.append((at + 0.0002, len(schedule), "v2_runner_on_async_poll",
                             (_progress, host, task, burst_seq[host.name])))
            burst_seq[host.name] += 1
    schedule.sort(key=lambda entry: entry[:2])

    cb.v2_playbook_on_start(type("Playbook", (), {"_file_name": "bench.yml"})())
    for host in steady + bursty:
        cb.v2_runner_on_start(host, convert)
    sent = []  # (monotonic time, host, seq)
    origin = time.monotonic()
    for at, _order, method, (factory, host, task, *rest) in schedule:
        delay = origin + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if method == "v2_runner_on_async_poll":
            sent.append((time.monotonic(), host.name, rest[0]))
            cb.v2_runner_on_async_poll(factory(host, task, rest[0]))
        elif method == "v2_runner_on_ok":
            cb.v2_runner_on_ok(factory(host, task))
        else:
            cb.v2_runner_on_start(host, task)
    renders = cb._view.renders
    cb._view.close()  # gives sys.stdout back (the live view redirects it while it runs)

    shown = {}  # host -> [(time, newest seq visible)]
    for at, text in screen.writes:
        for line in _ANSI.sub("", text).splitlines():
            match = _ROW.search(line)
            if match:
                seq = round(float(match.group(2)) * 10) - 1
                shown.setdefault(match.group(1), []).append((at, seq))
    latencies, never = [], 0
    for at, host, seq in sent:
        seen = [t for t, newest in shown.get(host, ()) if newest >= seq and t >= at]
        if seen:
            latencies.append(min(seen) - at)
        else:
            never += 1
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    print("progress -> visible, %d VMs at 1 Hz + bursts of 40, %.0f s, refresh_interval %.1f s: %d samples, "
          "p50 %.0f ms, p95 %.0f ms, max %.0f ms, never shown %d; %d frames (goal p95 <= 1000 ms)"
          % (vms, seconds, refresh, len(sent), pct(0.5), pct(0.95), latencies[-1] * 1000, never, renders))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--vms", type=int, default=8, help="VMs sending progress at 1 Hz (latency part)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the latency part")
    parser.add_argument("--refresh", type=float, default=0.5, help="the callback's refresh_interval")
    parser.add_argument("--frame-only", action="store_true")
    parser.add_argument("--skip-playbook", action="store_true")
    args = parser.parse_args()
    bench_frame()
    if args.frame_only:
        return
    bench_latency(args.vms, args.seconds, args.refresh)
    if not args.skip_playbook:
        bench_playbook(args.repeat, args.forks)


if __name__ == "__main__":
    main()
