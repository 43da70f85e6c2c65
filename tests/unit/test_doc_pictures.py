"""The pictures the README and the guides show exist and are real captures of a run (scripts/screenshots.py
makes them; nothing here runs a migration), and the YAML a reader copies from the CI and AWX guides is
valid and yamllint-clean."""

import os
import re
import struct

import pytest
import yaml
from defusedxml import ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
MACHINE_PATHS = ("/work/", "/tmp/", "/root/", "/home/", ".work/")
DEMO_VMS = ("demo-bios", "demo-twodisk", "demo-uefi", "demo-broken")


def pictures_of(doc):
    with open(os.path.join(REPO, doc), encoding="utf-8") as handle:
        links = IMAGE.findall(handle.read())
    return [os.path.normpath(os.path.join(os.path.dirname(doc), link)) for link in links]


def svg_text(path):
    """The text a terminal capture shows: Rich writes one <text> per run of one style, spaces as NBSP."""
    root = ET.parse(path).getroot()
    return "".join(node.text or "" for node in root.iter("{http://www.w3.org/2000/svg}text")).replace("\xa0", " ")


def png_size(path):
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("doc, kinds", [
    ("README.md", {".svg", ".png"}),
    ("docs/dashboard.md", {".svg"}),
    ("docs/web-dashboard.md", {".png"}),
])
def test_each_guide_shows_its_pictures_and_they_exist(doc, kinds):
    pictures = pictures_of(doc)
    assert kinds <= {os.path.splitext(p)[1] for p in pictures}, (doc, pictures)
    for picture in pictures:
        assert os.path.isfile(os.path.join(REPO, picture)), "%s shows %s, which does not exist" % (doc, picture)


def all_pictures(ext):
    docs = ["README.md"] + ["docs/" + name for name in sorted(os.listdir(os.path.join(REPO, "docs")))
                            if name.endswith(".md")]
    return sorted({p for doc in docs for p in pictures_of(doc) if p.endswith(ext)})


@pytest.mark.parametrize("picture", all_pictures(".svg"))
def test_terminal_pictures_are_a_dashboard_of_the_demo_run(picture):
    text = svg_text(os.path.join(REPO, picture))
    assert "v2kvm.migrate dashboard" in text and "migrations" in text and "metrics" in text, text[:500]
    assert all(vm in text for vm in DEMO_VMS), text[:500]
    assert re.search(r"\d+(\.\d)?%", text) and "MB/s" in text, text[:500]
    assert not [p for p in MACHINE_PATHS if p in text], "a path of the machine that took the picture"


@pytest.mark.parametrize("picture", all_pictures(".png"))
def test_web_pictures_are_screenshots_of_sane_size(picture):
    path = os.path.join(REPO, picture)
    width, height = png_size(path)
    assert 1000 <= width <= 1920 and 500 <= height <= 1400, (width, height)
    assert os.path.getsize(path) < 250 * 1024, "optimise the PNG (scripts/screenshots.py quantises it)"


def yaml_blocks(doc):
    with open(os.path.join(REPO, doc), encoding="utf-8") as handle:
        return re.findall(r"^```yaml\n(.*?)^```", handle.read(), flags=re.S | re.M)


@pytest.mark.parametrize("doc", ["docs/ci.md", "docs/awx.md"])
def test_guide_yaml_parses_and_is_yamllint_clean(doc):
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig("extends: default\nrules:\n  line-length: {max: 120}\n  truthy: {check-keys: false}\n")
    blocks = yaml_blocks(doc)
    assert blocks, doc
    for block in blocks:
        assert yaml.safe_load(block) is not None, block
        problems = [str(p) for p in linter.run(block, config)]
        assert problems == [], (doc, problems, block)
