# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two faces of the dashboard callback over one MigrationBoard, each a sink of the event source.

LineView prints plain lines (CI, AWX, pipes). TerminalView draws a Rich screen from the caller's
thread only; a key-reader thread just reads the terminal and sets flags (it never writes, so nothing
touches the terminal while Ansible forks). All user text goes in through ``Text(...)``, never markup.
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._event_sink import EventSink
from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import (
    FAILED, PENDING, RUNNING, SUCCEEDED, MigrationBoard, human_bytes, human_seconds, mb_per_s)

ICONS = {PENDING: "…", RUNNING: "▶", SUCCEEDED: "✔", FAILED: "✖"}
THEMES = {
    "dark": {"header": "bold white on dark_blue", "footer": "black on grey70", "ok": "green", "bad": "bold red",
             "run": "cyan", "dim": "grey62", "bar": "cyan", "bar_done": "green", "border": "blue",
             "bar_back": "grey23"},
    "light": {"header": "bold black on light_sky_blue1", "footer": "white on grey35", "ok": "dark_green",
              "bad": "red3", "run": "blue", "dim": "grey35", "bar": "blue", "bar_done": "dark_green",
              "border": "grey50", "bar_back": "grey82"},
}


_BAR_WIDTH = 20
CLOCK_REDRAW = 1.0  # seconds: how stale the elapsed times may get while nothing else changes
# (title, width or 0 for a share of what is left, right-aligned)
_COLUMNS = (("VM", 0, False), ("src", 5, False), ("", 1, False), ("stage", 0, False),
            ("progress", _BAR_WIDTH + 7, False), ("MB/s", 10, True), ("elapsed", 8, True), ("ETA", 8, True),
            ("error", 0, False))
_FIXED_WIDTH = sum(width for _name, width, _right in _COLUMNS)
_UNPRINTABLE = dict.fromkeys(range(32), " ")


def _fit(value: str, width: int, right: bool = False) -> str:
    """Exactly ``width`` cells: control characters blanked, cut with an ellipsis, padded."""
    value = value.translate(_UNPRINTABLE)
    if not value.isascii():
        from rich.cells import cell_len, set_cell_size

        if cell_len(value) > width:
            return set_cell_size(value, max(0, width - 1)) + "…" if width else ""
        return set_cell_size(value, width) if not right else " " * (width - cell_len(value)) + value
    if len(value) > width:
        return value[:max(0, width - 1)] + "…" if width else ""
    return value.rjust(width) if right else value.ljust(width)


