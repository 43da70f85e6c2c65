# Copyright: (c) 2025, v2kvm.migrate developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Attributes of modules that only read (facts, plans, lookups); extend together with
    # ansible.builtin.action_common_attributes, which describes check_mode, diff_mode and platform.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode returns what a real run would.
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    description: Reads only; running it again changes nothing.
    support: full
"""
