"""docs/architecture.md is the newcomer's map: it must match the code.

- its phase table names every module, each with the module_util the module really calls (one import);
- every module is thin: documentation, argument spec and one call (no more than ~80 lines of code);
- every file its diagrams and text name exists, and each diagram (architecture-phases, -progress,
  -events) is a mermaid flowchart.
"""

import ast
import os
import re

import pytest
from rig.doc_examples import REPO, example

DOC = "docs/architecture.md"
PLUGINS = os.path.join(REPO, "plugins")
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(PLUGINS, "modules")) if name.endswith(".py")
                 and name != "__init__.py")
DIAGRAMS = ("architecture-phases", "architecture-progress", "architecture-events")


def doc_text():
    with open(os.path.join(REPO, DOC), encoding="utf-8") as handle:
        return handle.read()


def phase_rows():
    """module -> reconciler file, from the table under 'Find a phase'."""
    rows = {}
    for line in doc_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`\w+`", cells[1]) and re.fullmatch(r"`_\w+\.py`", cells[2]):
            rows[cells[1].strip("`")] = cells[2].strip("`")
    return rows


def python_files():
    found = set()
    for _root, _dirs, files in os.walk(PLUGINS):
        found.update(name for name in files if name.endswith(".py"))
    return found


def code_lines(path):
    """Lines of code of a module file: not its documentation strings, comments or blank lines."""
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    docs = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.Expr)) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            docs.update(range(node.lineno, node.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if number not in docs and line.strip() and not line.strip().startswith("#"))


def test_the_phase_table_names_every_module_with_the_reconciler_it_calls():
    rows = phase_rows()
    assert sorted(rows) == MODULES, "modules missing from (or unknown to) the phase table of %s" % DOC
    for module, util in rows.items():
        with open(os.path.join(PLUGINS, "modules", module + ".py"), encoding="utf-8") as handle:
            text = handle.read()
        assert "plugins.module_utils.%s import" % util[:-3] in text or \
            "plugins.module_utils import %s" % util[:-3] in text, "%s does not call %s" % (module, util)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_its_documentation_argument_spec_and_one_call(module):
    assert code_lines(os.path.join(PLUGINS, "modules", module + ".py")) <= 80


def test_every_file_the_page_names_exists():
    named = set(re.findall(r"\b(_\w+\.py)\b", doc_text())) - {"__init__.py"}
    assert named, "the page names no file"
    assert not named - python_files(), "named in %s but not in plugins/: %s" % (DOC, sorted(named - python_files()))


@pytest.mark.parametrize("name", DIAGRAMS)
def test_each_diagram_is_a_mermaid_flowchart_of_existing_files(name):
    block = example(DOC, name)
    assert block.lang == "mermaid", "%s is not a mermaid block" % name
    text = block.text
    assert text.startswith("flowchart "), "%s is not a mermaid flowchart" % name
    files = set(re.findall(r"\b(\w+\.py)\b", text))
    assert files and not files - python_files(), sorted(files - python_files())


def test_unit_tests_are_laid_out_like_the_plugin_types_they_test():
    tests = os.path.join(REPO, "tests", "unit", "plugins")
    layout = sorted(name for name in os.listdir(tests) if os.path.isdir(os.path.join(tests, name))
                    and name != "__pycache__")
    assert layout and set(layout) <= set(os.listdir(PLUGINS)), layout
