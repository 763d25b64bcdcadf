"""Constants written into statements at compile time (``app.kit.sql.constants``)."""

from __future__ import annotations

import pytest
from sqlalchemy import column, select, table
from sqlalchemy.dialects import postgresql, sqlite

from app.incidents.service import _duplicates_query
from app.kit.sql import constant, constants

_t = table("t", column("status"))


@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()])
def test_an_in_over_constants_has_no_parameter_to_expand(dialect):
    compiled = (
        select(_t).where(_t.c.status.in_(constants(["open", "closed"]))).compile(dialect=dialect)
    )
    assert "IN ('open', 'closed')" in str(compiled)
    assert compiled.params == {}  # nothing bound, nothing rewritten per execution


def test_the_duplicate_hint_binds_only_the_incidents_own_values():
    compiled = _duplicates_query(postgresql=True).compile(dialect=postgresql.dialect())
    assert set(compiled.params) == {"category", "since", "incident_id", "minerals", "param_1"}
    assert "'watch', 'reported'" in str(compiled)


@pytest.mark.parametrize("hostile", ["it's", "back\\slash"])
def test_a_value_that_needs_quoting_is_refused(hostile):
    with pytest.raises(ValueError, match="not a plain constant"):
        constants([hostile])


def test_an_integer_constant_is_written_as_it_is():
    compiled = select(_t).where(column("level") < constant(3)).compile(dialect=postgresql.dialect())
    assert "level < 3" in str(compiled)
    assert compiled.params == {}
