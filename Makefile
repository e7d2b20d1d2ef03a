# Two commands: `make demo` and `make test`. Each builds its own Python 3.10 virtualenv from nothing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-out

# lava-nc 0.10.0 needs Python 3.10. Prefer $(PYTHON310) if given, else pyenv's 3.10, else python3.10 on PATH.
PYTHON310 ?= $(shell \
  for p in $$( (pyenv root 2>/dev/null || echo $$HOME/.pyenv) | sed 's|$$|/versions|' | xargs -I{} sh -c 'ls -d {}/3.10*/bin/python3.10 2>/dev/null' ) \
           /usr/bin/python3.10 /usr/local/bin/python3.10 python3.10; do \
    if "$$p" -c 'import sys; assert sys.version_info[:2]==(3,10)' >/dev/null 2>&1; then echo "$$p"; break; fi; \
  done)

.PHONY: demo test venv clean venv-sinabs test-sinabs sinabs-fixture

# Sinabs 3.1.3 pins nir<=1.0.4 and saf nir==1.0.8 (pip: ResolutionImpossible), so Sinabs gets its own venv: it writes
# its NIR file there, and saf's .venv imports, deploys and verifies it (tests/sinabs_suite/, docs/nir.md).
SINABS_VENV ?= .venv-sinabs
SINABS_PY := $(SINABS_VENV)/bin/python
SINABS_PINS := sinabs==3.1.3 nir==1.0.4 nirtorch==2.0.2 samna==0.48.6 'numpy<2' 'torch>=2.1' scikit-learn==1.7.2 'pytest>=7'

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "error: Python 3.10 not found (lava-nc 0.10.0 requires it). Install it (e.g. 'pyenv install 3.10.13') or pass PYTHON310=/path/to/python3.10." >&2; exit 1; fi
	@echo "using $(PYTHON310)"
	"$(PYTHON310)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# lava-dl 0.6.0 (netx import/export tests, the `netx` verify backend) pins torch<2.4 but runs beside lava-nc 0.10.0
	# and current torch: install it without its deps so pip leaves torch/numpy alone (cv2 is needed by its import).
	$(PY) -m pip install -q --no-deps lava-dl==0.6.0 opencv-python-headless==5.1.0.95
	touch $@

venv: $(VENV)/.installed

$(SINABS_VENV)/.installed: Makefile
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "error: Python 3.10 not found (the Sinabs venv uses the same Python as .venv). Install it (e.g. 'pyenv install 3.10.13') or pass PYTHON310=/path/to/python3.10." >&2; exit 1; fi
	@echo "using $(PYTHON310)"
	"$(PYTHON310)" -m venv $(SINABS_VENV)
	$(SINABS_PY) -m pip install -q --upgrade pip
	$(SINABS_PY) -m pip install -q $(SINABS_PINS)
	touch $@

venv-sinabs: $(SINABS_VENV)/.installed

# The Sinabs suite (not part of `make test`, whose pytest never collects tests/sinabs_suite/suite.py): Sinabs writes its
# CNN's NIR file, saf's venv (SAF_PYTHON) imports, deploys and verifies it, and the file must equal the committed
# fixture tests/golden/sinabs-cnn, which `make test` checks on every run. PYTEST_DISABLE_PLUGIN_AUTOLOAD: saf's pytest
# plugin is registered by .venv's editable install (saf_toolchain.egg-info here) and saf is not in the Sinabs venv.
test-sinabs: venv venv-sinabs
	SAF_PYTHON="$(abspath $(PY))" PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(SINABS_PY) -m pytest -q tests/sinabs_suite/suite.py

# Rewrite the committed Sinabs fixture (after an intended change to tests/sinabs_suite/sinabs_cnn.py).
sinabs-fixture: venv-sinabs
	$(SINABS_PY) tests/sinabs_suite/sinabs_cnn.py --out tests/golden/sinabs-cnn

demo: venv
	$(VENV)/bin/saf demo --out $(DEMO_OUT) --force

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(SINABS_VENV) $(DEMO_OUT)
