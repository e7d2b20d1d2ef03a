"""Project rules checked mechanically: core is the floor (imports nothing of saf), imports flow
core <- train <- export <- deploy with hw_targets a leaf above core only; inside every folder of a
package the parts import one way too (no circle between them), and no module imports another's
_private name; no import circles between modules; every exception class derives from SafError; only
deploy/lava/ imports lava; modules stay small and folders stay readable; tests and docs/measure scripts edit
no sys.path, tests use no private saf name and share code only through tests/saf_test_helpers, measurement
scripts import no test. Each check is shown to fail on an injected case."""
from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "train", "export", "hw_targets", "deploy")
FORBIDDEN = {"core": {"train", "export", "deploy", "hw_targets", "torch"},
             "train": {"export", "deploy", "hw_targets"}, "hw_targets": {"train", "export", "deploy", "torch"},
             "export": {"deploy"}}
LAVA_OK = ("deploy/lava/",)
MODULE_LINES_MAX = 400       # a project module (tests: 600)
TEST_LINES_MAX = 600
FOLDER_MODULES_MAX = 15      # modules side by side in one folder, __init__.py not counted


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    """saf.deploy.lava.procs.lif for deploy/lava/procs/lif.py; a package's __init__.py is the package."""
    parts = ("saf",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(name: str) -> str:
    """The project package a dotted module name belongs to (saf.export.ir -> export), else its top name."""
    parts = name.split(".")
    return parts[1] if parts[0] == "saf" and len(parts) > 1 else parts[0]


def _imported_names(module: str, is_package: bool, source: str) -> set:
    """Dotted names a module's source imports (relative imports resolved; `from a import b` gives a.b
    as well as a, so a submodule imported that way counts)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[:len(here) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def module_graph(sources: dict) -> dict:
    """{module: set of project modules it imports} from {module: (is_package, source)}. An import of
    a package's name reaches its __init__ (the package's face), as Python runs it."""
    graph = {}
    for mod, (is_pkg, src) in sources.items():
        graph[mod] = {n for n in _imported_names(mod, is_pkg, src) if n in sources and n != mod}
    return graph


def project_sources() -> dict:
    return {_module_name(p): (p.name == "__init__.py", p.read_text()) for p in _sources()}


def circles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan, iterative), sorted. A package
    importing its own submodules is no circle unless a submodule imports the package face back."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def upward_imports(sources: dict) -> list:
    """'module imports [packages]' for every import that flows against core <- train <- export <- deploy,
    out of the floor core or out of the leaf hw_targets (which may import core only; torch is refused to both)."""
    bad = []
    for mod, (is_pkg, src) in sorted(sources.items()):
        hit = {_package_of(n) for n in _imported_names(mod, is_pkg, src)} & FORBIDDEN.get(_package_of(mod), set())
        if hit:
            bad.append(f"{mod} imports {sorted(hit)}")
    return bad


def _segments(module: str, is_package: bool) -> tuple:
    """A module's place in the folder tree: saf.deploy.bench.readme -> (saf, deploy, bench, readme); a
    package's face (its __init__.py) is the part "__init__" of its own folder."""
    return tuple(module.split(".")) + (("__init__",) if is_package else ())


def part_edges(sources: dict) -> dict:
    """{folder: {(part, part): [module -> module, ...]}} for every import between two modules of one
    package: the folder is the deepest folder holding both, a part is what sits directly in it (a module,
    or a subfolder standing for everything under it)."""
    out = {}
    for a, targets in module_graph(sources).items():
        sa = _segments(a, sources[a][0])
        for b in targets:
            sb = _segments(b, sources[b][0])
            k = next(i for i, (x, y) in enumerate(zip(sa, sb)) if x != y)
            if k < 2:                      # between packages: the package rule (upward_imports) applies
                continue
            out.setdefault(".".join(sa[:k]), {}).setdefault((sa[k], sb[k]), []).append(f"{a} -> {b}")
    return out


def upward_inside_packages(sources: dict) -> list:
    """Inside every folder of a package the parts must have a ranking: their import graph has no circle
    (deploy's cli above bench above verify above backends, train's run above methods above checkpoint and
    spec, ...). An import is upward when it closes a circle between parts; each is listed as
    'folder: part -> part (module -> module)'."""
    bad = []
    for folder, edges in sorted(part_edges(sources).items()):
        graph = {}
        for x, y in edges:
            graph.setdefault(x, set()).add(y)
            graph.setdefault(y, set())
        for circle in circles(graph):
            bad += [f"{folder}: {x} -> {y} ({', '.join(sorted(edges[x, y]))})"
                    for (x, y) in sorted(edges) if x in circle and y in circle]
    return bad


