# The two commands of the README:  make run  (the console)  and  make test  (the test suite).
# Both create .venv with a Python 3.12/3.13 they find themselves and install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench demo clean package

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(./scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@./scripts/system-deps
	$(VENV)/bin/uplink-console $(ARGS)

test: $(STAMP)
	@./scripts/system-deps test
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	@./scripts/system-deps
	$(VENV)/bin/uplink-console --demo $(ARGS)

bench: $(STAMP)
	@./scripts/system-deps test
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/uplink-console bench ingest $(ARGS)

# The Linux installers (.deb and .tar.gz in dist/), each unpacked and smoke-tested (packaging/README.md).
package: $(STAMP)
	@./scripts/system-deps
	PYTHON=$(PY) ./packaging/build-linux.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
