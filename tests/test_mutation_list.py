"""The mutation list of scripts/mutate.py still fits sql/.

The script refuses to run a list that has drifted; these checks say so in CI,
without running a single mutant.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate", REPO / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mutate = load_script()


@pytest.mark.parametrize("mutation", mutate.MUTATIONS, ids=lambda m: m.name)
def test_each_snippet_occurs_once_in_the_body_of_its_function(mutation):
    text = (REPO / "sql" / mutation.file).read_text()
    assert text.count(mutation.original) == 1
    assert mutation.original in mutate.function_body(text, mutation.function)
    assert mutation.replacement != mutation.original


def test_the_list_mutates_every_public_function_and_the_views():
    # Internal functions that hold a public function's logic may be mutated too.
    mutated = {m.function for m in mutate.MUTATIONS}
    assert set(mutate.PUBLIC_API) <= mutated
    assert all(f in mutate.PUBLIC_API or f.startswith("_") for f in mutated)
    assert len(mutate.MUTATIONS) >= 20
    assert mutate.check_list() == []


def test_the_public_api_list_names_every_public_function_of_the_schema(db):
    # A function added to the schema without a mutation fails here, not silently.
    public = {
        name
        for (name,) in db.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'pyqueue' AND p.proname NOT LIKE '\\_%'"
        )
    }
    assert public == set(mutate.PUBLIC_API) - {"views"} | set(mutate.CONSTANTS)


def test_a_drifted_list_is_refused(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(REPO / "sql", sql_dir)
    first, second = mutate.MUTATIONS[:2]
    # One snippet gone from its file, another there twice.
    path = sql_dir / first.file
    path.write_text(path.read_text().replace(first.original, "-- changed"))
    path = sql_dir / second.file
    path.write_text(f"{path.read_text()}\n/* {second.original} */\n")
    assert mutate.check_list(sql_dir) == [
        f"{first.name}: its snippet occurs 0 times in sql/{first.file}",
        f"{second.name}: its snippet occurs 2 times in sql/{second.file}",
    ]
    with pytest.raises(mutate.ListDrifted):
        mutate.apply(first, sql_dir)