def private_imports(sources: dict) -> list:
    """'module imports name from module' for every `_private` name (one underscore, not a dunder) that a
    module imports from another module of the product (a relative import included)."""
    bad = []
    for mod, (is_pkg, src) in sorted(sources.items()):
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            if base != mod and _package_of(base) in PACKAGES:
                bad += [f"{mod} imports {a.name} from {base}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_import_direction():
    assert upward_imports(project_sources()) == []


def test_no_import_circles():
    assert circles(module_graph(project_sources())) == []


def test_the_graph_checks_catch_an_injected_circle_and_upward_import():
    src = project_sources()
    assert circles(module_graph(src)) == [] and upward_imports(src) == []
    # a circle of two modules: rules already imports mapper; mapper importing rules back closes it
    faulty = dict(src)
    is_pkg, text = faulty["saf.hw_targets.mapper"]
    faulty["saf.hw_targets.mapper"] = (is_pkg, text + "\nfrom saf.hw_targets.rules import RULES\n")
    assert ["saf.hw_targets.mapper", "saf.hw_targets.rules"] in circles(module_graph(faulty))
    # a circle through a package face: a submodule importing the package that re-exports it
    faulty = dict(src)
    is_pkg, text = faulty["saf.deploy.verify.core"]
    faulty["saf.deploy.verify.core"] = (is_pkg, text + "\nfrom saf.deploy.verify import verify as _v\n")
    assert any("saf.deploy.verify" in c and "saf.deploy.verify.core" in c for c in circles(module_graph(faulty)))
    # a relative import climbing out of train into deploy, and an absolute one from export
    faulty = dict(src)
    is_pkg, text = faulty["saf.train.spec"]
    faulty["saf.train.spec"] = (is_pkg, text + "\nfrom ..deploy.cli import main\n")
    is_pkg, text = faulty["saf.export.ir"]
    faulty["saf.export.ir"] = (is_pkg, text + "\ndef _f():\n    import saf.deploy.stats\n")
    # the floor importing a package above it, lazily inside a function
    is_pkg, text = faulty["saf.core.outdir"]
    faulty["saf.core.outdir"] = (is_pkg, text + "\ndef _g():\n    from saf.train.spec import SpecError\n")
    assert upward_imports(faulty) == ["saf.core.outdir imports ['train']", "saf.export.ir imports ['deploy']",
                                      "saf.train.spec imports ['deploy']"]


def errors_outside_the_base(sources: dict) -> list:
    """'module.Class' for every exception class the product defines that does not derive from SafError
    (core/errors.py). Bases are followed by name through the product's own classes; a base from outside
    is an exception when it is one of Python's Exception classes or its name ends in Error/Exception
    (pickle.UnpicklingError). KeyboardInterrupt's subclasses (a signal, not an error) are no Exception."""
    bases, defined = {}, []
    for mod, (_, src) in sorted(sources.items()):
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, []).extend(ast.unparse(b).split(".")[-1] for b in node.bases)
                defined.append((mod, node.name))

    def derives(name: str, test, seen=frozenset()) -> bool:
        if test(name):
            return True
        return name in bases and name not in seen and any(derives(b, test, seen | {name}) for b in bases[name])

    def outside_exception(name: str) -> bool:
        obj = getattr(builtins, name, None)
        if isinstance(obj, type):
            return issubclass(obj, Exception)
        return name not in bases and name.endswith(("Error", "Exception"))

    return [f"{mod}.{name}" for mod, name in defined
            if derives(name, outside_exception) and not derives(name, lambda n: n == "SafError")]


def test_every_error_class_derives_from_saferror():
    assert errors_outside_the_base(project_sources()) == []


def test_the_error_check_catches_an_injected_class():
    faulty = dict(project_sources())
    is_pkg, text = faulty["saf.export.ir"]
    faulty["saf.export.ir"] = (is_pkg, text + "\nclass LayerKindError(ValueError):\n    pass\n"
                               "\nclass Late(LayerKindError):\n    pass\n")
    is_pkg, text = faulty["saf.train.data.safe_pickle"]
    faulty["saf.train.data.safe_pickle"] = (is_pkg, text + "\nclass Refused(pickle.UnpicklingError):\n    pass\n")
    assert errors_outside_the_base(faulty) == ["saf.export.ir.LayerKindError", "saf.export.ir.Late",
                                               "saf.train.data.safe_pickle.Refused"]


def test_no_upward_imports_inside_packages():
    assert upward_inside_packages(project_sources()) == []


def test_no_private_names_imported_across_modules():
    assert private_imports(project_sources()) == []


