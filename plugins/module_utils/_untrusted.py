# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text from a source or a remote host, made safe to show anywhere.

A tar member name, an OVF or vCenter VM name, a libvirt error: any of them may carry ESC
sequences, CR/LF that start a fake line in line mode, bidi overrides that reverse what a
reader sees, or characters XML 1.0 cannot hold (JUnit). ``untrusted`` escapes every
non-printable character the way Python's repr does, and keeps printable Unicode as it is.
"""

from __future__ import annotations

# Messages list files, members and VMs: a hostile export can hold 10 000 of them.
LISTING_LIMIT = 10


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def untrusted(text) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``).

    Backslashes stay as they are: the result is for people to read, not to be decoded back.
    """
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def untrusted_lines(text) -> str:
    """Like ``untrusted`` but keeps line breaks: for multi-line text our own code wrote (a log tail)."""
    text = text if isinstance(text, str) else str(text)
    return "\n".join(untrusted(line) for line in text.split("\n"))


def listing(names, limit: int = LISTING_LIMIT) -> str:
    """``a, b, c and 9990 more``: at most ``limit`` names, each escaped."""
    names = [untrusted(name) for name in names]
    if len(names) <= limit:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)


def neutral(value):
    """A JSON-able value (an event, a result) with every string in it escaped; keys too."""
    if isinstance(value, str):
        return untrusted(value)
    if isinstance(value, dict):
        return {neutral(key): neutral(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [neutral(item) for item in value]
    return value
