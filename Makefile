# Kameng: `make run` serves the demo, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,production]'
	$(BIN)/pybabel compile --statistics -d kameng/translations 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kameng db upgrade
	PUBLIC_PORT=$(PORT) $(BIN)/kameng demo
	$(BIN)/kameng serve --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/kameng serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
