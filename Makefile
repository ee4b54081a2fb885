# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
EXAMPLE ?= examples/haproxy-programs.cfg
RUNDIR ?= $(CURDIR)/run

.PHONY: run test lint crd bench images clean

$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[operator,test]'
	touch $(VENV)/.installed-run $@

## run: start progset-supervisor on the bundled example (Ctrl-C stops it)
run: $(VENV)/.installed-run
	@mkdir -p $(RUNDIR)
	@echo "Master CLI socket: $(RUNDIR)/master.sock  (try: echo 'show proc' | socat $(RUNDIR)/master.sock -)"
	@echo "Metrics:           http://127.0.0.1:9127/metrics"
	$(VENV)/bin/progset-supervisor -f $(EXAMPLE) -S $(RUNDIR)/master.sock -p $(RUNDIR)/progset.pid \
		--metrics-address 127.0.0.1:9127

## test: install test dependencies into .venv and run the whole suite
test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check supervisor operator tests bench
	$(PY) -m pytest -n 2 -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check supervisor operator tests bench

## crd: regenerate charts/progset/crds/ from the supervisor's model
crd: $(VENV)/.installed-test
	$(VENV)/bin/progset-operator crd > charts/progset/crds/programsets.progset.io.yaml

## bench: compare progset with supervisord and HAProxy (see bench/README.md)
bench: $(VENV)/.installed-test
	$(PY) bench/supervisor_bench.py

## images: build progset-supervisor, progset-operator and progset-bundle offline from a wheelhouse
##         (BASE_IMAGE: any image with python3 of version IMAGE_PYTHON; IMAGE_PREFIX: e.g. registry/team/)
BASE_IMAGE ?= python:3.11.13-slim-bookworm
IMAGE_PYTHON ?= 3.11
IMAGE_PREFIX ?=
images: $(VENV)/.installed-run
	$(PY) images/build.py --base $(BASE_IMAGE) --python $(IMAGE_PYTHON) --prefix "$(IMAGE_PREFIX)"

clean:
	rm -rf $(VENV) $(RUNDIR) .pytest_cache .ruff_cache
