# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised while reading a migration source (OVA, OVF folder, bare VMDK).

Every error carries the problem and the fix separately so a module can show both, and
``str(error)`` reads as one sentence pair: "<problem>. Fix: <fix>".
Both parts quote names from the source, so they are escaped here, once for every caller.
"""

from __future__ import annotations

from ansible_collections.v2kvm.migrate.plugins.module_utils._untrusted import untrusted


class SourceError(Exception):
    """A source that cannot be migrated as it is; nothing has been written."""

    def __init__(self, problem: str, fix: str):
        self.problem = untrusted(problem).rstrip(".")
        self.fix = untrusted(fix).rstrip(".")
        super().__init__("%s. Fix: %s." % (self.problem, self.fix))


class NotAnArchiveError(SourceError):
    """The .ova is not an uncompressed tar archive."""


class UnsafeArchiveError(SourceError):
    """A tar member that could escape the work directory or is not a plain file."""


class UnsafeXmlError(SourceError):
    """The OVF descriptor uses DTDs, entities or external references."""


class DescriptorError(SourceError):
    """The OVF descriptor is malformed or says something impossible."""


class UnsupportedSourceError(SourceError):
    """A valid source using a feature this collection does not handle yet."""


class ManifestError(SourceError):
    """The .mf manifest is missing, malformed or does not match the files."""


class DiskFileError(SourceError):
    """A disk file is missing, of the wrong size or format, or damaged."""


class SpecError(SourceError):
    """A VM spec value breaks a rule of docs/vm-spec.md."""