def _vm_widths(inner: int, labels, stages) -> dict:
    """Column widths: the VM and stage columns take what their longest shown text needs (task names are
    the stage most of the time, and read badly cut), within a share each; the error gets the rest."""
    flexible = max(24, inner - _FIXED_WIDTH - (len(_COLUMNS) - 1))
    vm = min(max([6] + [len(label) for label in labels]), flexible * 3 // 10)
    stage = min(max([12] + [len(stage or "") for stage in stages]), (flexible - vm) * 6 // 10)
    widths = {"VM": vm, "stage": stage, "error": flexible - vm - stage}
    widths.update((name, width) for name, width, _right in _COLUMNS if width)
    return widths


def _append_bar(text, done, total, width, style):
    """The bar Rich's ProgressBar draws (same glyphs), appended as two spans instead of a renderable."""
    halves = int(width * 2 * max(0, min(done, total)) / total)
    full, half = divmod(halves, 2)
    text.append("━" * full + ("╸" if half else ""), style=style["bar_done"] if done >= total else style["bar"])
    remaining = width - full - half
    if remaining:
        text.append(("╺" + "━" * (remaining - 1)) if full and not half else "━" * remaining, style=style["bar_back"])


def _pct(vm) -> str:
    pct = vm.percent
    return "" if pct is None else "%5.1f%%" % pct


def progress_line(vm, now: float) -> str:
    """One plain line about one VM (no escape codes)."""
    parts = [time.strftime("%H:%M:%S", time.localtime(now)), vm.host, ICONS.get(vm.status, "?"), vm.stage or "-"]
    if vm.total:
        parts.append("%s %s/%s" % (_pct(vm).strip(), human_bytes(vm.done), human_bytes(vm.total)))
        parts.append(mb_per_s(vm.rate))
        if vm.done < vm.total:
            parts.append("eta %s" % human_seconds(vm.eta))
    parts.append("elapsed %s" % human_seconds(vm.elapsed(now)))
    if vm.error and vm.status == FAILED:
        parts.append("error: %s" % vm.error.splitlines()[0][:200] if vm.error else "")
    return " ".join(parts)


def metrics_line(metrics: dict) -> str:
    rate = metrics["success_rate"]
    return ("VMs %d: %d succeeded, %d failed, %d active, %d pending; success %s; data %s; avg %s; avg duration %s"
            % (metrics["total"], metrics["succeeded"], metrics["failed"], metrics["active"], metrics["pending"],
               "-" if rate is None else "%.0f%%" % (100 * rate), human_bytes(metrics["data_processed"]),
               mb_per_s(metrics["average_throughput"]), human_seconds(metrics["average_duration"])))


class LineView(EventSink):
    """Plain lines for logs (AWX, CI): one per VM at most every ``interval`` seconds, plus failures and ends.
    Bookkeeping tasks (set_fact, includes, argument checks) get no line: they are never what a VM is doing.

    A task's start line waits until the task shows it runs (its end, a progress sample, or the next heartbeat
    after ``START_GRACE``): Ansible announces a task before it evaluates ``when``, and a skipped task was never
    what the VM did. The line keeps the time the task started."""

    START_GRACE = 0.5

    def __init__(self, board: MigrationBoard, stream, interval: float = 10.0, clock=time.time):
        self.board = board
        self.stream = stream
        self.interval = float(interval)
        self.clock = clock
        self._last_line: dict[str, float] = {}
        self._phase_seen: dict[str, str] = {}
        self._transfers_seen: set = set()
        self._pending_start: dict[str, tuple] = {}  # host -> (task_uuid, ts, text) of a start line not written yet
        self.lines_written = 0

    def _write(self, text):
        self.stream.write(text.replace("\x1b", "?") + "\n")
        self.stream.flush()
        self.lines_written += 1

    def event(self, event):
        kind = event.get("type")
        host = event.get("host")
        now = event.get("ts") or self.clock()
        if kind == "task_start" and host:
            self._pending_start.pop(host, None)
            if not event.get("bookkeeping") and self._due(host, now):
                # Rendered now: by the time it is written, progress may have replaced the task's name.
                self._pending_start[host] = (event.get("task_uuid"), now, progress_line(self.board.vm(host), now))
            return
        if kind == "task_end" and host and event.get("status") == "skipped":
            if self._pending_start.get(host, (None,))[0] == event.get("task_uuid"):
                del self._pending_start[host]
            return
        if host:
            self._write_pending_start(host)
        if kind == "task_end" and host and event.get("phase") and self._phase_seen.get(host) != event["phase"]:
            # A new phase (convert, define, validate...): its first task gets a line whatever the interval,
            # so the log shows every step of every VM.
            self._phase_seen[host] = event["phase"]
            self._last_line.pop(host, None)
        elif kind == "progress" and host and (self._first_sample(host, event)
                                              or (event.get("stage") in ("done", "failed") and event.get("total"))):
            # Likewise the first and the last sample of each transfer (each disk): the log shows it began, its
            # size, and how it ended and how fast it went, even when it took less than the interval.
            self._last_line.pop(host, None)
        if kind == "progress" and host:
            if self._due(host, now):
                self._last_line[host] = now
                self._write(progress_line(self.board.vm(host), now))
        elif kind == "task_end" and event.get("status") in ("failed", "unreachable") and host:
            self._write("%s %s FAILED %s: %s" % (time.strftime("%H:%M:%S", time.localtime(now)), host,
                                                 event.get("task") or "", (event.get("msg") or "").strip()))
        elif kind == "vm_end" and host:
            self._write(progress_line(self.board.vm(host), now))
        elif kind == "run_end":
            for pending_host in list(self._pending_start):
                self._write_pending_start(pending_host)
            self._write(metrics_line(self.board.metrics(now)))

    def _due(self, host, now) -> bool:
        last = self._last_line.get(host)
        return last is None or now - last >= self.interval

    def _write_pending_start(self, host):
        pending = self._pending_start.pop(host, None)
        if pending is not None:
            self._last_line[host] = pending[1]
            self._write(pending[2])

    def _first_sample(self, host, event) -> bool:
        key = (host, event.get("task_uuid"), event.get("item"))
        if key in self._transfers_seen:
            return False
        self._transfers_seen.add(key)
        return True

    def tick(self):
        """Nothing is ever pending: each line is written when its event arrives."""

    def beat(self):
        """Between events: a line for each VM whose task still runs and has had none for ``interval``,
        so a long task without progress (booting a guest to validate it) still shows in the log."""
        now = self.clock()
        for host, (_uuid, started, _text) in list(self._pending_start.items()):
            if now - started >= self.START_GRACE:
                self._write_pending_start(host)
        for vm in self.board.vms.values():
            if vm.host in self._pending_start:
                continue  # its task may still turn out skipped
            if vm.busy and now - self._last_line.get(vm.host, float("-inf")) >= self.interval:
                self._last_line[vm.host] = now
                self._write(progress_line(vm, now))

    def close(self):
        self.stream.flush()

    def discard(self):
        """Stop without a closing line (the callback is setting the view up again)."""
        self.stream.flush()


class _KeyReader(threading.Thread):
    """Reads single keys from the controlling terminal; only sets flags on the view."""

    def __init__(self, view, fd):
        super().__init__(name="v2kvm-dashboard-keys", daemon=True)
        self.view = view
        self.fd = fd
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                ready = select.select([self.fd], [], [], 0.2)[0]
                if not ready:
                    continue
                data = os.read(self.fd, 1)
            except OSError:
                return
            if not data:
                return
            self.view.key(data.decode("latin-1"))


class TerminalView(EventSink):
    def __init__(self, board: MigrationBoard, stream, refresh_interval: float = 0.5, theme: str = "dark",
                 keys: bool = True, on_quit=None, clock=time.time, size=None):
        from rich.console import Console
        from rich.live import Live

        self.board = board
        self.clock = clock
        self.refresh_interval = float(refresh_interval)
        self.theme = theme if theme in THEMES else "dark"
        self.focus = "migrations"
        self.on_quit = on_quit
        self.renders = 0
        self._last_render = 0.0
        self._dirty_keys = False
        self.pending = False  # the board changed since the last frame
        self.quitting = False
        width, height = size if size else (None, None)
        self.console = Console(file=stream, markup=False, highlight=False, emoji=False, width=width, height=height,
                               force_terminal=True if size else None)
        # auto_refresh=False: no refresh thread; every draw happens in the thread that delivers events.
        self.live = Live(console=self.console, auto_refresh=False, redirect_stdout=True, redirect_stderr=True,
                         vertical_overflow="crop", transient=False)
        self._live_started = False
        self._keys = None
        self._saved_tty = None
        if keys:
            self._start_keys()

    # -- keys ------------------------------------------------------------------------------------

    def _start_keys(self):
        try:
            import termios
            import tty

            fd = os.open("/dev/tty", os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)
            self._saved_tty = (fd, termios.tcgetattr(fd))
            tty.setcbreak(fd)
        except (OSError, ImportError, Exception):  # no controlling terminal: no keys
            self._saved_tty = None
            return
        self._keys = _KeyReader(self, fd)
        self._keys.start()

    def _stop_keys(self):
        if self._keys is not None:
            self._keys.stop.set()
            self._keys.join(1)
            self._keys = None
        if self._saved_tty is not None:
            import termios

            fd, attrs = self._saved_tty
            try:
                termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
            finally:
                os.close(fd)
            self._saved_tty = None

    def key(self, char: str):
        """Called from the key thread: change state only; the next event draws it."""
        char = char.lower()
        if char == "q" and not self.quitting:
            self.quitting = True
            self.board._note(self.clock(), "", "q pressed: stopping the run (work in flight is cancelled)")
            if self.on_quit:
                self.on_quit()
        elif char == "d":
            self.theme = "light" if self.theme == "dark" else "dark"
        elif char == "l":
            self.focus = "log"
        elif char == "m":
            self.focus = "migrations"
        elif char != "r":
            return
        self._dirty_keys = True

    # -- drawing ---------------------------------------------------------------------------------

    def event(self, event):
        """Draw now if the last frame is at least ``refresh_interval`` old, else leave the frame pending:
        the next event draws it (see docs/dashboard.md for the bound this gives)."""
        self.pending = True
        now = self.clock()
        urgent = event.get("type") in ("play_start", "run_end") or self._dirty_keys
        if urgent or now - self._last_render >= self.refresh_interval:
            self.draw(now)

    def tick(self):
        """An event that changes nothing: draw a pending frame (or a key's effect) once it is due."""
        if not (self.pending or self._dirty_keys):
            return
        now = self.clock()
        if self._dirty_keys or now - self._last_render >= self.refresh_interval:
            self.draw(now)

    def beat(self):
        """Between events: draw a pending frame or a key once due, and redraw at least every second
        while the run goes on, so elapsed times advance and the last burst of events shows."""
        if not self._live_started:
            return
        now = self.clock()
        if now - self._last_render >= CLOCK_REDRAW and self.board.run_finished is None:
            self.draw(now)
        else:
            self.tick()

    def draw(self, now=None):
        now = self.clock() if now is None else now
        if not self._live_started:
            self.live.start()
            self._live_started = True
        self._dirty_keys = False
        self.pending = False
        self.live.update(self.render(now), refresh=True)
        self._last_render = now
        self.renders += 1

    def close(self):
        self._stop_keys()
        if self._live_started:
            self.live.update(self.render(self.clock(), final=True), refresh=True)
            self.live.stop()

    def discard(self):
        """Stop reading keys and drawing, without a final frame (the callback sets a new view up)."""
        self._stop_keys()
        if self._live_started:
            self.live.stop()

    def render(self, now: float, final: bool = False):
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        style = THEMES[self.theme]
        height = self.console.size.height
        width = self.console.size.width
        inner = max(20, width - 4)  # a panel's borders and its one-cell padding on each side
        header = Text(" v2kvm.migrate dashboard  %s  %s " % (
            self.board.playbook or "", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))), style=style["header"])
        header.truncate(width, overflow="ellipsis", pad=True)

        metrics_panel = Panel(self._metrics_text(now, inner, style), title="metrics", border_style=style["border"],
                              height=4)
        budget = max(6, height - 1 - 1 - 4)  # header, footer, metrics
        vm_share = 0.7 if self.focus == "migrations" else 0.3
        vm_height = max(4, int(budget * vm_share))
        log_height = max(3, budget - vm_height)
        vm_panel = Panel(self._vm_text(now, vm_height - 3, inner, style), title="migrations", height=vm_height,
                         border_style=style["run"] if self.focus == "migrations" else style["border"])
        log_panel = Panel(self._log_text(log_height - 2, style), title="events", height=log_height,
                          border_style=style["run"] if self.focus == "log" else style["border"])
        last = self.board.last_update
        footer = Text(" last event %s   q quit  r refresh  l log  m migrations  d dark/light  %s" % (
            time.strftime("%H:%M:%S", time.localtime(last)) if last else "-",
            ("(interrupted)" if self.board.interrupted else "(finished)") if final
            else ("(stopping...)" if self.quitting else "")), style=style["footer"])
        footer.truncate(width, overflow="ellipsis", pad=True)
        return Group(header, vm_panel, metrics_panel, log_panel, footer)

    def _metrics_text(self, now, inner, style):
        from rich.text import Text

        metrics = self.board.metrics(now)
        rate = metrics["success_rate"]
        err = metrics["error_rate"]
        cell = max(1, (inner - 2 * 4) // 5)
        rows = (
            (("active %d" % metrics["active"], style["run"]), ("total %d" % metrics["total"], ""),
             ("succeeded %d" % metrics["succeeded"], style["ok"]),
             ("failed %d" % metrics["failed"], style["bad"] if metrics["failed"] else style["dim"]),
             ("success rate %s" % ("-" if rate is None else "%.1f%%" % (100 * rate)), "")),
            (("avg throughput %s" % mb_per_s(metrics["average_throughput"]), ""),
             ("data %s" % human_bytes(metrics["data_processed"]), ""),
             ("avg duration %s" % human_seconds(metrics["average_duration"]), ""),
             ("error rate %s" % ("-" if err is None else "%.1f%%" % (100 * err)), ""),
             ("elapsed %s" % human_seconds(metrics["elapsed"]), "")),
        )
        text = Text(no_wrap=True, overflow="crop")
        for index, row in enumerate(rows):
            if index:
                text.append("\n")
            for column, (value, cell_style) in enumerate(row):
                if column:
                    text.append("  ")
                text.append(_fit(value, cell), style=cell_style)
        return text

    def _vm_text(self, now, rows, inner, style):
        """The migrations table as plain lines of fixed-width cells: a Rich Table (with a nested grid per
        progress bar) costs ~20x more to lay out, and 1000 VMs must draw within the frame budget."""
        from rich.text import Text

        running, failed, succeeded, pending = [], [], [], []
        by_status = {RUNNING: running, FAILED: failed, SUCCEEDED: succeeded, PENDING: pending}
        for vm in self.board.vms.values():
            by_status.get(vm.status, pending).append(vm)
        running.sort(key=lambda vm: vm.started or 0)
        failed.sort(key=lambda vm: -(vm.finished or 0))
        rows = max(1, rows - 1)  # keep one line for the collapsed counts
        if len(self.board.vms) <= rows:  # small runs show everyone
            shown = running + failed + sorted(succeeded, key=lambda vm: vm.finished or 0) + pending
        else:
            shown = running[:rows]
            shown += failed[:max(0, rows - len(shown))]
        labels = [vm.host if vm.display_name in ("", vm.host) else "%s (%s)" % (vm.host, vm.display_name)
                  for vm in shown]
        widths = _vm_widths(inner, labels, [vm.stage for vm in shown])
        text = Text(no_wrap=True, overflow="crop")
        text.append(" ".join(_fit(name, widths[name], right) for name, _width, right in _COLUMNS), style="bold")
        icon_styles = {RUNNING: style["run"], FAILED: style["bad"], SUCCEEDED: style["ok"]}
        for vm, label in zip(shown, labels):
            active = vm.status == RUNNING
            text.append("\n")
            text.append(_fit(label, widths["VM"]))
            text.append(" " + _fit(vm.source_type or "-", widths["src"]) + " ")
            text.append(ICONS.get(vm.status, "?"), style=icon_styles.get(vm.status, style["dim"]))
            text.append(" " + _fit(vm.stage or "-", widths["stage"]) + " ")
            if vm.total:
                _append_bar(text, vm.done, vm.total, _BAR_WIDTH, style)
                text.append(" " + _pct(vm).rjust(6))
            else:
                text.append(" " * widths["progress"])
            text.append(" " + _fit(mb_per_s(vm.rate) if active else "-", widths["MB/s"], True))
            text.append(" " + _fit(human_seconds(vm.elapsed(now)), widths["elapsed"], True))
            text.append(" " + _fit(human_seconds(vm.eta) if active else "-", widths["ETA"], True) + " ")
            if vm.error:
                text.append(_fit(vm.error.splitlines()[0] if vm.error.strip() else "", widths["error"]),
                            style=style["bad"])
        counts = collections.Counter(vm.status for vm in shown)
        hidden = ((SUCCEEDED, len(succeeded) - counts[SUCCEEDED], "%s %d succeeded"),
                  (FAILED, len(failed) - counts[FAILED], "%s %d more failed"),
                  (RUNNING, len(running) - counts[RUNNING], "%s %d more running"),
                  (PENDING, len(pending) - counts[PENDING], "%s %d pending"))
        parts = [template % (ICONS[status], count) for status, count, template in hidden if count]
        if parts:
            text.append("\n")
            text.append(_fit("  ".join(parts), inner), style=style["dim"])
        return text

    def _log_text(self, lines, style):
        from rich.text import Text

        text = Text()
        entries = list(self.board.log)[-max(1, lines):]
        for index, (ts, host, message) in enumerate(entries):
            if index:
                text.append("\n")
            text.append(time.strftime("%H:%M:%S ", time.localtime(ts)), style=style["dim"])
            if host:
                text.append(host + " ", style=style["run"])
            text.append(message.splitlines()[0] if message else "",
                        style=style["bad"] if "FAILED" in message or message.endswith(" failed") else "")
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text
