# Two commands do all the set-up on a fresh Debian machine:
#   make rehearse   the whole migration rehearsed against the local sandbox
#   make test       the quality gates and the three test tiers
# Both install what they need (apt packages as root, the .venv) and are quick when done.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := docker-registry skopeo podman apache2-utils chromium
APT_COMMANDS := docker-registry skopeo podman htpasswd chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# the browser test (tests/ui) uses Debian's chromium, never a downloaded browser
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export PREFECT_LOGGING_LEVEL ?= INFO

.PHONY: rehearse test lint typecheck importlint pytest bench deps apt clean

rehearse: deps
	$(BIN)/mmrv-migrate rehearse

test: deps lint typecheck importlint pytest

lint: deps
	$(BIN)/ruff check migration flows tasks sandbox tests benchmarks
	$(BIN)/ruff format --check -q migration flows tasks sandbox tests benchmarks

typecheck: deps
	$(BIN)/mypy

importlint: deps
	$(BIN)/lint-imports

# Two workers (the machines have 2 cores); a module's tests stay together on one worker,
# so module fixtures (a sandbox of their own) are started once.
pytest: deps
	$(BIN)/pytest -q -n 2 --dist loadfile

bench: deps
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmark has landed yet (see benchmarks/README.md)"; exit 0; }; for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

deps: apt $(VENV)/.installed

apt:
	@missing=""; for c in $(APT_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages (missing:$$missing)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

clean:
	-$(BIN)/mmrv-migrate sandbox down 2>/dev/null
	rm -rf $(VENV) .prefect .sandbox .pytest_cache .mypy_cache .ruff_cache
