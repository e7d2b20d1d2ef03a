"""Code the tests share: reference models, framework nets, file writers, bundle diffs.

Imported as `saf_test_helpers.<module>`: pytest puts tests/ on sys.path (pyproject.toml's `pythonpath`), so no
test edits sys.path. The name is not `tests.helpers`: lava-dl installs a top-level package `tests` into
site-packages, and the repository root is itself the package `saf` (it has an __init__.py), so a package
`tests/` would be imported by pytest under the checkout's folder name. tests/test_layout.py checks the rules:
no sys.path edits, no private saf names, no measurement script importing tests."""
