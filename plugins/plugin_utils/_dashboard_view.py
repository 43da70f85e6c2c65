# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two faces of the dashboard callback over one MigrationBoard.

LineView prints plain lines (CI, AWX, pipes). TerminalView draws a Rich screen from the caller's
thread only; a key-reader thread just reads the terminal and sets flags (it never writes, so nothing
touches the terminal while Ansible forks). All user text goes in through ``Text(...)``, never markup.
"""

from __future__ import annotations

import os
import select
import threading
import time

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._migration_events import (
    FAILED, PENDING, RUNNING, SUCCEEDED, MigrationBoard, human_bytes, human_seconds, mb_per_s)

ICONS = {PENDING: "…", RUNNING: "▶", SUCCEEDED: "✔", FAILED: "✖"}
THEMES = {
    "dark": {"header": "bold white on dark_blue", "footer": "black on grey70", "ok": "green", "bad": "bold red",
             "run": "cyan", "dim": "grey62", "bar": "cyan", "bar_done": "green", "border": "blue"},
    "light": {"header": "bold black on light_sky_blue1", "footer": "white on grey35", "ok": "dark_green",
              "bad": "red3", "run": "blue", "dim": "grey35", "bar": "blue", "bar_done": "dark_green",
              "border": "grey50"},
}


def _pct(vm) -> str:
    pct = vm.percent
    return "" if pct is None else "%5.1f%%" % pct


def progress_line(vm, now: float) -> str:
    """One plain line about one VM (no escape codes)."""
    parts = [time.strftime("%H:%M:%S", time.localtime(now)), vm.host, ICONS.get(vm.status, "?"), vm.stage or "-"]
    if vm.total:
        parts.append("%s %s/%s" % (_pct(vm).strip(), human_bytes(vm.done), human_bytes(vm.total)))
        parts.append(mb_per_s(vm.rate))
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


class LineView:
    def __init__(self, board: MigrationBoard, stream, interval: float = 10.0, clock=time.time):
        self.board = board
        self.stream = stream
        self.interval = float(interval)
        self.clock = clock
        self._last_line: dict[str, float] = {}
        self.lines_written = 0

    def _write(self, text):
        self.stream.write(text.replace("\x1b", "?") + "\n")
        self.stream.flush()
        self.lines_written += 1

    def on_event(self, event):
        kind = event.get("type")
        host = event.get("host")
        now = event.get("ts") or self.clock()
        if kind in ("progress", "task_start") and host:
            last = self._last_line.get(host)
            if last is None or now - last >= self.interval:
                self._last_line[host] = now
                self._write(progress_line(self.board.vm(host), now))
        elif kind == "task_end" and event.get("status") in ("failed", "unreachable") and host:
            self._write("%s %s FAILED %s: %s" % (time.strftime("%H:%M:%S", time.localtime(now)), host,
                                                 event.get("task") or "", (event.get("msg") or "").strip()))
        elif kind == "vm_end" and host:
            self._write(progress_line(self.board.vm(host), now))
        elif kind == "run_end":
            self._write(metrics_line(self.board.metrics(now)))

    def close(self):
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


class TerminalView:
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

    def on_event(self, event):
        now = self.clock()
        urgent = event.get("type") in ("play_start", "run_end") or self._dirty_keys
        if urgent or now - self._last_render >= self.refresh_interval:
            self.draw(now)

    def draw(self, now=None):
        now = self.clock() if now is None else now
        if not self._live_started:
            self.live.start()
            self._live_started = True
        self._dirty_keys = False
        self.live.update(self.render(now), refresh=True)
        self._last_render = now
        self.renders += 1

    def close(self):
        self._stop_keys()
        if self._live_started:
            self.live.update(self.render(self.clock(), final=True), refresh=True)
            self.live.stop()

    def render(self, now: float, final: bool = False):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        style = THEMES[self.theme]
        height = self.console.size.height
        width = self.console.size.width
        header = Text(" v2kvm.migrate dashboard  %s  %s " % (
            self.board.playbook or "", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))), style=style["header"])
        header.truncate(width, overflow="ellipsis", pad=True)

        metrics = self.board.metrics(now)
        rate = metrics["success_rate"]
        err = metrics["error_rate"]
        grid = Table.grid(expand=True, padding=(0, 2))
        for _column in range(5):
            grid.add_column()
        grid.add_row(Text("active %d" % metrics["active"], style=style["run"]),
                     Text("total %d" % metrics["total"]),
                     Text("succeeded %d" % metrics["succeeded"], style=style["ok"]),
                     Text("failed %d" % metrics["failed"], style=style["bad"] if metrics["failed"] else style["dim"]),
                     Text("success rate %s" % ("-" if rate is None else "%.1f%%" % (100 * rate))))
        grid.add_row(Text("avg throughput %s" % mb_per_s(metrics["average_throughput"])),
                     Text("data %s" % human_bytes(metrics["data_processed"])),
                     Text("avg duration %s" % human_seconds(metrics["average_duration"])),
                     Text("error rate %s" % ("-" if err is None else "%.1f%%" % (100 * err))),
                     Text("elapsed %s" % human_seconds(metrics["elapsed"])))
        metrics_panel = Panel(grid, title="metrics", border_style=style["border"], height=4)

        budget = max(6, height - 1 - 1 - 4)  # header, footer, metrics
        vm_share = 0.7 if self.focus == "migrations" else 0.3
        vm_height = max(4, int(budget * vm_share))
        log_height = max(3, budget - vm_height)
        vm_panel = Panel(self._vm_table(now, vm_height - 3, style), title="migrations", height=vm_height,
                         border_style=style["run"] if self.focus == "migrations" else style["border"])
        log_panel = Panel(self._log_text(log_height - 2, style), title="events", height=log_height,
                          border_style=style["run"] if self.focus == "log" else style["border"])
        last = self.board.last_update
        footer = Text(" last update %s   q quit  r refresh  l log  m migrations  d dark/light  %s" % (
            time.strftime("%H:%M:%S", time.localtime(last)) if last else "-",
            "(finished)" if final else ("(stopping...)" if self.quitting else "")), style=style["footer"])
        footer.truncate(width, overflow="ellipsis", pad=True)
        return Group(header, vm_panel, metrics_panel, log_panel, footer)

    def _vm_table(self, now, rows, style):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
        table.add_column("VM", no_wrap=True, ratio=3)
        table.add_column("src", no_wrap=True, width=5)
        table.add_column("", width=1, no_wrap=True)
        table.add_column("stage", no_wrap=True, ratio=3)
        table.add_column("progress", no_wrap=True, width=28)
        table.add_column("MB/s", no_wrap=True, justify="right", width=10)
        table.add_column("elapsed", no_wrap=True, justify="right", width=8)
        table.add_column("ETA", no_wrap=True, justify="right", width=8)
        table.add_column("error", no_wrap=True, ratio=4)

        vms = list(self.board.vms.values())
        running = sorted((vm for vm in vms if vm.status == RUNNING), key=lambda vm: vm.started or 0)
        failed = sorted((vm for vm in vms if vm.status == FAILED), key=lambda vm: -(vm.finished or 0))
        succeeded = [vm for vm in vms if vm.status == SUCCEEDED]
        pending = [vm for vm in vms if vm.status == PENDING]
        rows = max(1, rows - 1)  # keep one line for the collapsed counts
        shown = running[:rows]
        shown += failed[:max(0, rows - len(shown))]
        if len(vms) <= rows:  # small runs show everyone
            shown = running + failed + sorted(succeeded, key=lambda vm: vm.finished or 0) + pending
        for vm in shown:
            icon_style = {RUNNING: style["run"], FAILED: style["bad"], SUCCEEDED: style["ok"]}.get(
                vm.status, style["dim"])
            progress = Text("")
            if vm.total:
                progress = Table.grid(padding=(0, 1))
                progress.add_column(width=20)
                progress.add_column(width=6)
                progress.add_row(ProgressBar(total=vm.total, completed=vm.done, width=20,
                                             complete_style=style["bar"], finished_style=style["bar_done"]),
                                 Text(_pct(vm)))
            label = vm.host if vm.name in ("", vm.host) else "%s (%s)" % (vm.host, vm.name)
            table.add_row(Text(label), Text(vm.source_type or "-"), Text(ICONS.get(vm.status, "?"), style=icon_style),
                          Text(vm.stage or "-"), progress, Text(mb_per_s(vm.rate) if vm.status == RUNNING else "-"),
                          Text(human_seconds(vm.elapsed(now))),
                          Text(human_seconds(vm.eta) if vm.status == RUNNING else "-"),
                          Text(vm.error.splitlines()[0] if vm.error else "", style=style["bad"]))
        hidden_running = len(running) - sum(1 for vm in shown if vm.status == RUNNING)
        hidden_failed = len(failed) - sum(1 for vm in shown if vm.status == FAILED)
        hidden_ok = len(succeeded) - sum(1 for vm in shown if vm.status == SUCCEEDED)
        hidden_pending = len(pending) - sum(1 for vm in shown if vm.status == PENDING)
        if hidden_running or hidden_failed or hidden_ok or hidden_pending:
            parts = []
            if hidden_ok:
                parts.append("%s %d succeeded" % (ICONS[SUCCEEDED], hidden_ok))
            if hidden_failed:
                parts.append("%s %d more failed" % (ICONS[FAILED], hidden_failed))
            if hidden_running:
                parts.append("%s %d more running" % (ICONS[RUNNING], hidden_running))
            if hidden_pending:
                parts.append("%s %d pending" % (ICONS[PENDING], hidden_pending))
            table.add_row(Text("  ".join(parts), style=style["dim"]), *([Text("")] * 8))
        return table

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
