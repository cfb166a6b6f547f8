# Kameng: `make run` serves the demo, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run serve test lint bench clean translations

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

# Collect every message (Python, console and theme templates, theme.json labels) into the
# template catalog, then merge it into the Chinese catalog (its folder is zh_Hans_CN, see
# kameng/i18n.py): new msgids arrive empty, ready to translate; tests/test_translations.py lists
# what is still missing.
translations: install
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords _l --keywords lazy_gettext \
		--keywords N_ --keywords ngettext:1,2 --keywords lazy_ngettext:1,2 \
		--add-comments Translators: --sort-by-file \
		--project Kameng --msgid-bugs-address "" --no-wrap \
		--output-file kameng/translations/messages.pot .
	$(BIN)/pybabel update --input-file kameng/translations/messages.pot \
		--output-dir kameng/translations --locale zh_Hans_CN --no-wrap --no-fuzzy-matching
	$(BIN)/pybabel compile --statistics --directory kameng/translations

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
