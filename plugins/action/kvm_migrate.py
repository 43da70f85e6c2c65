# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs v2kvm.migrate.kvm_migrate in the background and forwards the migration's job stats
(bytes moved of the total, rate, ETA) to the controller's callbacks while it runs
(see docs/progress-channel.md)."""

from __future__ import annotations

from ansible_collections.v2kvm.migrate.plugins.plugin_utils._progress_action import ProgressActionBase


class ActionModule(ProgressActionBase):
    PROGRESS_OPTION = "progress_file"
    PROGRESS_SOURCE = "kvm_migrate"