def test_the_inside_checks_catch_an_injected_upward_import_and_private_name():
    faulty = dict(project_sources())
    # backends is below bench (bench/infer.py runs the backends): backends importing bench closes a circle
    is_pkg, text = faulty["saf.deploy.backends.registry"]
    faulty["saf.deploy.backends.registry"] = (is_pkg, text + "\nfrom saf.deploy.bench.peak import PEAK_FRACTION_GOAL\n")
    # one folder deeper: FP's simulator importing its trainer, lazily
    is_pkg, text = faulty["saf.train.methods.fp.sim"]
    faulty["saf.train.methods.fp.sim"] = (is_pkg, text + "\ndef _t():\n    from . import train\n")
    bad = upward_inside_packages(faulty)
    assert "saf.deploy: backends -> bench (saf.deploy.backends.registry -> saf.deploy.bench.peak)" in bad, bad
    assert "saf.train.methods.fp: sim -> train (saf.train.methods.fp.sim -> saf.train.methods.fp.train)" in bad, bad
    assert all(b.startswith(("saf.deploy: ", "saf.train.methods.fp: ")) for b in bad), bad
    # a private name, absolute and relative
    is_pkg, text = faulty["saf.export.pipeline.grid"]
    faulty["saf.export.pipeline.grid"] = (is_pkg, text + "\nfrom saf.export.quantize import _spiking_layer\n"
                                          "from ..ir import _private_helper, __all__\n")
    assert private_imports(faulty) == ["saf.export.pipeline.grid imports _spiking_layer from saf.export.quantize",
                                       "saf.export.pipeline.grid imports _private_helper from saf.export.ir"]


def test_only_the_lava_backend_imports_lava():
    bad = [str(p.relative_to(ROOT)) for p in _sources()
           if "lava" in {_package_of(n) for n in _imported_names(_module_name(p), p.name == "__init__.py",
                                                                  p.read_text())}
           and not str(p.relative_to(ROOT)).startswith(LAVA_OK)]
    assert not bad, bad
    code = ("import sys, saf.deploy.cli.train, saf.deploy.cli.export, saf.deploy.cli.run, saf.deploy.backends.registry, "
            "saf.deploy.verify, saf.deploy.backends.emulator, saf.deploy.backends.onnx_runner, saf.export.pipeline.snn, "
            "saf.deploy.lava.model_listing; "
            "sys.exit(1 if any(m.split('.')[0] == 'lava' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_modules_stay_small_and_folders_readable():
    big = [f"{p.relative_to(ROOT)}: {n}" for p in _sources()
           if (n := len(p.read_text().splitlines())) > MODULE_LINES_MAX]
    big += [f"{p.relative_to(ROOT)}: {n}" for p in _script_sources("tests")
            if (n := len(p.read_text().splitlines())) > TEST_LINES_MAX]
    assert not big, big
    per_folder = {}
    for p in _sources():
        if p.name != "__init__.py":
            per_folder.setdefault(str(p.parent.relative_to(ROOT)), []).append(p.name)
    crowded = {d: len(ms) for d, ms in per_folder.items() if len(ms) > FOLDER_MODULES_MAX}
    assert not crowded, crowded


# Tests and measurement scripts reach the product only through its public names, share code only through the
# package tests/saf_test_helpers (on sys.path through pyproject.toml's pytest `pythonpath`), and never edit
# sys.path; a measurement script imports no test.
SCRIPT_DIRS = ("tests", "docs/measure")
NAMEDTUPLE_API = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}   # public despite the "_"


