"""Cost of the dashboard callback.

1. 100 hosts x 10 trivial tasks with the default stdout callback, then with v2kvm.migrate.dashboard
   (line mode, as under CI; plus the JSON-lines, summary and JUnit reports); prints both wall times
   and their ratio (best of --repeat).
2. One terminal frame of the dashboard with 1000 VMs (50 running, 900 done, 50 failed), in ms.

Run: .venv/bin/python bench/bench_callback.py [--repeat 3] [--forks 20]
"""

import argparse
import io
import json
import os
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
    started = time.perf_counter()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(workdir, "inventory"),
                           os.path.join(workdir, "play.yml")], env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit("%s run failed:\n%s%s" % (callback, proc.stdout[-2000:], proc.stderr[-2000:]))
    return elapsed


def bench_playbook(repeat, forks):
    with tempfile.TemporaryDirectory(prefix="v2kvm-bench-") as workdir:
        with open(os.path.join(workdir, "inventory"), "w") as fh:
            fh.write("[vms]\n")
            for i in range(100):
                fh.write("vm%03d ansible_connection=local ansible_python_interpreter=%s\n" % (i, sys.executable))
        tasks = [{"name": "trivial %d" % n, "ansible.builtin.debug": {"msg": "step %d" % n}} for n in range(10)]
        with open(os.path.join(workdir, "play.yml"), "w") as fh:
            json.dump([{"hosts": "vms", "gather_facts": False, "tasks": tasks}], fh)
        default = min(run_playbook(workdir, "ansible.builtin.default", forks) for _attempt in range(repeat))
        dashboard = min(run_playbook(workdir, "v2kvm.migrate.dashboard", forks) for _attempt in range(repeat))
    print("100 hosts x 10 tasks, forks %d: default %.2f s, dashboard %.2f s, ratio %.2f"
          % (forks, default, dashboard, dashboard / default))


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
    frames = 20
    started = time.perf_counter()
    for n in range(frames):
        view.draw(5.0 + n)
    per_frame = (time.perf_counter() - started) / frames * 1000
    view.close()  # gives sys.stdout back (the live view redirects it while it runs)
    print("one frame with 1000 VMs (200x60 terminal): %.1f ms" % per_frame)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--frame-only", action="store_true")
    args = parser.parse_args()
    bench_frame()
    if not args.frame_only:
        bench_playbook(args.repeat, args.forks)


if __name__ == "__main__":
    main()
