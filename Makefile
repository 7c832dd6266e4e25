# Two entry points for a fresh clone: `make demo` and `make test`.
# Each creates .venv and installs the project with the tested pins (constraints.txt) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sweep demo

test: $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadfile   # see tests/conftest.py: LONG_FIRST

clean:
	rm -rf $(VENV) demo-store
