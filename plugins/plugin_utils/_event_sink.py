# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the event source (_ansible_events.AnsibleEventSource) hands its migration events to.

A sink renders events somewhere: the terminal, plain lines, the JSON-lines log, the summary and JUnit
files, the web dashboard. The source calls every method under its lock, from the controller's main
thread or from its fork-safe heartbeat, never both at once; events reach a sink already escaped and
already folded into the source's board.
"""

from __future__ import annotations


class EventSink:
    """Every method does nothing by default: a sink overrides what it needs."""

    def event(self, event: dict) -> None:
        """One migration event (see _migration_events.py for the types)."""

    def tick(self) -> None:
        """An Ansible event that changes nothing on the board: a moment to draw a frame left pending."""

    def beat(self) -> None:
        """The heartbeat between events (never during a fork of the controller)."""

    def close(self) -> None:
        """The run ended (or was interrupted): write what is written at the end, give resources back."""

    def discard(self) -> None:
        """Stop without the end-of-run output: the callback sets its sinks up again (options from play vars)."""
