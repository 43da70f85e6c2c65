# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk_convert's reconciler: one converted disk (``dest``) and its sidecar.

Reads the current state (the sidecar beside dest, dest's own stat, the source's fingerprint), decides
(up to date, convert, refuse, or remove for state=absent), acts only outside check mode, and returns the
module's result with ``changed`` (and ``diff`` when asked). The conversion itself is _convert_pipeline's.
"""

from __future__ import annotations

import os

from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_source as convert_source
from ansible_collections.v2kvm.migrate.plugins.module_utils import _convert_state as state_store
from ansible_collections.v2kvm.migrate.plugins.module_utils import _disk_room as disk_room
from ansible_collections.v2kvm.migrate.plugins.module_utils import _qemu_img
from ansible_collections.v2kvm.migrate.plugins.module_utils import _target_lock as target_lock
from ansible_collections.v2kvm.migrate.plugins.module_utils._convert_pipeline import Plan, convert
from ansible_collections.v2kvm.migrate.plugins.module_utils._convert_source import ConvertError
from ansible_collections.v2kvm.migrate.plugins.module_utils._progress_file import ProgressWriter


class DiskConversion:
    """``DiskConversion(module).run()`` → the result for ``exit_json``; fails the module (``fail_json``) with a
    message that says what to do. ``module`` is duck-typed: params, check_mode, _diff, warn, fail_json."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.dest = os.path.abspath(self.params["dest"])
        self.params["dest"] = self.dest
        self.lock = None

    def run(self) -> dict:
        self._own()
        try:
            if self.params["state"] == "absent":
                return self.absent()
            return self.present()
        except ConvertError as exc:
            self.module.fail_json(msg=str(exc))

    def _own(self) -> None:
        """Hold the lock beside dest for the rest of the run (released at exit), so a module left running by a
        killed run never works on the same .part: it is stopped, or waited for (see _target_lock). Check mode
        writes nothing and takes no lock."""
        if not self.module.check_mode and os.path.isdir(os.path.dirname(self.dest)):
            self.lock = target_lock.own(self.module, target_lock.lock_path(self.dest),
                                        "conversion to %s" % self.dest, ProgressWriter)

    # -- state=absent ----------------------------------------------------------------------------------

    def absent(self) -> dict:
        dest, params = self.dest, self.params
        sidecar = state_store.read_sidecar(dest)
        part = state_store.part_path(dest)
        existing = [path for path in (dest, state_store.sidecar_path(dest), part) if os.path.lexists(path)]
        kept = None
        if (params["disk"] is not None or params["src"]) and existing and existing != [part] \
                and not convert_source.made_from(params, sidecar):
            kept = "kept %s: its sidecar does not record this source" % dest
            existing = [path for path in existing if path == part]
        reason = "removed %s" % ", ".join(existing) if existing else "nothing to remove"
        result = {"changed": bool(existing), "dest": dest, "dest_format": params["dest_format"],
                  "reason": "%s; %s" % (reason, kept) if kept else reason, "removed": existing, "kept": kept}
        if self.module._diff:
            result["diff"] = {"before": state_store.summary(sidecar), "after": {}}
        if existing and not self.module.check_mode:
            for path in existing:
                state_store.remove_file(path)
            state_store.fsync_directory(os.path.dirname(dest))
        return result

    # -- state=present ---------------------------------------------------------------------------------

    def present(self) -> dict:
        dest, params = self.dest, self.params
        source = convert_source.resolve(params)
        if os.path.realpath(dest) == source.fingerprint["path"]:
            raise ConvertError("dest %s is the source itself; choose another dest" % dest)
        if not os.path.isdir(os.path.dirname(dest)) and not self.module.check_mode:
            raise ConvertError("the directory of dest %s does not exist; create it (or the storage pool) first"
                               % dest)
        current = state_store.read_sidecar(dest)
        reason = self._why_convert(current, source)
        if reason is None:
            note = ("converted earlier and written since (by the guest): kept as it is"
                    if state_store.dest_written_since(current, dest) else
                    "up to date (sidecar matches source and dest)")
            return _result_from_state(dest, current, note, False)
        plan = self._plan(source)
        if self.module.check_mode:
            planned = {"source": source.fingerprint, "source_sha256": source.known_sha256,
                       "dest_format": plan.dest_format, "virtual_size": plan.virtual_size, "content_digest": None,
                       "qemu_img_version": _qemu_img.qemu_img_version()}
            return self._with_diff(_planned_result(dest, planned, reason), current, planned)
        state = convert(plan)
        return self._with_diff(_result_from_state(dest, state, reason, True), current, state)

    def _why_convert(self, current: dict | None, source) -> str | None:
        """Why dest must be (re)converted, None when it stays as it is; raises ConvertError when it must be
        converted but may not be replaced (written by the guest since, or not made by disk_convert)."""
        dest, force = self.dest, self.params["force"]
        reason = state_store.stale_reason(current, source.fingerprint, dest, self.params["dest_format"])
        written = state_store.dest_written_since(current, dest)
        if force:
            return "force=true" if reason is None else "%s (force=true)" % reason
        if reason is None:
            return None
        if written:
            raise ConvertError("dest %s must be converted again (%s) but it has been written since its conversion, "
                               "most likely by the migrated guest; set force=true to replace it and lose those "
                               "writes, or choose another dest" % (dest, reason))
        if current is None and os.path.lexists(dest):
            raise ConvertError("dest %s exists but has no v2kvm sidecar (%s), so it was not made by disk_convert "
                               "or its conversion did not finish; remove it or set force=true to replace it"
                               % (dest, state_store.sidecar_path(dest)))
        return reason

    def _plan(self, source) -> Plan:
        """The conversion to make, once the source's size is known and dest's file system has room for it."""
        dest, params = self.dest, self.params
        try:
            virtual_size = int(_qemu_img.info(source.image, source.fmt)["virtual-size"])
        except _qemu_img.QemuImgError as exc:
            raise ConvertError("cannot read the source image: %s" % exc) from exc
        if os.path.isdir(os.path.dirname(dest)):
            try:
                short = disk_room.shortfall(source.image, source.fmt, dest, params["dest_format"], virtual_size,
                                            reclaimable=state_store.part_path(dest))
            except _qemu_img.QemuImgError as exc:
                raise ConvertError("cannot tell whether dest %s has room: %s" % (dest, exc)) from exc
            if short:
                raise ConvertError(short)
        return Plan(source, virtual_size, dest, params["dest_format"], params["verify"], params["rate_limit"],
                    params["progress_file"])

    def _with_diff(self, result: dict, before: dict | None, after: dict) -> dict:
        if self.module._diff:
            result["diff"] = {"before": state_store.summary(before), "after": state_store.summary(after)}
        return result


def _result_from_state(dest: str, state: dict, reason: str, changed: bool) -> dict:
    stat = os.stat(dest)
    return {
        "changed": changed, "dest": dest, "dest_format": state["dest_format"],
        "virtual_size": state.get("virtual_size"), "actual_size": stat.st_blocks * 512,
        "source_fingerprint": state["source"], "source_sha256": state.get("source_sha256"),
        "content_digest": state.get("content_digest"), "qemu_img_version": state.get("qemu_img_version"),
        "reason": reason,
    }


def _planned_result(dest: str, planned: dict, reason: str) -> dict:
    """What check mode reports: the conversion it would make, with nothing yet measured on a result."""
    return {"changed": True, "dest": dest, "dest_format": planned["dest_format"],
            "virtual_size": planned["virtual_size"], "actual_size": None, "source_fingerprint": planned["source"],
            "source_sha256": planned["source_sha256"], "content_digest": None,
            "qemu_img_version": planned["qemu_img_version"], "reason": reason}
