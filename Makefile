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

# The first migration is the concatenation of sql/; tests/test_schema.py checks
# that the two build the same schema.
migration:
	{ echo '-- pyqueue schema version 1, generated from sql/[0-9]*.sql by `make migration`.'; \
	  echo '-- Edit sql/ and regenerate; never edit an applied migration by hand.'; \
	  for f in sql/[0-9]*.sql; do echo; echo "-- ==== $$f"; cat $$f; done; } > migrations/0001.initial.sql
