"""The design document travels with the code: every `design.md#<section>` reference in the code, tests and docs
names a heading of docs/design.md (GitHub's anchor slugs), and nothing cites the old design notes that lived
outside the repository. Each check is shown failing on an injected reference."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
# the retired out-of-repository notes, spelled in two pieces so this file does not cite them itself
STALE = "DESIGN" + ".md"
TEXT_SUFFIXES = (".py", ".md", ".toml", ".txt", ".cfg", ".json", ".yml", ".yaml", ".rst")
TEXT_NAMES = ("Makefile",)
SKIP_DIRS = ("build", "__pycache__")
REF = re.compile(r"design\.md#([A-Za-z0-9_-]+)")      # case-sensitive: docs/design.md, ../docs/design.md, design.md
LOCAL_REF = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")    # [text](#anchor) inside design.md itself
FENCE = re.compile(r"^\s*(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text: lower case, punctuation other than - and _ dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def heading_anchors(markdown: str) -> set:
    """The anchors of a markdown text's ATX headings (outside fenced code), duplicates numbered as GitHub does."""
    anchors, seen, fenced = set(), {}, False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def unresolved_refs(text: str, anchors: set, local: bool = False) -> list:
    """(line number, anchor) of each design.md#<section> (and, for design.md itself, each (#anchor) link) that
    names no heading."""
    bad = []
    for i, line in enumerate(text.splitlines(), 1):
        found = REF.findall(line) + (LOCAL_REF.findall(line) if local else [])
        bad += [(i, a) for a in found if a not in anchors]
    return bad


def stale_refs(text: str) -> list:
    """Line numbers that still cite the old out-of-repository design notes."""
    return [i for i, line in enumerate(text.splitlines(), 1) if STALE in line]


def _text_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                             and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            if name.endswith(TEXT_SUFFIXES) or name in TEXT_NAMES:
                yield Path(dirpath) / name


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def test_design_document_exists_with_its_sections():
    anchors = heading_anchors(_read(DESIGN))
    for a in ("one-layer-two-forms", "the-integer-network-ir", "exactness-and-the-certificate", "readouts",
              "training-methods", "loihi-and-lava", "nir-mapping", "lava-dl-netx-mapping"):
        assert a in anchors, a


def test_every_design_reference_names_a_heading():
    anchors = heading_anchors(_read(DESIGN))
    bad, n_refs = [], 0
    for path in _text_files():
        text = _read(path)
        n_refs += len(REF.findall(text))
        bad += [f"{path.relative_to(ROOT)}:{i}: #{a}" for i, a in unresolved_refs(text, anchors, path == DESIGN)]
    assert not bad, "references to no heading of docs/design.md:\n" + "\n".join(bad)
    assert n_refs >= 30, n_refs          # the code does cite it (the check is not vacuous)


def test_nothing_cites_the_old_design_notes():
    bad = [f"{path.relative_to(ROOT)}:{i}" for path in _text_files() for i in stale_refs(_read(path))]
    assert not bad, f"files still citing {STALE} (use docs/design.md#<section>):\n" + "\n".join(bad)


def test_the_file_walk_reaches_code_tests_and_docs():
    seen = {p.relative_to(ROOT).as_posix() for p in _text_files()}
    for f in ("export/ir.py", "tests/test_docs_refs.py", "docs/design.md", "README.md", "docs/nir.md"):
        assert f in seen, f


def test_slugs_follow_githubs_rule():
    assert slug("The integer network (IR)") == "the-integer-network-ir"
    assert slug("Lava's LIF registers") == "lavas-lif-registers"
    assert slug("SAF-E and OTTT_O") == "saf-e-and-ottt_o"
    assert heading_anchors("## A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_injected_bad_reference_is_caught():
    anchors = heading_anchors(_read(DESIGN))
    good = "see docs/design.md#readouts and ../docs/design.md#nir-mapping"
    assert unresolved_refs(good, anchors) == []
    renamed = "x\nsee docs/design.md#" + "readout-semantics (a renamed section)"    # split: this file is scanned too
    assert unresolved_refs(renamed, anchors) == [(2, "readout-semantics")]
    assert unresolved_refs("[up](#no-such-section)", anchors, local=True) == [(1, "no-such-section")]
    assert unresolved_refs("[up](#readouts)", anchors, local=True) == []


def test_injected_stale_reference_is_caught():
    assert stale_refs("clean\ndocs/design.md#readouts") == []
    assert stale_refs(f"a\nb ({STALE} sec. 3)\n") == [2]
    assert stale_refs(f"see ../shared/{STALE}") == [1]
