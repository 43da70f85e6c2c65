# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action-plugin base that runs a long module in the background on its (possibly remote or
delegated) host and forwards the module's progress file to the controller's callbacks while it runs.

Why this shape (see docs/progress-channel.md):

- The module is started with Ansible's own ``async_wrapper`` (``_execute_module(wrap_async=True)``),
  so it runs detached on the target exactly like an ``async:`` task, through any connection plugin
  and under ``become``, with forks > 1, any strategy and ``delegate_to``.
- While it runs, ONE cheap shell round trip per interval (``cat`` of the job file, ``tail -c +N`` of
  the progress file) reads every new JSON line; nothing is parsed on the target and no Python starts
  there, so polling costs milliseconds over a persistent SSH connection.
- Each sample goes to the controller as a ``v2_runner_on_async_poll`` callback through the worker's
  final queue (the same path TaskExecutor uses for async polls), because ansible-core 2.19 dispatches
  only the callback methods CallbackBase declares; ansible-runner/AWX turn it into a
  ``runner_on_async_poll`` job event. The sample is under the result key ``v2kvm_progress``.
- The final result comes from ``async_status`` (so it is decoded exactly as an async task's), the
  job and temporary progress files are removed, and the bookkeeping keys of async are dropped: the
  task result looks like the module's own.

Check mode, a task that sets ``async:`` itself, and connections that cannot run async_wrapper run the
module the plain way (no live progress, same result).
"""

from __future__ import annotations

import json
import shlex
import signal
import time
import uuid

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.v2kvm.migrate.plugins.module_utils._orphan_watch import heartbeat_path
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_sample import PROGRESS_KEY, parse_sample

display = Display()

# Keys that async_wrapper/async_status add around the module's own result.
_ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file", "erased")
_RECORD_SEP = "\x1e"  # never appears in JSON text (control characters are escaped)
_MAX_READ = 256 * 1024  # bytes of progress read per poll; the rest comes on the next poll
_DEFAULT_LIMIT = 7 * 24 * 3600  # async_wrapper kills the job after this many seconds
# Allowed silence of the orphan watchdog. Longer than the poll loop rides out on its own over SSH
# (_MAX_POLL_FAILURES attempts of interval + the 10 s connect timeout, about 330 s with the defaults), so
# a network bounce the controller survives never stops a healthy conversion; an orphaned job still stops
# within 10 minutes instead of running up to v2kvm_progress_time_limit.
_DEFAULT_ORPHAN_TIMEOUT = 600
_MAX_POLL_FAILURES = 30


class ProgressTail:
    """Incremental reader of an append-only JSON-lines file, fed with what ``tail -c +N`` printed.

    ``offset`` counts the bytes of complete lines consumed, so the next read starts after them and a
    line still being written is read again whole next time: no sample is lost or seen twice.
    """

    def __init__(self, offset: int = 0):
        self.offset = offset
        self.bad_lines = 0

    def next_command_offset(self) -> int:
        return self.offset + 1  # tail -c +K starts at byte K, counting from 1

    def feed(self, text: str) -> list[dict]:
        samples = []
        # A transport that still translated newlines (a pty where stty could not run) adds a "\\r" to
        # every line; progress lines never hold a raw "\\r" (JSON escapes it), so dropping it restores
        # the file's bytes. Counting it would push the offset one byte into the next line per line read,
        # cutting the first line of every later read (and with it, at times, the final "done" sample).
        data = text.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n")
        end = data.rfind(b"\n")
        if end < 0:
            return samples
        for raw in data[:end].split(b"\n"):
            self.offset += len(raw) + 1
            sample = parse_sample(raw)
            if sample is None:
                if raw.strip():
                    self.bad_lines += 1
                continue
            samples.append(sample)
        return samples


def job_state(text: str, jid: str) -> str:
    """'running', 'finished' or 'missing' from the first bytes of an async_wrapper job file."""
    text = text.strip()
    if not text:
        return "missing"
    try:
        value = json.loads(text)
    except ValueError:
        # Longer than what was read, or a result async_status will explain: either way not the marker.
        return "finished"
    if isinstance(value, dict) and value.get("finished") is False and value.get("started") \
            and set(value) <= {"started", "finished", "ansible_job_id"} and value.get("ansible_job_id") == jid:
        return "running"
    return "finished"


def poll_command(job_file: str, progress_file: str, offset_1based: int, alive_file: str | None = None,
                 orphan_timeout: int = 0) -> str:
    """Shell text reading the job file FIRST, then the new progress bytes.

    In that order a job seen finished guarantees the progress part holds the module's last line.
    ``stty -onlcr`` first: the ssh connection runs commands on a pty (``-tt``) whose output processing
    turns every "\\n" into "\\r\\n", and the byte offset must count the file's bytes, not the pty's.
    Without a pty stty just fails, silently. With ``alive_file`` the same round trip rewrites the orphan
    watchdog's heartbeat (the allowed silence in seconds): the module stops itself once it stays unchanged.
    """
    beat = ""
    if alive_file and orphan_timeout:
        beat = "{ printf '%%d\\n' %d > %s; } 2>/dev/null; " % (orphan_timeout, shlex.quote(alive_file))
    return ("stty -onlcr 2>/dev/null; %shead -c 512 %s 2>/dev/null; printf '\\036'; "
            "tail -c +%d %s 2>/dev/null | head -c %d" % (
                beat, shlex.quote(job_file), offset_1based, shlex.quote(progress_file), _MAX_READ))


def cancel_command(jid: str, remove: list[str]) -> str:
    """Shell text that stops the background job ``jid`` and removes the files in ``remove``.

    Every process of the job's session gets SIGTERM except async_wrapper's supervisor, which then sees
    its child end and removes the job's tmpdir. Not the process group of the supervised child: the
    supervisor puts its child into a group of its own with ``setpgid`` AFTER forking it, and on a loaded
    host the child has often started the module before that, so the module (and qemu-img under it)
    stayed in the session's first group and a group kill missed it: the conversion ran to its end.
    async_wrapper's ``setsid`` gives the job a session no other process is in, so the session is exact.

    The supervised child is found among the processes whose command line holds ``async_wrapper`` and the
    job id (argv has the id without the ".<pid>" suffix it is reported with): its parent matches too, and
    it is nobody's parent among them (the daemonizing parent may not have exited yet and matches as well).
    Only the child is stopped while the session is listed, so it starts nothing between the listing and
    the kill, and it gets the SIGTERM on SIGCONT. The supervisor must not be stopped: when the module
    leaves, the supervisor's process group can become orphaned, and the kernel then sends SIGHUP to a
    group with stopped members, which would kill the supervisor before it cleans up.
    """
    argv_jid = jid.rsplit(".", 1)[0]
    pattern = shlex.quote("async_wrapper[^ ]* %s " % argv_jid)
    find_child = ('{p[$1]=$2} END {for (x in p) if (index(j, " " x " ") && index(j, " " p[x] " ")) up[p[x]]=1; '
                  'for (x in p) if (index(j, " " x " ") && index(j, " " p[x] " ") && !(x in up)) print x}')
    session_but_parent = ('{p[$1]=$2; s[$1]=$3} END {if (c in p) for (x in p) '
                          'if (s[x] == s[c] && x != p[c]) print x}')
    cmd = ("J=\" $(pgrep -f %s | tr '\\n' ' ')\"; "
           "C=$(ps -e -o pid= -o ppid= | awk -v j=\"$J\" %s | head -n 1); "
           "if [ -n \"$C\" ]; then kill -STOP $C 2>/dev/null; "
           "T=$(ps -e -o pid= -o ppid= -o sid= | awk -v c=\"$C\" %s); "
           "[ -z \"$T\" ] || kill -TERM $T 2>/dev/null; kill -CONT $C 2>/dev/null; fi"
           % (pattern, shlex.quote(find_child), shlex.quote(session_but_parent)))
    if remove:
        cmd += "; rm -f %s" % " ".join(shlex.quote(path) for path in remove)
    return cmd


def split_poll_output(stdout: str) -> tuple[str, str]:
    job, sep, progress = stdout.partition(_RECORD_SEP)
    if not sep:
        return "", ""
    return job, progress


class _Cancelled(BaseException):
    def __init__(self, signum):
        super().__init__("signal %d" % signum)
        self.signum = signum


class ProgressActionBase(ActionBase):
    """Subclasses name the module option that takes the progress file path, and may override
    ``_wants_progress(args)`` to run short operations (state=absent) the plain way."""

    _supports_check_mode = True
    _supports_async = True
    PROGRESS_OPTION = "progress_file"
    PROGRESS_SOURCE = "module"

    def _wants_progress(self, args: dict) -> bool:
        return True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = dict(self._task.args)
        plain = (self._task.check_mode or self._task.async_val or self._connection.has_native_async
                 or self._connection.always_pipeline_modules or not self._wants_progress(args)
                 or not self._interval(task_vars))
        if plain:
            wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
            result.update(self._execute_module(module_args=args, task_vars=task_vars, wrap_async=wrap_async))
            if not wrap_async:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            return result
        result.update(self._run_with_progress(args, task_vars))
        return result

    # -- options (task vars, so they can be set per host, group or play) ---------------------------

    @staticmethod
    def _interval(task_vars) -> float:
        """Seconds between polls; 0 turns live progress off for this task."""
        try:
            return max(0.0, float(task_vars.get("v2kvm_progress_interval", 1.0)))
        except (TypeError, ValueError) as exc:
            raise AnsibleError("v2kvm_progress_interval must be seconds (0 turns live progress off)") from exc

    @staticmethod
    def _orphan_timeout(task_vars, interval) -> int:
        """Seconds the module may go unpolled before it stops itself; 0 turns the watchdog off."""
        value = task_vars.get("v2kvm_progress_orphan_timeout", _DEFAULT_ORPHAN_TIMEOUT)
        try:
            timeout = int(value)
        except (TypeError, ValueError) as exc:
            raise AnsibleError("v2kvm_progress_orphan_timeout must be a whole number of seconds (0 turns the "
                               "orphan watchdog off), not %r" % (value,)) from exc
        if timeout < 0 or (timeout and timeout < 3 * interval):
            raise AnsibleError("v2kvm_progress_orphan_timeout (%s s) must be at least 3 x v2kvm_progress_interval "
                               "(%s s), or 0 to turn the orphan watchdog off: with less, a single late poll stops "
                               "a healthy job" % (timeout, interval))
        return timeout

    @staticmethod
    def _time_limit(task_vars) -> int:
        try:
            return int(task_vars.get("v2kvm_progress_time_limit", _DEFAULT_LIMIT))
        except (TypeError, ValueError) as exc:
            raise AnsibleError("v2kvm_progress_time_limit must be a whole number of seconds") from exc

    # -- the background run ------------------------------------------------------------------------

    def _run_with_progress(self, args, task_vars):
        interval = self._interval(task_vars)
        orphan_timeout = self._orphan_timeout(task_vars, interval)
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        own_file = not args.get(self.PROGRESS_OPTION)
        if own_file:
            progress_file = self._connection._shell.join_path(async_dir, "v2kvm-%s.progress" % uuid.uuid4().hex)
            args[self.PROGRESS_OPTION] = progress_file
            tail = ProgressTail(0)
        else:
            progress_file = self._remote_expand_user(args[self.PROGRESS_OPTION])
            tail = ProgressTail(self._remote_size(progress_file))
        alive_file = heartbeat_path(progress_file)

        saved_async = self._task.async_val
        # async_wrapper reads its time limit from the task; 0 would mean "kill at the first check".
        self._task.async_val = self._time_limit(task_vars)
        cancelled = not_started = None
        with _StopSignals() as stop:
            try:
                launch = self._execute_module(module_args=args, task_vars=task_vars, wrap_async=True)
            finally:
                self._task.async_val = saved_async
            jid = launch.get("ansible_job_id")
            if not jid or launch.get("failed") or launch.get("finished"):
                # Could not start in the background (or the connection ran it in the foreground).
                not_started, cancelled = launch, stop.received
            else:
                job_file = self._connection._shell.join_path(async_dir, jid)
                forwarder = ProgressForwarder(self._task, task_vars, jid, self.PROGRESS_SOURCE)
                try:
                    stop.arm()
                    self._follow(job_file, progress_file, tail, forwarder, interval, jid,
                                 alive_file if orphan_timeout else None, orphan_timeout)
                except _Cancelled as exc:
                    # Signals stay ignored until the job is stopped: the controller sends SIGTERM right
                    # after SIGINT, and dying now would leave the conversion running on the target.
                    cancelled = exc.signum
                    self._cancel(jid, [job_file, alive_file] + ([progress_file] if own_file else []))
        if cancelled is not None:
            _reraise_signal(cancelled)
        if not_started is not None:
            return not_started
        final = self._execute_module(module_name="ansible.legacy.async_status",
                                     module_args={"jid": jid, "mode": "status", "_async_dir": async_dir},
                                     task_vars=task_vars)
        self._low_level_execute_command("rm -f %s" % " ".join(
            shlex.quote(path) for path in [job_file, alive_file] + ([progress_file] if own_file else [])))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        for key in _ASYNC_KEYS:
            final.pop(key, None)
        for key in ("stdout", "stderr", "stdout_lines", "stderr_lines"):
            if key in final and not final[key]:
                del final[key]
        if tail.bad_lines:
            final.setdefault("warnings", []).append(
                "%d line(s) of the progress file %s were not progress samples and were skipped"
                % (tail.bad_lines, progress_file))
        return final

    def _remote_size(self, path) -> int:
        res = self._low_level_execute_command("wc -c < %s 2>/dev/null || echo 0" % shlex.quote(path))
        try:
            return int((res.get("stdout") or "0").split()[0])
        except (ValueError, IndexError):
            return 0

    def _follow(self, job_file, progress_file, tail, forwarder, interval, jid, alive_file=None, orphan_timeout=0):
        failures = 0
        delay = min(interval, 0.2)  # the first look comes early: a fast module needs no full interval
        while True:
            time.sleep(delay)
            delay = interval
            started = time.monotonic()
            try:
                res = self._low_level_execute_command(
                    poll_command(job_file, progress_file, tail.next_command_offset(), alive_file, orphan_timeout))
            except AnsibleError as exc:
                # A network bounce must not lose the job: it keeps running on the target.
                failures += 1
                display.vvvv("progress poll of %s failed (%d): %s" % (jid, failures, exc))
                if failures >= _MAX_POLL_FAILURES:
                    raise
                try:
                    self._connection.reset()
                except Exception as reset_exc:
                    display.vvvv("connection reset after a failed poll failed too: %s" % reset_exc)
                continue
            failures = 0
            job_text, progress_text = split_poll_output(res.get("stdout") or "")
            for sample in tail.feed(progress_text):
                forwarder.send(sample)
            state = job_state(job_text, jid)
            if state != "running":
                if len(progress_text.encode("utf-8", "surrogateescape")) >= _MAX_READ:
                    delay = 0  # more progress than one read holds: drain it before finishing
                    if state == "finished":
                        continue
                return
            delay = max(0.0, interval - (time.monotonic() - started))

    def _cancel(self, jid, remove):
        """Stop the background job (see ``cancel_command``): the module gets SIGTERM and removes its
        temporary files (disk_convert deletes its .part); async_wrapper then cleans its tmpdir."""
        try:
            self._low_level_execute_command(cancel_command(jid, remove))
        except Exception as exc:  # the controller is going down; say what was left
            display.warning("could not stop background job %s on the target (%s); its orphan watchdog stops it "
                            "once the heartbeat goes stale (v2kvm_progress_orphan_timeout)" % (jid, exc))


class _StopSignals:
    """From the launch of the background job until it is stopped, the first SIGINT/SIGTERM (the controller
    stopping this worker) no longer kills the worker at once; further ones are ignored.

    While the job is being launched its id is not known yet, so the signal is only noted; ``arm()``, called
    once the id is known, raises it as _Cancelled (and any later first signal raises at once), so the job is
    stopped on the target before this worker exits. Without the launch window covered, Ansible's own handler
    killed the worker's process group, but async_wrapper had already left it (it daemonizes), and the job
    ran to its end after the run was stopped. The worker's own handler runs afterwards."""

    def __enter__(self):
        self._saved = {}
        self._armed = False
        self.received = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._saved[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (unit tests): nothing to hook
                pass
        return self

    def _handle(self, signum, frame):
        for other in self._saved:
            signal.signal(other, signal.SIG_IGN)
        self.received = signum
        if self._armed:
            raise _Cancelled(signum)

    def arm(self):
        self._armed = True
        if self.received is not None:
            raise _Cancelled(self.received)

    def __exit__(self, *exc):
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        return False


def _reraise_signal(signum):
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)
    raise KeyboardInterrupt("stopped by signal %d" % signum)


class ProgressForwarder:
    """Sends samples to the controller's callbacks from a worker process, as async-poll results."""

    def __init__(self, task, task_vars, jid, source):
        self._task = task
        self._jid = jid
        self._source = source
        self._host_name = task_vars.get("inventory_hostname")
        delegated = task_vars.get("ansible_delegated_vars") or {}
        self._delegate = self._task.delegate_to if self._task.delegate_to else None
        self._delegated_host = (delegated.get(self._delegate) or {}).get("ansible_host") if self._delegate else None
        self._item_label = _item_label(task, task_vars)
        self.sent = 0
        self._queue = Display()._final_q  # set only inside a WorkerProcess

    def payload(self, sample: dict) -> dict:
        data = {"ansible_job_id": self._jid, "started": True, "finished": False,
                PROGRESS_KEY: dict(sample, source=self._source)}
        if self._item_label is not None:
            data["_ansible_item_label"] = self._item_label
        if self._delegate:
            data["_ansible_delegated_vars"] = {"ansible_host": self._delegated_host or self._delegate}
        return data

    def send(self, sample: dict) -> None:
        if self._queue is None or not self._host_name:
            return
        from ansible.executor.task_result import _RawTaskResult
        from ansible.inventory.host import Host

        self._queue.send_callback("v2_runner_on_async_poll", _RawTaskResult(
            host=Host(self._host_name), task=self._task, return_data=self.payload(sample),
            task_fields=self._task.dump_attrs()))
        self.sent += 1


def _item_label(task, task_vars):
    """The loop item's label as the callbacks will show it, when the task loops."""
    loop_var = task_vars.get("ansible_loop_var")
    if not loop_var or loop_var not in task_vars:
        return None
    item = task_vars[loop_var]
    label = getattr(task.loop_control, "label", None) if task.loop_control else None
    if label and isinstance(label, str) and "{{" not in label:
        return label
    if label:
        try:
            from ansible.template import Templar

            return str(Templar(loader=None, variables=task_vars).template(label))
        except Exception as exc:  # a label is cosmetic; the item itself is the fallback
            display.vvvv("could not template the loop label %r: %s" % (label, exc))
    return item if isinstance(item, (str, int, float)) else None
