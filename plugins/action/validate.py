# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs v2kvm.migrate.validate in the background on its host and forwards its progress (the bytes of
each qemu-img compare, then the guest's newest console line while it boots) to the controller's
callbacks while it works (see docs/progress-channel.md)."""

from __future__ import annotations

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._progress_action import ProgressActionBase


class ActionModule(ProgressActionBase):
    PROGRESS_OPTION = "progress_file"
    PROGRESS_SOURCE = "validate"
