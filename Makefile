# switchd developer entry points. `make run` and `make test` are the whole quick start.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := var
CONFIG ?= conf/switchd.toml
# Debian packages the project runs and tests against (SoftHSM token, xmlsec1 checks, a real sshd/sftp).
APT_PACKAGES := softhsm2 xmlsec1 openssh-server openssh-client sqlite3 libxml2 libxslt1.1 curl

.PHONY: setup bytecode run test lint bench clean-data schemas

setup: $(VENV)/.installed $(DATA)/.ready bytecode

# The project's own modules compiled ahead, as pip does for the dependencies: where PYTHONDONTWRITEBYTECODE is set
# (CI images often set it) every start of the daemon and of each of its worker processes would compile them all
# again (~0.1-0.2 s). Quick when nothing changed; an edited module is still compiled afresh when imported.
bytecode: $(VENV)/.installed
	@$(BIN)/python -m compileall -q switchd adapters hsm

$(VENV)/.debian:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run 'make setup' as root, or install them)"; exit 1; fi; \
	fi
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.installed: $(VENV)/.debian setup.cfg pyproject.toml tests/reference-requirements.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps -r tests/reference-requirements.txt
	@touch $@

$(DATA)/.ready:
	@mkdir -p $(DATA)
	@touch $@

run: setup
	$(BIN)/switchctl --config $(CONFIG) hsm init-dev  # idempotent: the SoftHSM dev token under the data dir
	$(BIN)/switchd run --config $(CONFIG)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy switchd adapters hsm

bench: setup
	$(BIN)/python -m bench.run

schemas: setup
	$(BIN)/python schemas/generate.py

clean-data:
	rm -rf $(DATA)
