"""The design documents travel with the code: every `design.md#<section>` and `methods.md#<section>` reference in
the code, tests and docs names a heading of docs/design.md resp. docs/methods.md (GitHub's anchor slugs), and
nothing cites the old design or methods notes that lived outside the repository. Each check is shown failing on an
injected reference."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
METHODS = ROOT / "docs" / "methods.md"
# the retired out-of-repository notes, each spelled in two pieces so this file does not cite them itself
STALE = ("DESIGN" + ".md", "METHODS" + ".md")
TEXT_SUFFIXES = (".py", ".md", ".toml", ".txt", ".cfg", ".json", ".yml", ".yaml", ".rst")
TEXT_NAMES = ("Makefile",)
SKIP_DIRS = ("build", "__pycache__")
REF = re.compile(r"design\.md#([A-Za-z0-9_-]+)")      # case-sensitive: docs/design.md, ../docs/design.md, design.md
METHODS_REF = re.compile(r"methods\.md#([A-Za-z0-9_-]+)")   # likewise docs/methods.md, methods.md
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


def unresolved_refs(text: str, anchors: set, local: bool = False, ref: re.Pattern = REF) -> list:
    """(line number, anchor) of each design.md#<section> (`ref`: of each methods.md#<section> with METHODS_REF;
    and, for the document itself, each (#anchor) link) that names no heading."""
    bad = []
    for i, line in enumerate(text.splitlines(), 1):
        found = ref.findall(line) + (LOCAL_REF.findall(line) if local else [])
        bad += [(i, a) for a in found if a not in anchors]
    return bad


def stale_refs(text: str) -> list:
    """Line numbers that still cite the old out-of-repository design or methods notes."""
    return [i for i, line in enumerate(text.splitlines(), 1) if any(s in line for s in STALE)]


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


def _unresolved_everywhere(doc: Path, ref: re.Pattern) -> tuple:
    """(bad references as "file:line: #anchor", number of references) over every text file, for one document."""
    anchors = heading_anchors(_read(doc))
    bad, n_refs = [], 0
    for path in _text_files():
        text = _read(path)
        n_refs += len(ref.findall(text))
        bad += [f"{path.relative_to(ROOT)}:{i}: #{a}" for i, a in unresolved_refs(text, anchors, path == doc, ref)]
    return bad, n_refs


def test_every_design_reference_names_a_heading():
    bad, n_refs = _unresolved_everywhere(DESIGN, REF)
    assert not bad, "references to no heading of docs/design.md:\n" + "\n".join(bad)
    assert n_refs >= 30, n_refs          # the code does cite it (the check is not vacuous)


def test_methods_document_exists_with_its_sections():
    anchors = heading_anchors(_read(METHODS))
    for a in ("ide", "dsr", "fp", "ide-gradient", "dsr-deployment", "fp-deployment", "ide-experiments",
              "fp-experiments", "i4-a-digits-feedback-net", "f7-yin-yang-reduced", "fp-the-loss-sign",
              "how-each-method-deploys"):
        assert a in anchors, a


def test_every_methods_reference_names_a_heading():
    bad, n_refs = _unresolved_everywhere(METHODS, METHODS_REF)
    assert not bad, "references to no heading of docs/methods.md:\n" + "\n".join(bad)
    assert n_refs >= 40, n_refs          # the code, tests and guides do cite it (the check is not vacuous)


def test_nothing_cites_the_old_design_notes():
    bad = [f"{path.relative_to(ROOT)}:{i}" for path in _text_files() for i in stale_refs(_read(path))]
    assert not bad, (f"files still citing {' or '.join(STALE)} (use docs/design.md#<section> or "
                     f"docs/methods.md#<section>):\n" + "\n".join(bad))


def test_the_file_walk_reaches_code_tests_and_docs():
    seen = {p.relative_to(ROOT).as_posix() for p in _text_files()}
    for f in ("export/ir.py", "tests/test_docs_refs.py", "docs/design.md", "docs/methods.md", "README.md",
              "docs/nir.md", "train/methods/fp/loss.py"):
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


def test_injected_bad_methods_reference_is_caught():
    anchors = heading_anchors(_read(METHODS))
    good = "see docs/methods.md#fp-gradient and [F7](methods.md#f7-yin-yang-reduced)"
    assert unresolved_refs(good, anchors, ref=METHODS_REF) == []
    renamed = "x\nsee docs/methods.md#" + "fp-gradients (a renamed section)"    # split: this file is scanned too
    assert unresolved_refs(renamed, anchors, ref=METHODS_REF) == [(2, "fp-gradients")]
    old_style = "y\nz\nF7 of docs/methods.md#" + "2.5"                             # a section number is no anchor
    assert unresolved_refs(old_style, anchors, ref=METHODS_REF) == [(3, "2")]
    assert unresolved_refs("[up](#no-such-section)", anchors, local=True, ref=METHODS_REF) == [(1, "no-such-section")]
    assert unresolved_refs("[up](#fp-gradient)", anchors, local=True, ref=METHODS_REF) == []
    # each document's references are checked against that document's headings only
    assert unresolved_refs("docs/design.md#" + "fp-gradient", heading_anchors(_read(DESIGN))) == [(1, "fp-gradient")]


def test_injected_stale_reference_is_caught():
    assert stale_refs("clean\ndocs/design.md#readouts\ndocs/methods.md#fp") == []
    for stale in STALE:
        assert stale_refs(f"a\nb ({stale} sec. 3)\n") == [2]
        assert stale_refs(f"see ../shared/{stale}") == [1]
