# Shortcuts for developers; the README's commands and .ci/run call scripts/ directly.
.PHONY: setup demo test lint migration

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/pyqueue demo

test: setup
	.venv/bin/python -m pytest

lint:
	bash scripts/lint.sh

# The newest migration carries the code of sql/ that changed (scripts/migration.py
# says how); tests/test_schema.py checks that sql/ and the migrations build the
# same schema. NAME=... starts a new migration once the newest one has landed.
migration:
	python3 scripts/migration.py $(if $(NAME),new $(NAME),refresh)
