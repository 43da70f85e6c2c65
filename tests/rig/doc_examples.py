"""The examples of README.md and docs/*.md, taken by name so the tests run what the docs show.

A tested example is a fenced block right after a marker line (blank lines may stand between):

    <!-- example: fleet-inventory -->
    ```yaml
    ...
    ```

The marker is an HTML comment, so it does not show on GitHub or Galaxy. ``example(doc, name)`` returns
the block's text (dedented when the block sits in a list item); a marker with no fenced block after it,
two markers of one name in a file, or a name the file does not have is an error naming the file and line.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = re.compile(r"^\s*<!--\s*example:\s*([A-Za-z0-9_.-]+)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


class DocExampleError(AssertionError):
    """The Markdown does not have the example a test asked for, or a marker is broken."""


@dataclass
class Block:
    doc: str  # path relative to the repo
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    name: str | None  # the marker's name, None for an unmarked block

    @property
    def first_line(self):
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")


def doc_paths():
    """README.md and every docs/*.md, relative to the repo."""
    docs = sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(REPO, "docs"))
                  if name.endswith(".md"))
    return ["README.md", *docs]


def blocks(doc):
    """Every fenced block of ``doc`` (a path relative to the repo), marked or not, in order."""
    with open(os.path.join(REPO, doc), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    found, pending, index = [], None, 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line)
        fence = FENCE.match(line)
        if marker:
            if pending:
                raise DocExampleError(f"{doc}:{pending[1]}: marker 'example: {pending[0]}' has no fenced block "
                                      f"before the next marker")
            pending = (marker.group(1), index + 1)
        elif fence:
            indent, ticks, lang = fence.groups()
            start, body, index = index + 1, [], index + 1
            while index < len(lines) and not re.match(r"^\s*" + re.escape(ticks) + r"\s*$", lines[index]):
                body.append(lines[index])
                index += 1
            if index == len(lines):
                raise DocExampleError(f"{doc}:{start}: a fenced block is never closed")
            text = textwrap.dedent("\n".join(body)) + "\n" if indent else "\n".join(body) + "\n"
            found.append(Block(doc, start, lang, text, pending[0] if pending else None))
            pending = None
        elif pending and line.strip():
            raise DocExampleError(f"{doc}:{pending[1]}: marker 'example: {pending[0]}' is not followed by a fenced "
                                  f"block (found {line.strip()[:60]!r})")
        index += 1
    if pending:
        raise DocExampleError(f"{doc}:{pending[1]}: marker 'example: {pending[0]}' at the end of the file")
    names = [block.name for block in found if block.name]
    doubles = sorted({name for name in names if names.count(name) > 1})
    if doubles:
        raise DocExampleError(f"{doc}: example names used twice: {', '.join(doubles)}")
    return found


def example(doc, name):
    """The ``Block`` marked ``<!-- example: name -->`` in ``doc``."""
    for block in blocks(doc):
        if block.name == name:
            return block
    have = ", ".join(block.name for block in blocks(doc) if block.name) or "none"
    raise DocExampleError(f"{doc} has no block marked '<!-- example: {name} -->' (its examples: {have}); "
                          "a test runs that example, so keep the marker when editing the block")
