"""`make bench` runs the benchmarks under bench/ (the quickest one end to end here; the others take minutes)."""

import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _make_bench(bench):
    return subprocess.run(["make", "-s", "bench", "BENCH=%s" % bench], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)


def test_make_bench_lists_every_benchmark_file():
    listed = _make_bench("list")
    assert listed.returncode == 0, listed.stderr
    files = sorted(name[len("bench_"):-len(".py")] for name in os.listdir(os.path.join(REPO, "bench"))
                   if name.startswith("bench_") and name.endswith(".py"))
    assert listed.stdout.split() == files


def test_make_bench_runs_a_benchmark_and_prints_its_ratio():
    run = _make_bench("placement")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "== bench placement" in run.stdout and "ratio" in run.stdout


def test_an_unknown_benchmark_is_refused_naming_the_choices():
    run = _make_bench("nope")
    assert run.returncode != 0
    assert "no benchmark named 'nope'" in run.stderr and "placement" in run.stderr
