# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judge a boot from its serial console text: booted, failed, or still undecided.

Only the console output of the current boot may be fed in (validate reads a log that
libvirt truncates at start, or from the offset it noted before starting), so an old
"login:" can never vouch for a boot that panicked.
"""

from __future__ import annotations

import os
import re

DEFAULT_SUCCESS_PATTERN = r"V2KVM-BOOT-OK|login:"
DEFAULT_FAILURE_PATTERNS = (
    r"Kernel panic",
    r"No bootable device",
    r"Boot failed",
    r"not a bootable disk",
    r"error: no such device",
    r"error: unknown filesystem",
    r"Entering emergency mode",
    r"Give root password for maintenance",
    r"VFS: Unable to mount root fs",
    r"ALERT! .* does not exist",
    r"dracut-initqueue timeout",
    r"INACCESSIBLE_BOOT_DEVICE",
    r"No bootable option or device was found",
)
TAIL_LINES = 20

# Colour, cursor and terminal-reset sequences that firmware and getty sprinkle on the console.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[@-Z\\-_a-z=>])")


class PatternError(ValueError):
    """A success or failure pattern is not a valid regular expression."""


def compile_patterns(success_pattern, failure_patterns):
    try:
        success = re.compile(success_pattern)
    except re.error as exc:
        raise PatternError(
            "success_pattern %r is not a valid regular expression: %s" % (success_pattern, exc)) from None
    failures = []
    for pattern in failure_patterns:
        try:
            failures.append(re.compile(pattern))
        except re.error as exc:
            raise PatternError(
                "failure_patterns entry %r is not a valid regular expression: %s" % (pattern, exc)) from None
    return success, failures


def clean_lines(text):
    """Console text as plain lines: escape sequences and carriage returns removed."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def tail(text, count=TAIL_LINES):
    lines = [line for line in clean_lines(text) if line.strip()]
    return lines[-count:]


def judge(text, success, failures, *, final=False):
    """{"booted": bool, "reason", "matched_line"} for the first decisive line, or None.

    Lines are judged in the order they were printed: a panic after the success marker is a
    failure only if validate is still watching, which is what the caller decides. The last
    line counts only when ``final`` (it may still be half written otherwise).
    """
    lines = clean_lines(text)
    if not final and lines:
        lines = lines[:-1]
    for line in lines:
        for pattern in failures:
            if pattern.search(line):
                return {"booted": False, "reason": "console shows a boot failure: %s" % line.strip(),
                        "matched_line": line.strip()}
        if success.search(line):
            return {"booted": True, "reason": "console shows the success pattern", "matched_line": line.strip()}
    return None


class ConsoleLog:
    """Reads only what the current boot wrote to a serial log file.

    ``mark()`` before starting the guest notes where this boot's output will begin. When the
    file is replaced or truncated (libvirt's append='off'), reading restarts at 0.
    """

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.identity = None

    def _stat(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st

    def mark(self):
        st = self._stat()
        self.offset = st.st_size if st else 0
        self.identity = (st.st_dev, st.st_ino) if st else None

    def read(self):
        st = self._stat()
        if st is None:
            return ""
        if (st.st_dev, st.st_ino) != self.identity or st.st_size < self.offset:
            self.offset = 0
            self.identity = (st.st_dev, st.st_ino)
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")
