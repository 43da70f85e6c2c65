"""Console judging: first decisive line wins, escape codes ignored, only this boot is read."""

import pytest

from ansible_collections.v2kvm.migrate.plugins.module_utils import _serial_verdict as sv

SUCCESS, FAILURES = sv.compile_patterns(sv.DEFAULT_SUCCESS_PATTERN, sv.DEFAULT_FAILURE_PATTERNS)


def test_success_line_is_reported_without_escape_codes():
    text = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\nBooting from Hard Disk...\r\nV2KVM-BOOT-OK web01\r\nV2KVM-TICK 1\n"
    verdict = sv.judge(text, SUCCESS, FAILURES)
    assert verdict == {"booted": True, "reason": "console shows the success pattern",
                       "matched_line": "V2KVM-BOOT-OK web01"}


def test_panic_is_a_failure_naming_the_line():
    text = "[    1.2] Run /init as init process\n[    1.3] Kernel panic - not syncing: No working init found.\n"
    verdict = sv.judge(text, SUCCESS, FAILURES)
    assert verdict["booted"] is False and "Kernel panic - not syncing" in verdict["reason"]


def test_first_decisive_line_wins_and_half_lines_wait():
    assert sv.judge("debian login:\nKernel panic\n", SUCCESS, FAILURES)["booted"] is True
    assert sv.judge("No bootable device.\ndebian login:\n", SUCCESS, FAILURES)["booted"] is False
    assert sv.judge("V2KVM-BOOT", SUCCESS, FAILURES) is None
    assert sv.judge("still booting\n", SUCCESS, FAILURES, final=True) is None
    assert sv.judge("debian login: ", SUCCESS, FAILURES, final=True)["booted"] is True


def test_bad_regex_names_the_option():
    with pytest.raises(sv.PatternError, match="failure_patterns entry"):
        sv.compile_patterns("ok", ["("])
    with pytest.raises(sv.PatternError, match="success_pattern"):
        sv.compile_patterns("(", [])


def test_console_log_reads_only_after_the_mark_and_restarts_on_truncation(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("V2KVM-BOOT-OK old boot\n")
    console = sv.ConsoleLog(str(log))
    console.mark()
    with open(log, "a") as handle:
        handle.write("Kernel panic - this boot\n")
    assert console.read() == "Kernel panic - this boot\n"
    log.write_text("new\n")  # truncated and rewritten, as libvirt's append='off' does
    assert console.read() == "new\n"


def test_tail_keeps_the_last_non_empty_lines():
    text = "".join("line %d\n\n" % i for i in range(30))
    assert sv.tail(text) == ["line %d" % i for i in range(10, 30)]
