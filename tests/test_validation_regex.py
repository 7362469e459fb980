"""Names validated by a regular expression must match it whole: ``$`` in Python also matches just before a
trailing newline, so ``re.match(r"^name$", "name\n")`` accepts a name that ends in a newline (issue 14, item 9).
Each validating pattern in aicost is checked here with that input."""

from __future__ import annotations

import pytest

import aicost
from aicost.budget.config import parse_scope
from aicost.cache.pgvector_store import PgVectorStore
from aicost.errors import ConfigurationError


def test_attribute_rejects_a_tag_name_ending_in_a_newline() -> None:
    with pytest.raises(ValueError, match="tag name"):
        with aicost.attribute(**{"region\n": "eu"}):
            pass
    with aicost.attribute(**{"region": "eu"}):  # the same name without the newline is fine
        pass


def test_budget_scope_rejects_a_tag_name_ending_in_a_newline() -> None:
    assert parse_scope("tag.region", "Budget") == "tag.region"
    with pytest.raises(ConfigurationError, match="invalid tag name"):
        parse_scope("tag.region\n", "Budget")


def test_pgvector_table_name_ending_in_a_newline_is_refused() -> None:
    # The table name is written into SQL: it must be exactly an identifier.
    with pytest.raises(ValueError, match="SQL identifier"):
        PgVectorStore(connect=lambda: None, table="aicost_cache\n")


def test_model_name_patterns_do_not_match_across_a_trailing_newline() -> None:
    from aicost.pricing import names

    assert names.bedrock_anthropic("anthropic.claude-3-haiku-20240307-v1:0") == "claude-3-haiku-20240307"
    assert names.bedrock_anthropic("anthropic.claude-3-haiku-20240307-v1:0\n") is None
    assert names.looks_self_hosted("llama3.1:latest")
    assert not names.looks_self_hosted("llama3.1:latest\n")
