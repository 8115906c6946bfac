# FastAPI in Production: the two commands.
#   make lab    create .venv (once) and open JupyterLab on the course
#   make test   everything CI runs (.ci/run calls exactly this)

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_ARGS ?=

.PHONY: lab test venv strip clean-venv

venv: $(STAMP)

# Rebuilt only when the pins change: a second `make lab` installs nothing.
$(STAMP): requirements.txt requirements-lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || { \
	  echo "The course needs Python 3.11 ('$(PYTHON)' not found or another version)."; \
	  echo "Install it (pyenv install 3.11, apt install python3.11, or conda) or run: make lab PYTHON=/path/to/python3.11"; \
	  exit 1; }
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements-lock.txt && \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . && \
	touch $(STAMP) && echo "environment ready in $$(( $$(date +%s) - start )) s ($(VENV))"

lab: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.lab $(LAB_ARGS)

test: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m course.tooling.testrun

# Clear outputs from every notebook (they are stored without outputs).
strip: venv
	@$(BIN)/python -m course.tooling.nbtools strip notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