def _script_sources(folder: str) -> list:
    return sorted((ROOT / folder).rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def sys_path_edits(source: str) -> list:
    """Line numbers where a source touches sys.path (through any name `sys` is bound to, or `from sys import
    path`) or calls site.addsitedir."""
    tree, sys_names, lines = ast.parse(source), {"sys"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sys_names |= {a.asname for a in node.names if a.name == "sys" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "site") and \
                any(a.name in ("path", "addsitedir") for a in node.names):
            lines.add(node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (node.attr == "addsitedir" or (
                node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id in sys_names)):
            lines.add(node.lineno)
    return sorted(lines)


def private_saf_names(source: str) -> list:
    """`_private` names of saf a source uses, as far as ast sees: imported (`from saf.x import _y`, a module
    path with a private part), read as an attribute of a name bound by an import from saf (`x._y`), or named
    by a string to (monkeypatch.)setattr/getattr (`setattr(x, "_y", v)`, `monkeypatch.setattr("saf.x._y", v)`)."""
    tree, bound, out = ast.parse(source), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in (a for a in node.names if a.name.split(".")[0] == "saf"):
                out += [a.name] if any(_is_private(p) for p in a.name.split(".")) else []
                bound.add(a.asname or "saf")
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "saf":
            out += [node.module] if any(_is_private(p) for p in node.module.split(".")) else []
            out += [f"{node.module}.{a.name}" for a in node.names if _is_private(a.name)]
            bound |= {a.asname or a.name for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in NAMEDTUPLE_API:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                out.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "setattr", "getattr", "delattr") and node.args:
            out += _private_by_string(node.args, bound)
    return out


def _private_by_string(args: list, bound: set) -> list:
    """setattr(x, "_y", ...) on a name bound from saf, or monkeypatch.setattr("saf.x._y", ...)."""
    first, name = args[0], args[1] if len(args) > 1 else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("saf."):
        return [first.value] if any(_is_private(p) for p in first.value.split(".")) else []
    root = first
    while isinstance(root, ast.Attribute):
        root = root.value
    if isinstance(root, ast.Name) and root.id in bound and isinstance(name, ast.Constant) and \
            isinstance(name.value, str) and _is_private(name.value):
        return [f"{ast.unparse(first)}.{name.value}"]
    return []


def names_of_tests() -> set:
    """Top-level names a test module or the tests' shared code is importable as (tests/ on sys.path), and
    `tests` itself."""
    tests = ROOT / "tests"
    return ({"tests"} | {p.stem for p in tests.glob("*.py")}
            | {p.name for p in tests.iterdir() if (p / "__init__.py").is_file()})


def imports_of_tests(source: str, names: set) -> list:
    """Modules a source imports whose top-level name is one of the tests' (names)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
        out += [m for m in mods if m.split(".")[0] in names]
    return out


def test_no_sys_path_edits_in_tests_or_measurement_scripts():
    bad = {str(p.relative_to(ROOT)): lines for d in SCRIPT_DIRS for p in _script_sources(d)
           if (lines := sys_path_edits(p.read_text()))}
    assert not bad, bad


def test_tests_use_no_private_saf_names():
    bad = {str(p.relative_to(ROOT)): names for p in _script_sources("tests")
           if (names := private_saf_names(p.read_text()))}
    assert not bad, bad


def test_measurement_scripts_import_no_tests():
    names = names_of_tests()
    assert {"tests", "conftest", "test_layout", "saf_test_helpers"} <= names
    bad = {str(p.relative_to(ROOT)): mods for p in _script_sources("docs/measure")
           if (mods := imports_of_tests(p.read_text(), names))}
    assert not bad, bad


def test_tests_share_code_only_through_saf_test_helpers():
    """A test module imports no other test module (nor conftest): what tests share lives in saf_test_helpers."""
    names = names_of_tests() - {"saf_test_helpers"}
    bad = {str(p.relative_to(ROOT)): mods for p in _script_sources("tests")
           if (mods := imports_of_tests(p.read_text(), names))}
    assert not bad, bad


def test_the_test_checks_catch_injected_cases():
    assert sys_path_edits("import sys\nprint(sys.argv)\n") == []
    assert sys_path_edits("import os\nimport sys\nsys.path.insert(0, os.path.dirname(__file__))\n") == [3]
    assert sys_path_edits("import sys as s\ns.path.append('x')\n") == [2]
    assert sys_path_edits("from sys import path\n") == [1]
    assert sys_path_edits("import site\nsite.addsitedir('x')\n") == [2]
    assert private_saf_names("from saf.deploy.backends.emulator import emulate\nemulate._replace\n") == []
    assert private_saf_names("from saf.deploy.backends.emulator import _Plan, emulate\n") == [
        "saf.deploy.backends.emulator._Plan"]
    assert private_saf_names("import saf.export.bundle.store as store\nstore._initial_current({}, {})\n") == [
        "store._initial_current"]
    assert private_saf_names("import saf.deploy.backends.emulator\nsaf.deploy.backends.emulator._Plan(g)\n") == [
        "saf.deploy.backends.emulator._Plan"]
    assert private_saf_names("from saf.train._hidden import x\n") == ["saf.train._hidden"]
    assert private_saf_names("import numpy as np\nnp._NoValue\n") == []
    assert private_saf_names("import saf.deploy.backends.emulator_layers as el\n"
                             "monkeypatch.setattr(el, '_unpooled', f)\nmonkeypatch.setattr(el, 'unpooled', f)\n"
                             ) == ["el._unpooled"]
    assert private_saf_names("monkeypatch.setattr('saf.deploy.backends.emulator._Plan', f)\n") == [
        "saf.deploy.backends.emulator._Plan"]
    assert private_saf_names("import numpy as np\nmonkeypatch.setattr(np, '_x', f)\n") == []
    names = {"tests", "nir_nets", "saf_test_helpers", "test_data"}
    assert imports_of_tests("import numpy\nfrom saf.train.data import load_dataset\n", names) == []
    assert imports_of_tests("import nir_nets as N\n", names) == ["nir_nets"]
    assert imports_of_tests("from saf_test_helpers.nir_nets import digits\n", names) == ["saf_test_helpers.nir_nets"]
    assert imports_of_tests("def f():\n    from test_data import idx_bytes\n", names) == ["test_data"]
    assert imports_of_tests("from tests.lava import x\n", names) == ["tests.lava"]
