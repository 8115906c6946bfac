# FastAPI in Production: the two commands.
#   make lab    create .venv (once) and open JupyterLab on the course
#   make test   everything CI runs (.ci/run calls exactly this)
#   make test-tools  the course's test tools (Playwright, schemathesis) in .venv-test, apart from
#                    the learner's .venv; `make test` builds it first
#   make site        the course as a website (build/site), from the executed notebooks; make site-tools
#                    installs Sphinx + MyST-NB into .venv-site (requirements-site.txt); make test builds it
#   make pages       ERRORS.md, IMPACT.md and workshop/INSTRUCTORS.md again, from their sources and the
#                    executed notebooks (course/pages/)
#   make test-probe  course probe on every known mistake of every module (tests/test_probe_apps.py,
#                    marked probe_full: the finding each teaches, or why it is invisible from outside);
#                    not in `make test` (several minutes); .ci/run runs it after `make test`

# The course runs on Python 3.11 to 3.13 (pyproject.toml's requires-python; tests/test_environment.py
# keeps the two lists in step). Without PYTHON=..., make takes the first that runs, newest first:
# python3.13, python3.12, python3.11 on PATH, then pyenv's installed versions. "Runs" matters: a
# pyenv shim exists for every version pyenv knows and fails for those not selected.
SUPPORTED_PYTHONS := 3.13 3.12 3.11
# Looked up once, and only when a recipe needs it (a pyenv shim takes a moment to answer).
ifndef PYTHON
PYTHON = $(eval PYTHON := $(shell \
  runs() { "$$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$$2')" >/dev/null 2>&1; }; \
  for v in $(SUPPORTED_PYTHONS); do runs python$$v $$v && { echo python$$v; exit 0; }; done; \
  root=$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}"); \
  for v in $(SUPPORTED_PYTHONS); do \
    for p in $$(ls -d "$$root"/versions/$$v.*/bin/python$$v 2>/dev/null | sort -rV); do \
      runs "$$p" $$v && { echo "$$p"; exit 0; }; done; done))$(PYTHON)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_ARGS ?=
TEST_VENV  := .venv-test
TEST_STAMP := $(TEST_VENV)/.installed
SITE_VENV  := .venv-site
SITE_STAMP := $(SITE_VENV)/.installed

.PHONY: lab test venv test-tools site-tools strip clean-venv site pages doctor test-probe

venv: $(STAMP)

# Rebuilt only when the pins change: a second `make lab` installs nothing.
$(STAMP): requirements.txt requirements-lock.txt pyproject.toml
	@test -n "$(PYTHON)" || { \
	  echo "The course needs Python 3.13, 3.12 or 3.11, and none was found (looked for python3.13,"; \
	  echo "python3.12 and python3.11 on PATH, then in pyenv's versions)."; \
	  echo "Install one (pyenv install 3.13, apt install python3.12, brew install python@3.13, or conda)"; \
	  echo "and run make lab again, or point make at it: make lab PYTHON=/path/to/python3.13"; \
	  exit 1; }
	@$(PYTHON) -c 'import sys; assert "%d.%d" % sys.version_info[:2] in "$(SUPPORTED_PYTHONS)".split()' 2>/dev/null || { \
	  echo "The course needs Python 3.13, 3.12 or 3.11: '$(PYTHON)' does not run or is another version."; \
	  echo "Install one (pyenv install 3.13, apt install python3.12, brew install python@3.13, or conda)"; \
	  echo "or point make at it: make lab PYTHON=/path/to/python3.13"; \
	  exit 1; }
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements-lock.txt && \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . && \
	touch $(STAMP) && echo "environment ready in $$(( $$(date +%s) - start )) s ($(VENV))"

# The tools the course's own tests drive (a browser driver, an API fuzzer): never in the learner's
# .venv. Rebuilt only when their pins change, like the main venv: a second run installs nothing.
test-tools: $(TEST_STAMP)

$(TEST_STAMP): requirements-test.txt requirements-test-lock.txt
	@test -n "$(PYTHON)" || { echo "The test tools need Python 3.11 to 3.13: make test-tools PYTHON=/path/to/python3.13"; exit 1; }
	@start=$$(date +%s); \
	test -x $(TEST_VENV)/bin/python || $(PYTHON) -m venv $(TEST_VENV); \
	$(TEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt -c requirements-test-lock.txt && \
	touch $(TEST_STAMP) && echo "test tools ready in $$(( $$(date +%s) - start )) s ($(TEST_VENV))"

# The site's build tools (Sphinx, MyST-NB, Furo; requirements-site.txt): never in the learner's
# .venv, nor among the test tools. Rebuilt only when their pins change.
site-tools: $(SITE_STAMP)

$(SITE_STAMP): requirements-site.txt requirements-site-lock.txt
	@test -n "$(PYTHON)" || { echo "The site tools need Python 3.11 to 3.13: make site-tools PYTHON=/path/to/python3.13"; exit 1; }
	@start=$$(date +%s); \
	test -x $(SITE_VENV)/bin/python || $(PYTHON) -m venv $(SITE_VENV); \
	$(SITE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-site.txt -c requirements-site-lock.txt && \
	touch $(SITE_STAMP) && echo "site tools ready in $$(( $$(date +%s) - start )) s ($(SITE_VENV))"

lab: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.lab $(LAB_ARGS)

test: venv test-tools site-tools
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.testrun

# The probe's full table: every known mistake (tests/test_probe_apps.py::test_probe_mistakes), two
# probes at a time, on a machine to itself (it measures the event loop's lag under a burst).
# PROBE_ARGS goes to pytest.
PROBE_ARGS ?=
test-probe: venv test-tools
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/test_probe_apps.py -m probe_full -v -s \
	  -p no:randomly -p no:xdist $(PROBE_ARGS)

# The course as a website (build/site/index.html), from the notebooks as the notebook test executed
# them (build/executed); a notebook whose saved copy is missing or stale is executed first.
site: venv site-tools
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.pages.site

# The generated pages: ERRORS.md, IMPACT.md, workshop/INSTRUCTORS.md (course/pages/), from the
# sources and the executed notebooks (executing those missing or stale). tests/test_pages.py keeps
# them equal; run this after changing a notebook, a mistake, a hint or course/pages/*.
pages: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.pages write

# Clear outputs from every notebook (they are stored without outputs).
strip: venv
	@$(BIN)/python -m course.tooling.nbtools strip notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)

# The workshop hub (workshop/README.md).
#   make hub-tools      JupyterHub in .venv-hub (workshop/requirements-hub.txt) and
#                       configurable-http-proxy in workshop/node_modules (workshop/package-lock.json),
#                       apart from the learner's .venv; installed again only when their pins change
#   make test-workshop  a real hub on 127.0.0.1, 5 learners running notebook 01 and the grader at
#                       once (workshop/tests/); .ci/run runs it after `make test`
HUB_VENV   := .venv-hub
HUB_STAMP  := $(HUB_VENV)/.installed
PROXY_STAMP := workshop/node_modules/.installed
WORKSHOP_ARGS ?=
.PHONY: hub-tools test-workshop

hub-tools: $(HUB_STAMP) $(PROXY_STAMP)

$(HUB_STAMP): workshop/requirements-hub.txt
	@test -n "$(PYTHON)" || { echo "The workshop hub needs Python 3.11 to 3.13: make hub-tools PYTHON=/path/to/python3.11"; exit 1; }
	@start=$$(date +%s); \
	test -x $(HUB_VENV)/bin/python || $(PYTHON) -m venv $(HUB_VENV); \
	$(HUB_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r workshop/requirements-hub.txt && \
	touch $(HUB_STAMP) && echo "hub environment ready in $$(( $$(date +%s) - start )) s ($(HUB_VENV))"

# npm ci installs exactly the lock file (and empties node_modules first, stamp included).
$(PROXY_STAMP): workshop/package.json workshop/package-lock.json
	@command -v npm >/dev/null || { echo "The workshop hub needs Node.js 20 or newer with npm (apt install nodejs npm)"; exit 1; }
	@start=$$(date +%s); \
	cd workshop && npm ci --no-fund --no-audit --loglevel=error && touch node_modules/.installed && \
	echo "configurable-http-proxy $$(node_modules/.bin/configurable-http-proxy --version) ready in $$(( $$(date +%s) - start )) s (workshop/node_modules)"

test-workshop: venv hub-tools
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest workshop/tests -v -p no:xdist $(WORKSHOP_ARGS)

# Maintenance: the same course on other Pythons, repeated, and on the newest libraries.
#   make test-python  `make test`'s suite on every supported Python found, each in a venv of its
#                     own (.venv-3.12, .venv-3.13; the version .venv was built with runs in .venv),
#                     then one line per version. VERSIONS="3.12 3.13" runs only those.
#   make test-repeat  every notebook and every grader proof three times in a row (REPEAT=n), then
#                     per test how many runs passed: a flaky test shows as 2/3.
#   make test-latest  the canary: notebooks and grader proofs in .venv-latest, rebuilt with the
#                     NEWEST releases of requirements.txt's packages (no pins, no lock); prints each
#                     failed cell and unmet expectation. A failure means a library changed what a
#                     lesson reproduces, not necessarily a bug.
#   make bench        the time budgets (each notebook, `course check NN --target solutions`, a warm
#                     `course list`, the venv from nothing), measured one at a time, beside the last
#                     recorded run (bench/last.json, rewritten) and as ratios to a floor measured in
#                     the same run; fails only when a ratio passes its limit. `make test` asserts no
#                     seconds. ARGS='--no-record', '--only check -m 04', '--no-lab' (see --help).
# ARGS goes to the runner: make test-repeat ARGS='-k "00_start_here or 01-held_session"'
VERSIONS ?=
REPEAT   ?= 3
ARGS     ?=
.PHONY: test-python test-repeat test-latest bench

test-python: venv test-tools
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.pythons test $(VERSIONS) -- $(ARGS)

test-repeat: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.repeat --times $(REPEAT) $(ARGS)

test-latest: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.latest --python "$(PYTHON)" $(ARGS)

bench: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.bench $(ARGS)
