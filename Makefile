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

.PHONY: demo test venv clean

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

demo: venv
	$(VENV)/bin/saf demo --out $(DEMO_OUT) --force

test: venv
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_OUT)
