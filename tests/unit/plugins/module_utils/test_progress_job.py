"""One progress-job lifecycle: a final sample always, SIGTERM as Interrupted, the handler restored."""

import json
import os
import signal

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_job import Interrupted, ProgressJob


def samples(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_a_job_that_ends_normally_writes_done_with_its_last_bytes(tmp_path):
    path = str(tmp_path / "p.jsonl")
    with ProgressJob(path) as job:
        job.update("convert", 10, 100)
        job.update("convert", 100, 100)
    lines = samples(path)
    assert lines[-1]["stage"] == "done" and lines[-1]["done"] == 100 and lines[-1]["total"] == 100
    assert [line["stage"] for line in lines].count("done") == 1


def test_a_job_that_raises_writes_failed_and_lets_the_exception_through(tmp_path):
    path = str(tmp_path / "p.jsonl")
    with pytest.raises(RuntimeError):
        with ProgressJob(path) as job:
            job.update("convert", 40, 100)
            raise RuntimeError("qemu-img died")
    last = samples(path)[-1]
    assert last["stage"] == "failed" and last["done"] == 40


def test_exit_json_is_success_and_fail_json_is_failure(tmp_path):
    for code, stage in ((0, "done"), (1, "failed")):
        path = str(tmp_path / ("p%d.jsonl" % code))
        with pytest.raises(SystemExit):
            with ProgressJob(path) as job:
                job.update("copy", 5, 5)
                raise SystemExit(code)
        assert samples(path)[-1]["stage"] == stage


def test_an_explicit_finish_is_the_last_sample(tmp_path):
    path = str(tmp_path / "p.jsonl")
    with ProgressJob(path) as job:
        job.update("boot: login:")
        job.finish(False, 0, 0)
        job.update("ignored", 1, 1)
    lines = samples(path)
    assert lines[-1]["stage"] == "failed" and all(line["stage"] != "ignored" for line in lines)


def test_sigterm_raises_interrupted_inside_and_the_previous_handler_is_back_after(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        path = str(tmp_path / "p.jsonl")
        with pytest.raises(Interrupted):
            with ProgressJob(path) as job:
                job.update("convert", 1, 10)
                os.kill(os.getpid(), signal.SIGTERM)
        assert samples(path)[-1]["stage"] == "failed"
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the test's own handler again, not raised
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_without_a_progress_file_nothing_is_written_but_sigterm_still_stops(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted):
        with ProgressJob(None) as job:
            assert not job.reporting
            job.update("convert", 1, 10)
            os.kill(os.getpid(), signal.SIGTERM)
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_once_ignores_a_second_sigterm_during_clean_up(tmp_path):
    cleaned = []
    with ProgressJob(None, stop_once=True):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Interrupted:
            os.kill(os.getpid(), signal.SIGTERM)  # ignored: the clean-up runs to its end
            cleaned.append(True)
    assert cleaned == [True]


def test_ignore_stop_shields_the_last_steps(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with ProgressJob(None) as job:
        job.ignore_stop()
        os.kill(os.getpid(), signal.SIGTERM)  # must not raise
    assert signal.getsignal(signal.SIGTERM) is before
