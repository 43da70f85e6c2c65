# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Answers v2kvm.migrate.migration_state for a whole play batch from one listing per target host.

A re-run of a finished fleet asks every VM's target host the same question: which domains hold a
finished migration. Run per VM, that is one module start, one libvirt connection and one read of
every domain's XML per VM; on a controller with few cores it was most of the re-run's time
(docs/performance.md). So when the task is delegated (the VM's target is another inventory host)
and the play batch has more than one VM, the first VM's worker lists the host once (the module
without a source) into the run's private temporary directory, under a lock, and every VM of the
batch whose migration that listing shows complete takes the answer from it. Every other answer
(not found, not validated, source changed, a path that is not the recorded real path, a listing
that failed) comes from the module run for that VM alone, exactly as without this plugin.

The listing is keyed by task, play batch, delegated host and connection options, so it never
outlives the task that made it, and the directory goes away with the ansible-playbook process.

When the delegated host is reached with the local connection, without become or a task environment,
the controller is that host: the listing is read in this process with the same code the module runs
(``read_listing``, over ``records``), which saves the module start (about 0.3 s of Ansible's own
per-module cost, most of a re-run's look-up). Any failure there falls back to the module, which
reports errors its own way.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os

from ansible import constants as C
from ansible.plugins.action import ActionBase

from ansible_collections.v2kvm.migrate.plugins.module_utils._libvirt_conn import HAS_LIBVIRT
from ansible_collections.v2kvm.migrate.plugins.module_utils._migration_lookup import (
    SOURCE_OPTIONS,
    asks_about_one_source,
    read_listing,
    verdict_from_listing,
)


class ActionModule(ActionBase):
    _supports_check_mode = True  # the module only reads

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = dict(self._task.args)
        answer = None
        if self._can_share(args, task_vars):
            listing = self._shared_listing(args, task_vars)
            if listing is not None:
                answer = verdict_from_listing(listing, args.get("source_path"), args.get("name"))
        if answer is None:
            result.update(self._execute_module(module_args=args, task_vars=task_vars))
        else:
            result.update(changed=False, **answer)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _can_share(self, args, task_vars):
        batch = task_vars.get("ansible_play_batch") or []
        return (bool(self._task.delegate_to) and len(batch) > 1 and not self._task.async_val
                and asks_about_one_source(args))

    def _shared_listing(self, args, task_vars):
        """The host's records, made by the first VM of the batch to get here; None if that failed."""
        listing_args = {key: value for key, value in args.items() if key not in SOURCE_OPTIONS}
        key = hashlib.sha256(json.dumps(
            [self._task._uuid, sorted(task_vars.get("ansible_play_batch") or []), self._task.delegate_to,
             listing_args], sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]
        path = os.path.join(C.DEFAULT_LOCAL_TMP, "v2kvm-migration-state-%s.json" % key)
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path) as cached:
                    return json.load(cached)["migrations"]
            except FileNotFoundError:
                pass
            migrations = self._list_here(listing_args)
            if migrations is None:
                listed = self._execute_module(module_args=listing_args, task_vars=task_vars)
                # A failed listing is remembered too: the others then ask the host one by one, and each
                # gets the module's own error message.
                migrations = None if listed.get("failed") else listed.get("migrations")
            with open(path + ".tmp", "w") as out:
                json.dump({"migrations": migrations}, out)
            os.replace(path + ".tmp", path)
            return migrations

    def _list_here(self, listing_args):
        """The listing read in this process when the controller is the host; None to run the module."""
        environment = self._task.environment or []
        if (self._connection.transport not in ("local", "ansible.builtin.local") or self._play_context.become
                or not isinstance(environment, list) or any(environment) or not HAS_LIBVIRT
                or set(listing_args) - {"uri"}):
            return None
        try:
            return read_listing(listing_args.get("uri") or "qemu:///system")
        except Exception:  # the module says what is wrong, in its own words
            return None
