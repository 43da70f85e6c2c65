# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The progress channel's option, for modules whose action plugin forwards their progress live
    # (see docs/progress-channel.md).
    DOCUMENTATION = r"""
options:
  progress_file:
    description:
      - Append progress samples (JSON lines) to this file; the action plugin sets one for live dashboards.
    type: path
"""
