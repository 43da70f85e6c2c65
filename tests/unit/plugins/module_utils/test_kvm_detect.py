"""KVM detection: cheap checks short-circuit to TCG, and the verdict is cached per host boot."""

from ansible_collections.v2kvm.migrate.plugins.module_utils import _kvm_detect as kd


class FakeConn:
    def __init__(self, kvm=True):
        self.kvm = kvm
        self.capability_calls = 0

    def getDomainCapabilities(self, *args):
        self.capability_calls += 1
        if not self.kvm:
            raise RuntimeError("invalid argument: KVM is not supported")
        return "<domainCapabilities/>"

    def getHostname(self):
        return "host1"

    def getURI(self):
        return "qemu:///system"

    def getLibVersion(self):
        return 9000000

    def getVersion(self):
        return 7002000


def test_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse2 hypervisor\n")
    ok, detail = kd.check_cpu_flags(str(cpuinfo))
    assert not ok and "neither vmx nor svm" in detail and "nested" in detail
    cpuinfo.write_text("flags : fpu vmx sse2\n")
    assert kd.check_cpu_flags(str(cpuinfo)) == (True, "CPU flag vmx present")


def test_missing_dev_kvm(tmp_path):
    ok, detail = kd.check_dev_kvm(str(tmp_path / "kvm"))
    assert not ok and "cannot be opened" in detail


def test_remote_host_without_kvm_gets_qemu_and_the_answer_is_cached(tmp_path):
    conn = FakeConn(kvm=False)
    first = kd.detect_domain_type(conn, local=False, cache_dirs=(str(tmp_path),))
    assert first["domain_type"] == "qemu" and first["cached"] is False
    assert "KVM is not supported" in first["reason"]
    second = kd.detect_domain_type(conn, local=False, cache_dirs=(str(tmp_path),))
    assert second["cached"] is True and second["domain_type"] == "qemu"
    assert conn.capability_calls == 1


def test_remote_host_with_kvm_capability_gets_kvm(tmp_path):
    result = kd.detect_domain_type(FakeConn(kvm=True), local=False, use_cache=False)
    assert result["domain_type"] == "kvm"


def test_check_mode_never_caches_an_unprobed_kvm(tmp_path, monkeypatch):
    monkeypatch.setattr(kd, "check_dev_kvm", lambda: (True, "ok"))
    monkeypatch.setattr(kd, "check_cpu_flags", lambda: (True, "ok"))
    result = kd.detect_domain_type(FakeConn(), local=True, probe=False, cache_dirs=(str(tmp_path),))
    assert result["domain_type"] == "kvm" and "unverified" in result["reason"]
    assert not (tmp_path / kd.CACHE_FILE).exists()


def test_slow_kvm_is_rejected(monkeypatch, tmp_path):
    timings = {"kvm": 1.9, "qemu": 0.15}
    monkeypatch.setattr(kd, "time_to_banner", lambda conn, virt, log_dir, deadline: timings[virt])
    ok, detail, seen = kd.probe_guest_runs(FakeConn(), str(tmp_path))
    assert not ok and "emulated" in detail and seen == timings
    timings["kvm"] = 0.05
    assert kd.probe_guest_runs(FakeConn(), str(tmp_path))[0] is True
