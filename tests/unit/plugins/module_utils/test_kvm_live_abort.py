"""What live_migrate reports when its time limit comes and libvirt does not abort the job.

A real libvirt cannot be made to refuse an abort on demand (the live-migration tests abort real jobs), so
the domain here is a stand-in whose migration runs on a clock the test controls."""

import threading

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.v2kvm.migrate.plugins.module_utils import _kvm_migration as mig  # noqa: E402


def libvirt_error(message):
    """A libvirtError saying ``message``: libvirt-python takes the thread's last libvirt error instead when
    there is one (an earlier test's failed connection), so that is cleared first."""
    libvirt.virResetLastError()
    return libvirt.libvirtError(message)


class StubbornDomain:
    """A source domain whose migration lasts ``seconds`` and whose abortJob does ``abort``; with
    ``complete_after`` the migration completes once that many aborts were asked (so the test waits for the
    aborts themselves, not for a clock a loaded machine can outrun)."""

    def __init__(self, seconds, abort, complete_after=None):
        self.finished = threading.Event()
        self.completed = threading.Event()
        self.seconds = seconds
        self.abort = abort
        self.complete_after = complete_after
        self.aborts = 0

    def name(self):
        return "web01"

    def migrateToURI3(self, uri, params, flags):
        # Ends at the latest after ``seconds``; by an obeyed abort (finished) it ends as cancelled.
        if self.completed.wait(self.seconds) and self.finished.is_set():
            raise libvirt_error("operation aborted: migration out job: canceled by client")

    def jobStats(self, flags):
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "data_processed": 1, "data_total": 2}

    def abortJob(self):
        self.aborts += 1
        if self.complete_after and self.aborts >= self.complete_after:
            self.completed.set()
        if self.abort == "refuse":
            raise libvirt_error("Timed out during operation: cannot acquire state change lock")
        if self.abort == "obey":
            self.finished.set()
            self.completed.set()

    def isActive(self):
        return True


def test_a_refused_abort_is_reported_with_libvirts_reason_when_the_job_completes():
    dom = StubbornDomain(60, "refuse", complete_after=2)
    outcome = mig.live_migrate(dom, "qemu+tcp://h3/system", {"timeout": 0.2}, poll=0.05)
    assert dom.aborts >= 2, "the abort is asked again at every poll"
    assert outcome["abort_missed"].startswith("timeout of 0 s reached, but the migration completed")
    assert "cannot acquire state change lock" in outcome["abort_missed"]


def test_an_accepted_abort_that_the_job_outruns_is_reported_too():
    dom = StubbornDomain(60, "ignore", complete_after=1)
    outcome = mig.live_migrate(dom, "qemu+tcp://h3/system", {"timeout": 0.2}, poll=0.05)
    assert "libvirt accepted the abort, but the job went on" in outcome["abort_missed"]


def test_an_obeyed_abort_fails_and_says_the_guest_stays_on_the_source():
    dom = StubbornDomain(30, "obey")
    with pytest.raises(mig.MigrationFailed, match="aborted .*timeout of 0 s reached.*keeps running on the source"):
        mig.live_migrate(dom, "qemu+tcp://h3/system", {"timeout": 0.2}, poll=0.05)


def test_a_migration_within_its_time_limit_reports_no_missed_abort():
    outcome = mig.live_migrate(StubbornDomain(0.1, "refuse"), "qemu+tcp://h3/system", {"timeout": 5}, poll=0.05)
    assert "abort_missed" not in outcome
