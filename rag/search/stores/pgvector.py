"""PostgreSQL + pgvector backend: passages and sentences with their vectors (HNSW), the project's own Swedish
analysis stored as `tsvector` (GIN) for BM25, statistics kept in the same transaction as every change.

Opened as a `PgIndex`, it has the attributes the pipeline reads from a `CorpusIndex` (`documents`, `passages`,
`sentences`, `passage_sentences`, `passage_vectors`, `sentence_vectors`, `dense`, `lexical`, `manifest`), so the
retriever, the answer builder and the eval run on it unchanged and give the same answers within measured tolerance.
Point RAG_STORE_URL=postgresql://... at a server with the `vector` extension; each model's index is one schema.
"""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from embeddings import Encoder
from rag.ingest.split import PassageSplitter, Sentence
from rag.search.analysis import SwedishAnalyzer, stem
from rag.search.index import SENTENCE_EXACT_MAX, CorpusIndex, make_parts
from rag.search.lexical import Vocabulary
from rag.search.segment import DOC, END, EXTRA, HEADING_FLAG, START, content_sha, text_sha
from rag.search.stores.base import convex_top, postings_top
from rag.search.views import LRU
from rag.types import Document, Passage

HNSW = {"m": 16, "ef_construction": 64}
"""pgvector's HNSW build parameters (its defaults)."""
EF_SEARCH = 400
"""hnsw.ef_search: at least the number of candidates asked for (200 passages), so results are not cut short."""
MAX_POSITIONS = 255
"""A tsvector keeps at most 256 positions per lexeme: term frequencies above this are counted as 255."""


_POSTINGS_OF = ("INSERT INTO {ns}.postings (token, row, tf, length) SELECT u.lexeme, p.row, "
                "array_length(u.positions, 1), p.length FROM {ns}.passages p, unnest(p.tokens) u {where} "
                "ORDER BY u.lexeme, p.row")
"""The postings rows of passages (all, or those `where` selects), from their tsvectors: the same tf as before.
Written in (token, row) order, so that a token's postings sit on neighbouring table pages too (what a read of rows
not yet vacuumed, or a probe, visits)."""

POSTINGS_PACKED = ("SELECT string_agg(int8send(row), ''::bytea ORDER BY row), "
                   "string_agg(int4send(length), ''::bytea ORDER BY row), "
                   "string_agg(int4send(tf), ''::bytea ORDER BY row) FROM {ns}.postings WHERE token = %s")
"""A token's postings as three byte strings (big-endian int64 rows, int32 lengths, int32 tfs), ascending by row."""

POSTINGS_LAYOUT = 2
"""The postings table's layout, in the manifest: 2 = written in (token, row) order under a primary key that covers
tf and length, vacuumed after every change, so a token's postings are an index-only scan (one common token's 88 000
postings at 10^5 passages: 16 ms; in layout 1, written in passage order without the covering index, they lay on
55 000 table pages and took 300 ms)."""


def namespace_for(model: str) -> str:
    """The schema of a model's index: `rag_<model>` in lower-case letters, digits and underscores."""
    return "rag_" + re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:50]


def redact_url(url: str) -> str:
    """A connection URL without its password (for logs and results files)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def int_array(values) -> str:
    """A bigint[] literal ("{1,2,3}") of integers: psycopg adapts a Python list value by value (~17 us per 1 000
    rows as text against ~1.4 ms as a list), and row lists of a thousand are common in one question's lookups."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _lexeme(token: str) -> str:
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(tf: dict[str, int]) -> str:
    """A tsvector holding each token with as many positions as its term frequency (capped at MAX_POSITIONS)."""
    return " ".join(f"{_lexeme(t)}:{','.join(str(i) for i in range(1, min(n, MAX_POSITIONS) + 1))}"
                    for t, n in tf.items())


def _connect(url: str):
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


class PgVectorStore:
    """The `Store` for PostgreSQL with pgvector.

    Parameters
    ----------
    url : str
        postgresql://... (a unix socket: postgresql://user@/db?host=/path).
    namespace : str
        The schema holding this index (one per model).
    """

    name = "pgvector"

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.ns = namespace
        self.conn = _connect(url)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------------------------ schema

    def exists(self) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s)", (f"{self.ns}.meta",)).fetchone()
        return row[0] is not None

    def manifest(self) -> dict | None:
        if not self.exists():
            return None
        row = self.conn.execute(f"SELECT value FROM {self.ns}.meta WHERE key = 'manifest'").fetchone()
        return row[0] if row else None

    def _create(self, cur, ns: str, dim: int) -> None:
        cur.execute(f"CREATE SCHEMA {ns}")
        cur.execute(f"CREATE TABLE {ns}.meta (key text PRIMARY KEY, value jsonb NOT NULL)")
        cur.execute(f"""CREATE TABLE {ns}.documents (doc_id text PRIMARY KEY, meta jsonb NOT NULL, text text NOT NULL,
                        text_sha text NOT NULL, content_sha text NOT NULL)""")
        cur.execute(f"""CREATE TABLE {ns}.passages (row bigint PRIMARY KEY, passage_id text NOT NULL UNIQUE,
                        doc_id text NOT NULL REFERENCES {ns}.documents ON DELETE CASCADE, start int NOT NULL,
                        stop int NOT NULL, heading text NOT NULL, title text NOT NULL, text text NOT NULL,
                        length int NOT NULL, tokens tsvector NOT NULL, unique_tokens text[] NOT NULL,
                        context text[] NOT NULL, sentence_rows bigint[] NOT NULL, embedding vector({dim}) NOT NULL)""")
        cur.execute(f"""CREATE TABLE {ns}.sentences (row bigint PRIMARY KEY,
                        doc_id text NOT NULL REFERENCES {ns}.documents ON DELETE CASCADE, start int NOT NULL,
                        stop int NOT NULL, is_heading boolean NOT NULL, text text NOT NULL, tokens text[] NOT NULL,
                        owners bigint[] NOT NULL, embedding vector({dim}) NOT NULL)""")
        cur.execute(f"CREATE TABLE {ns}.token_df (token text PRIMARY KEY, df int NOT NULL)")
        # BM25 postings as rows, written in (token, row) order, their key index covering tf and length: a token's
        # postings are one index-only range scan and a passage's contribution one probe (reading them out of the
        # tsvectors unnests every matching passage's vector)
        cur.execute(f"CREATE TABLE {ns}.postings (token text NOT NULL, row bigint NOT NULL, tf int NOT NULL, "
                    f"length int NOT NULL, PRIMARY KEY (token, row) INCLUDE (tf, length))")
        cur.execute(f"CREATE TABLE {ns}.words (word text PRIMARY KEY, n int NOT NULL)")

    def _create_indexes(self, cur, ns: str, sentences: bool) -> None:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute(f"CREATE INDEX ON {ns}.passages USING hnsw (embedding vector_ip_ops) "
                    f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})")
        cur.execute(f"CREATE INDEX ON {ns}.passages USING gin (tokens)")
        cur.execute(f"CREATE INDEX ON {ns}.passages (doc_id)")
        cur.execute(f"CREATE INDEX ON {ns}.sentences (doc_id)")
        if sentences:  # small indexes also search all sentences (as the embedded backend does exactly)
            cur.execute(f"CREATE INDEX ON {ns}.sentences USING hnsw (embedding vector_ip_ops) "
                        f"WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})")

    # ------------------------------------------------------------------------------------------------ writing

    @classmethod
    def from_index(cls, index: CorpusIndex, url: str, namespace: str, log=lambda _: None) -> "PgVectorStore":
        """Write a whole index (built by the embedded pipeline: the same passages, vectors and tokens) into the
        schema `namespace`, replacing what was there in one transaction (readers see the old or the new one)."""
        store = cls(url, namespace)
        started = time.time()
        tmp = f"{namespace}__new"
        with store._lock, store.conn.transaction():
            cur = store.conn.cursor()
            cur.execute(f"DROP SCHEMA IF EXISTS {tmp} CASCADE")
            store._create(cur, tmp, index.dense.dim)
            rows = _RowWriter(index)
            with cur.copy(f"COPY {tmp}.documents (doc_id, meta, text, text_sha, content_sha) FROM STDIN") as copy:
                for doc in rows.documents():
                    copy.write_row(doc)
            passages = rows.passages()
            with cur.copy(f"COPY {tmp}.passages (row, passage_id, doc_id, start, stop, heading, title, text, length, "
                          f"tokens, unique_tokens, context, sentence_rows, embedding) FROM STDIN") as copy:
                for row in passages:
                    copy.write_row(row)
            with cur.copy(f"COPY {tmp}.sentences (row, doc_id, start, stop, is_heading, text, tokens, owners, "
                          f"embedding) FROM STDIN") as copy:
                for row in rows.sentences():
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {tmp}.token_df SELECT lexeme, count(*) FROM {tmp}.passages, unnest(tokens) "
                        f"GROUP BY lexeme")
            cur.execute(_POSTINGS_OF.format(ns=tmp, where=""))
            with cur.copy(f"COPY {tmp}.words (word, n) FROM STDIN") as copy:
                for w, n in index.lexical.word_counts.items():
                    copy.write_row((w, n))
            log(f"  rows written in {time.time() - started:.1f} s; indexes")
            store._create_indexes(cur, tmp, sentences=len(index.sentences) <= SENTENCE_EXACT_MAX)
            manifest = {k: v for k, v in index.manifest.items() if k not in ("files", "sizes", "segments")}
            manifest.update({"store": "pgvector", "index_type": "hnsw", "hnsw": HNSW, "postings_table": True,
                             "postings_layout": POSTINGS_LAYOUT,
                             "exact_sentences": len(index.sentences) <= SENTENCE_EXACT_MAX,
                             "total_length": int(index.lexical.total_length), "k1": index.lexical.k1,
                             "b": index.lexical.b, "next_passage_row": rows.next_passage,
                             "next_sentence_row": rows.next_sentence,
                             "stems": sorted(index.lexical.analyzer.splitter.known_stems)
                             if index.lexical.analyzer.splitter else None,
                             "load_seconds": round(time.time() - started, 1)})
            cur.execute(f"INSERT INTO {tmp}.meta VALUES ('manifest', %s)", (json.dumps(manifest),))
            cur.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")
            cur.execute(f"ALTER SCHEMA {tmp} RENAME TO {namespace}")
        store.vacuum(after_load=True)
        return store

    def vacuum(self, after_load: bool = False) -> None:
        """VACUUM the postings: the visibility map that lets a token's postings be read from the key index alone (an
        index-only scan) also for the rows just written. `after_load`: with ANALYZE, and the other tables analyzed,
        for the planner's statistics (2.5 s at 10^5 passages, most of it the passages'; after an add or a delete,
        milliseconds). Runs outside any transaction (VACUUM cannot run inside one); the change before it is
        committed, so a failure only warns: reads are slower until autovacuum catches up."""
        import psycopg

        statements = [f"VACUUM {self.ns}.postings"]
        if after_load:
            statements = [f"VACUUM (ANALYZE) {self.ns}.postings"] + [
                f"ANALYZE {self.ns}.{table}" for table in ("passages", "sentences", "token_df", "documents")]
        with self._lock:
            try:
                for sql in statements:
                    self.conn.execute(sql)
            except psycopg.Error as exc:
                warnings.warn(f"{sql} failed ({exc}); autovacuum will catch up", stacklevel=2)

    @classmethod
    def from_index_dir(cls, directory: Path, url: str | None = None, namespace: str | None = None) -> "PgVectorStore":
        """Load a saved embedded index into Postgres (RAG_STORE_URL, or the project's embedded test server)."""
        from rag.search.stores import store_url

        index = CorpusIndex.load(directory)
        return cls.from_index(index, url or store_url(), namespace or namespace_for(index.manifest["model"]))

    def add(self, documents: Sequence[Document], encoder: Encoder) -> list[str]:
        """Embed and insert documents (a document with an indexed id is replaced), statistics updated in the same
        transaction."""
        if not documents:
            return []
        index = self.load()
        manifest = index.manifest
        with self._lock, self.conn.transaction():
            cur = self.conn.cursor()
            self._delete(cur, [d.doc_id for d in documents], manifest)
            words = index.lexical.word_counts
            before = set(words)
            for doc in documents:
                for w in re.findall(r"[^\W_]+(?:[-'][^\W_]+)*", doc.text.lower()):
                    words[w] = words.get(w, 0) + 1
            stems = set(manifest.get("stems") or []) | {stem(w) for w in words if w not in before and len(w) >= 4
                                                        and w.isalpha()}
            analyzer = SwedishAnalyzer(sorted(words), fold=index.lexical.analyzer.fold,
                                       compounds=index.lexical.analyzer.compounds, known_stems=stems)
            split = PassageSplitter(**manifest.get("splitter", {})).run(list(documents))
            vocab = Vocabulary()
            parts = make_parts(list(documents), split, encoder, vocab, analyzer)
            writer = _PartsWriter(parts, vocab, list(documents), manifest["next_passage_row"],
                                  manifest["next_sentence_row"])
            for row in writer.documents():
                cur.execute(f"INSERT INTO {self.ns}.documents VALUES (%s, %s, %s, %s, %s)", row)
            for row in writer.passages():
                cur.execute(f"INSERT INTO {self.ns}.passages (row, passage_id, doc_id, start, stop, heading, title, "
                            f"text, length, tokens, unique_tokens, context, sentence_rows, embedding) VALUES "
                            f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
            for row in writer.sentences():
                cur.execute(f"INSERT INTO {self.ns}.sentences (row, doc_id, start, stop, is_heading, text, tokens, "
                            f"owners, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", row)
            ids = [d.doc_id for d in documents]
            if manifest.get("postings_table"):
                cur.execute(_POSTINGS_OF.format(ns=self.ns, where="WHERE p.doc_id = ANY(%s)"), (ids,))
            cur.execute(f"""INSERT INTO {self.ns}.token_df SELECT lexeme, count(*) FROM {self.ns}.passages,
                            unnest(tokens) WHERE doc_id = ANY(%s) GROUP BY lexeme
                            ON CONFLICT (token) DO UPDATE SET df = {self.ns}.token_df.df + excluded.df""", (ids,))
            cur.execute(f"SELECT coalesce(sum(length), 0) FROM {self.ns}.passages WHERE doc_id = ANY(%s)", (ids,))
            manifest["total_length"] += int(cur.fetchone()[0])
            self._write_words(cur, words)
            manifest.update({"next_passage_row": writer.next_passage, "next_sentence_row": writer.next_sentence,
                             "stems": sorted(stems)})
            self._write_manifest(cur, manifest)
        if manifest.get("postings_table"):
            self.vacuum()
        return ids

    def delete(self, doc_ids: Sequence[str]) -> list[str]:
        manifest = self.manifest() or {}
        with self._lock, self.conn.transaction():
            cur = self.conn.cursor()
            found = self._delete(cur, doc_ids, manifest)
            self._write_manifest(cur, manifest)
        if found and manifest.get("postings_table"):
            self.vacuum()
        return found

    def _delete(self, cur, doc_ids: Sequence[str], manifest: dict) -> list[str]:
        cur.execute(f"SELECT doc_id, text FROM {self.ns}.documents WHERE doc_id = ANY(%s)", (list(doc_ids),))
        found = cur.fetchall()
        if not found:
            return []
        ids = [d for d, _ in found]
        if manifest.get("postings_table"):
            cur.execute(f"""DELETE FROM {self.ns}.postings o USING (SELECT u.lexeme, p.row FROM {self.ns}.passages p,
                            unnest(p.tokens) u WHERE p.doc_id = ANY(%s)) d WHERE o.token = d.lexeme AND o.row = d.row""",
                        (ids,))
        cur.execute(f"""UPDATE {self.ns}.token_df t SET df = t.df - c.n FROM (SELECT lexeme, count(*) AS n
                        FROM {self.ns}.passages, unnest(tokens) WHERE doc_id = ANY(%s) GROUP BY lexeme) c
                        WHERE t.token = c.lexeme""", (ids,))
        cur.execute(f"DELETE FROM {self.ns}.token_df WHERE df <= 0")
        cur.execute(f"SELECT coalesce(sum(length), 0) FROM {self.ns}.passages WHERE doc_id = ANY(%s)", (ids,))
        manifest["total_length"] = manifest.get("total_length", 0) - int(cur.fetchone()[0])
        counts: dict[str, int] = {}
        for _, text in found:
            for w in re.findall(r"[^\W_]+(?:[-'][^\W_]+)*", text.lower()):
                counts[w] = counts.get(w, 0) + 1
        for w, n in counts.items():
            cur.execute(f"UPDATE {self.ns}.words SET n = n - %s WHERE word = %s", (n, w))
        cur.execute(f"DELETE FROM {self.ns}.words WHERE n <= 0")
        cur.execute(f"DELETE FROM {self.ns}.documents WHERE doc_id = ANY(%s)", (ids,))  # cascades
        return ids

    def _write_words(self, cur, words: dict[str, int]) -> None:
        cur.execute(f"DELETE FROM {self.ns}.words")
        with cur.copy(f"COPY {self.ns}.words (word, n) FROM STDIN") as copy:
            for w, n in words.items():
                copy.write_row((w, n))

    def _write_manifest(self, cur, manifest: dict) -> None:
        cur.execute(f"SELECT count(*) FROM {self.ns}.passages")
        manifest["passage_count"] = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM {self.ns}.documents")
        manifest["document_count"] = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM {self.ns}.sentences")
        manifest["sentence_count"] = int(cur.fetchone()[0])
        cur.execute(f"UPDATE {self.ns}.meta SET value = %s WHERE key = 'manifest'", (json.dumps(manifest),))

    # ------------------------------------------------------------------------------------------------ search

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Dense top-k by pgvector's HNSW index (inner product of normalized vectors = cosine)."""
        with self._lock, self.conn.transaction():
            self.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}")
            rows = self.conn.execute(f"SELECT row, -(embedding <#> %s) FROM {self.ns}.passages "
                                     f"ORDER BY embedding <#> %s LIMIT %s",
                                     (np.asarray(vector, np.float32), np.asarray(vector, np.float32), k)).fetchall()
        return [(int(r), float(s)) for r, s in rows]

    def lexical_search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        return postings_top(self.load().lexical.postings, tokens, k)

    def hybrid_search(self, tokens: Sequence[str], vector: np.ndarray, k: int,
                      weights: tuple[float, float] = (0.5, 0.5)) -> list[tuple[int, float]]:
        """Fusion in Python of the SQL dense and BM25 candidates (the pipeline's own convex combination)."""
        return convex_top(self.search(vector, 50), self.lexical_search(tokens, 50), k, weights)

    def count(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {self.ns}.passages").fetchone()[0])

    def save(self) -> None:
        """Every change is committed in its own transaction."""

    def load(self) -> "PgIndex":
        manifest = self.manifest()
        if manifest is None:
            raise LookupError(f"no index in schema {self.ns} at {redact_url(self.url)}")
        return PgIndex(self, manifest)

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class _RowWriter:
    """Rows of an embedded index for COPY into Postgres (global rows as in the index)."""

    def __init__(self, index: CorpusIndex) -> None:
        self.index = index
        self.next_passage = len(index.passages)
        self.next_sentence = len(index.sentences)

    def documents(self) -> Iterator[tuple]:
        for doc_id in self.index.documents:
            meta = self.index.documents.meta(doc_id)
            doc = self.index.documents[doc_id]
            yield (doc_id, json.dumps({k: v for k, v in meta.items() if k not in ("text_sha", "content_sha")}),
                   doc.text, meta["text_sha"], meta["content_sha"])

    def passages(self) -> Iterator[tuple]:
        index = self.index
        tokens = index.lexical.vocabulary.tokens
        for si, seg in enumerate(index.segments):
            base = index.layout.passage_bases[si]
            tf = _row_tfs(seg.postings, seg.postings_tf, seg.passage_count)
            for local in range(seg.passage_count):
                row = base + local
                if not index.live[row]:
                    continue
                p = index.passages[row]
                yield (row, p.passage_id, p.doc_id, p.start, p.end, p.heading, p.title, p.text,
                       int(seg.passage_lengths[local]), tsvector_literal({tokens[t]: n for t, n in tf[local].items()}),
                       [tokens[t] for t in seg.passage_tokens[local].tolist()],
                       sorted(index.passage_context_token_sets[row]), index.passage_sentences[row],
                       np.asarray(index.passage_vectors[row], np.float32))

    def sentences(self) -> Iterator[tuple]:
        index = self.index
        for si, seg in enumerate(index.segments):
            sbase = index.layout.sentence_bases[si]
            owners = index.sentence_owners
            for local in range(seg.sentence_count):
                row = sbase + local
                s = index.sentences[row]
                live_owners = owners(row)
                if not live_owners:
                    continue
                yield (row, s.doc_id, s.start, s.end, s.is_heading, s.text, sorted(index.sentence_token_sets[row]),
                       live_owners, np.asarray(index.sentence_vectors[row], np.float32))


class _PartsWriter(_RowWriter):
    """Rows of a new segment (documents being added) for INSERT, numbered from the store's next free rows."""

    def __init__(self, parts, vocab: Vocabulary, documents: list[Document], next_passage: int,
                 next_sentence: int) -> None:
        self.parts, self.vocab, self.docs = parts, vocab, documents
        self.p0, self.s0 = next_passage, next_sentence
        self.next_passage = next_passage + len(parts.passages)
        self.next_sentence = next_sentence + len(parts.sentences)

    def documents(self) -> Iterator[tuple]:
        for doc, meta in zip(self.docs, self.parts.documents):
            yield (doc.doc_id, json.dumps({k: v for k, v in meta.items() if k not in ("text_sha", "content_sha")}),
                   doc.text, text_sha(doc.text), content_sha(doc))

    def passages(self) -> Iterator[tuple]:
        parts, tokens = self.parts, self.vocab.tokens
        tf = _row_tfs(parts.postings, parts.postings_tf, len(parts.passages))
        for local, r in enumerate(parts.passages):
            doc = self.docs[int(r[DOC])]
            text = doc.text[int(r[START]) : int(r[END])]
            heading = parts.headings[int(r[EXTRA])] if r[EXTRA] >= 0 else ""
            srows = (parts.passage_sentences[local] + self.s0).tolist()
            yield (self.p0 + local, parts.passage_ids[local].decode("ascii"), doc.doc_id, int(r[START]), int(r[END]),
                   heading, doc.title, text, int(parts.passage_lengths[local]),
                   tsvector_literal({tokens[t]: n for t, n in tf[local].items()}),
                   [tokens[t] for t in parts.passage_tokens[local].tolist()],
                   sorted({tokens[t] for t in parts.context_tokens[local].tolist()}), srows,
                   np.asarray(parts.passage_vectors[local], np.float32))

    def sentences(self) -> Iterator[tuple]:
        parts, tokens = self.parts, self.vocab.tokens
        owners: dict[int, list[int]] = {}
        for local in range(len(parts.passages)):
            for s in parts.passage_sentences[local].tolist():
                owners.setdefault(s, []).append(self.p0 + local)
        for local, r in enumerate(parts.sentences):
            if local not in owners:
                continue
            doc = self.docs[int(r[DOC])]
            yield (self.s0 + local, doc.doc_id, int(r[START]), int(r[END]), bool(int(r[EXTRA]) & HEADING_FLAG),
                   doc.text[int(r[START]) : int(r[END])], sorted({tokens[t] for t in parts.sentence_tokens[local].tolist()}),
                   owners[local], np.asarray(parts.sentence_vectors[local], np.float32))


def _row_tfs(postings, tf: np.ndarray, n_rows: int) -> list[dict[int, int]]:
    """Per passage: token id -> term frequency, from the postings (token -> rows)."""
    out: list[dict[int, int]] = [dict() for _ in range(n_rows)]
    indptr = np.asarray(postings.indptr)
    rows = np.asarray(postings.values)
    tfs = np.asarray(tf)
    counts = np.diff(indptr)
    token_of = np.repeat(np.arange(len(counts)), counts)
    for t, r, n in zip(token_of.tolist(), rows.tolist(), tfs.tolist()):
        out[r][t] = int(n)
    return out


# ---------------------------------------------------------------------------------------------------- reading


class PgIndex:
    """A pgvector index with the `CorpusIndex` attributes the pipeline reads; rows are fetched on use and cached.

    The passage search returns vectors with the rows, and a passage brings its sentences, so a question costs a few
    round trips, not one per row.
    """

    def __init__(self, store: PgVectorStore, manifest: dict) -> None:
        self.store = store
        self.manifest = manifest
        self.problems = []
        self.directory = None
        self._passages = LRU(8192)
        self._sentences = LRU(32768)
        dim = int(manifest["dim"])
        self.lexical = PgLexical(self, manifest)
        self.dense = PgDense(self, dim)
        self.documents = PgDocuments(self)
        self.passages = PgPassages(self)
        self.sentences = PgSentences(self)
        self.passage_sentences = _Column(lambda r: self._passage(r)["sentence_rows"])
        self.passage_vectors = _Column(lambda r: self._passage(r)["embedding"], self.prefetch_passages)
        self.sentence_vectors = _Column(lambda r: self._sentence(r)["embedding"], self.prefetch_sentences)
        self.sentence_token_sets = _Column(lambda r: self._sentence(r)["tokens"])
        self.passage_context_token_sets = _Column(lambda r: self._passage(r)["context"])
        self.exact = bool(manifest.get("exact_sentences"))

    def _query(self, sql: str, params=(), binary: bool = False):
        """Rows of one statement (`{ns}` is this index's schema). `binary`: results in PostgreSQL's binary format,
        for rows with vectors (pgvector's text format is parsed number by number: ~0.15 ms per vector)."""
        with self.store._lock:
            return self.store.conn.execute(sql.replace("{ns}", self.store.ns), params, binary=binary).fetchall()

    # rows ------------------------------------------------------------------------------------------------

    _P_COLS = "row, passage_id, doc_id, start, stop, heading, title, text, sentence_rows, context, embedding"
    _S_COLS = "row, doc_id, start, stop, is_heading, text, tokens, owners, embedding"

    def _store_passage(self, r) -> dict:
        row = {"row": int(r[0]), "passage": Passage(r[1], r[2], r[7], r[3], r[4], heading=r[5], title=r[6]),
               "sentence_rows": [int(x) for x in r[8]], "context": frozenset(r[9]),
               "embedding": np.asarray(r[10], dtype=np.float32)}
        self._passages.get(row["row"], lambda: row)
        return row

    def _store_sentence(self, r) -> dict:
        row = {"row": int(r[0]), "sentence": Sentence(r[1], r[2], r[3], r[5], r[4]), "tokens": frozenset(r[6]),
               "owners": [int(x) for x in r[7]], "embedding": np.asarray(r[8], dtype=np.float32)}
        self._sentences.get(row["row"], lambda: row)
        return row

    def prefetch_passages(self, rows: Iterable[int]) -> None:
        missing = [int(r) for r in rows if not self._passages.has(int(r))]
        if missing:
            for r in self._query(f"SELECT {self._P_COLS} FROM {{ns}}.passages WHERE row = ANY(%s::bigint[])",
                                 (int_array(missing),), binary=True):
                self._store_passage(r)

    def prefetch_sentences(self, rows: Iterable[int]) -> None:
        missing = [int(r) for r in rows if not self._sentences.has(int(r))]
        if missing:
            for r in self._query(f"SELECT {self._S_COLS} FROM {{ns}}.sentences WHERE row = ANY(%s::bigint[])",
                                 (int_array(missing),), binary=True):
                self._store_sentence(r)

    def _passage(self, row: int) -> dict:
        row = int(row)
        if not self._passages.has(row):
            self.prefetch_passages([row])
            found = self._passages.peek(row)
            if found is None:
                raise IndexError(row)
            self.prefetch_sentences(found["sentence_rows"])
        return self._passages.peek(row)

    def _sentence(self, row: int) -> dict:
        row = int(row)
        if not self._sentences.has(row):
            self.prefetch_sentences([row])
        found = self._sentences.peek(row)
        if found is None:
            raise IndexError(row)
        return found

    # what the retriever asks ----------------------------------------------------------------------------

    @property
    def live(self):
        return _AllLive()

    def search_sentences(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k sentences by the sentences' HNSW index (small indexes only, as in the embedded backend)."""
        with self.store._lock, self.store.conn.transaction():
            self.store.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}")
            rows = self.store.conn.execute(
                f"SELECT {self._S_COLS}, -(embedding <#> %s) FROM {self.store.ns}.sentences "
                f"ORDER BY embedding <#> %s LIMIT %s", (np.asarray(query_vector, np.float32),
                                                         np.asarray(query_vector, np.float32), k),
                binary=True).fetchall()
        for r in rows:
            self._store_sentence(r[:-1])
        return np.array([r[-1] for r in rows], dtype=np.float32), np.array([r[0] for r in rows], dtype=np.int64)

    def sentence_owners(self, sentence_row: int) -> list[int]:
        return self._sentence(sentence_row)["owners"]

    def prefetch_hits(self, rows: Iterable[int]) -> None:
        """Passages about to be shown, and all their sentences, in two round trips (the answer builder reads them)."""
        rows = [int(r) for r in rows]
        self.prefetch_passages(rows)
        self.prefetch_sentences([s for r in rows for s in self._passages.peek(r)["sentence_rows"]])

    def passage_row(self, passage_id: str) -> int | None:
        rows = self._query("SELECT row FROM {ns}.passages WHERE passage_id = %s", (passage_id,))
        return int(rows[0][0]) if rows else None


class _AllLive:
    """Every stored row is live (Postgres deletes rows instead of tombstoning them)."""

    def __getitem__(self, row):
        return 1


class _Column:
    """Row access by a function (row-indexable like an array; optional bulk `prefetch`)."""

    def __init__(self, get, prefetch=None) -> None:
        self._get = get
        if prefetch is not None:
            self.prefetch = prefetch

    def __getitem__(self, row):
        if isinstance(row, (int, np.integer)):
            return self._get(int(row))
        rows = [int(r) for r in np.asarray(row).ravel()]
        if hasattr(self, "prefetch"):
            self.prefetch(rows)
        return np.stack([self._get(r) for r in rows])


class PgPassages(Sequence):
    def __init__(self, index: PgIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return int(self._index.manifest.get("next_passage_row", 0))

    def __getitem__(self, row):
        return self._index._passage(int(row))["passage"]

    def __iter__(self) -> Iterator[Passage]:
        for r in self._index._query(f"SELECT {PgIndex._P_COLS} FROM {{ns}}.passages ORDER BY row"):
            yield Passage(r[1], r[2], r[7], r[3], r[4], heading=r[5], title=r[6])


class PgSentences(Sequence):
    def __init__(self, index: PgIndex) -> None:
        self._index = index

    def __len__(self) -> int:
        return int(self._index.manifest.get("next_sentence_row", 0))

    def __getitem__(self, row):
        return self._index._sentence(int(row))["sentence"]


class PgDocuments(Mapping):
    def __init__(self, index: PgIndex) -> None:
        self._index = index
        self._cache = LRU(256)

    def __getitem__(self, doc_id: str) -> Document:
        def make():
            rows = self._index._query("SELECT meta, text FROM {ns}.documents WHERE doc_id = %s", (doc_id,))
            if not rows:
                return None
            return Document(**rows[0][0], text=rows[0][1])

        doc = self._cache.get(doc_id, make)
        if doc is None:
            raise KeyError(doc_id)
        return doc

    def __iter__(self):
        return iter([r[0] for r in self._index._query("SELECT doc_id FROM {ns}.documents ORDER BY doc_id")])

    def __len__(self) -> int:
        return int(self._index._query("SELECT count(*) FROM {ns}.documents")[0][0])

    def __contains__(self, doc_id) -> bool:
        return bool(self._index._query("SELECT 1 FROM {ns}.documents WHERE doc_id = %s", (doc_id,)))

    def meta(self, doc_id: str) -> dict:
        rows = self._index._query("SELECT meta, text_sha, content_sha FROM {ns}.documents WHERE doc_id = %s", (doc_id,))
        return {**rows[0][0], "text_sha": rows[0][1], "content_sha": rows[0][2]}


class PgDense:
    """`index.dense`: pgvector HNSW search returning rows (and caching their vectors and sentences)."""

    kinds = ["hnsw"]

    def __init__(self, index: PgIndex, dim: int) -> None:
        self._index = index
        self.dim = dim

    def count(self) -> int:
        return int(self._index.manifest.get("passage_count", 0))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        store = self._index.store
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_r = np.full((len(queries), k), -1, dtype=np.int64)
        for i, q in enumerate(queries):
            with store._lock, store.conn.transaction():
                store.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}")
                rows = store.conn.execute(
                    f"SELECT {PgIndex._P_COLS}, -(embedding <#> %s) FROM {store.ns}.passages "
                    f"ORDER BY embedding <#> %s LIMIT %s", (q, q, k), binary=True).fetchall()
            for j, r in enumerate(rows):
                self._index._store_passage(r[:-1])
                out_s[i, j], out_r[i, j] = r[-1], r[0]
        return out_s, out_r


class PgLexical:
    """`index.lexical`: BM25 from the tsvector postings (GIN) with N, mean length and df kept in the database."""

    def __init__(self, index: PgIndex, manifest: dict) -> None:
        self._index = index
        self.k1 = float(manifest.get("k1", 1.2))
        self.b = float(manifest.get("b", 0.75))
        self.word_counts = {w: int(n) for w, n in index._query("SELECT word, n FROM {ns}.words")}
        analyzer = manifest.get("analyzer") or {}
        self.analyzer = SwedishAnalyzer(sorted(self.word_counts), fold=analyzer.get("fold", True),
                                        compounds=analyzer.get("compounds", True), known_stems=manifest.get("stems"))
        self._df = LRU(65536)
        self.total_length = int(manifest.get("total_length", 0))
        self._n = int(manifest.get("passage_count", 0))
        self._table = bool(manifest.get("postings_table"))
        if not self._table:  # unnesting tsvectors: postings are dear, look fewer of them up
            self.PRUNE_FROM, self.LOOKUP_COST = 2_000, 32
        elif manifest.get("postings_layout", 1) < POSTINGS_LAYOUT:  # postings in passage order, no covering index:
            self.LOOKUP_COST = 8  # whole reads visit a table page per posting (`rag build --store pgvector --force`)
        self.vocabulary = _PgVocabulary(self)

    def count(self) -> int:
        return int(self._index.manifest.get("next_passage_row", 0))

    def live_count(self) -> int:
        return self._n

    @property
    def avgdl(self) -> float:
        return self.total_length / self._n if self._n else 1.0

    def df_of(self, token: str) -> int:
        def make():
            rows = self._index._query("SELECT df FROM {ns}.token_df WHERE token = %s", (token,))
            return int(rows[0][0]) if rows else 0
        return self._df.get(token, make)

    def idf_of(self, df):
        n = self._n
        df = np.asarray(df, dtype=np.float64)
        out = np.log(1 + (n - df + 0.5) / (df + 0.5))
        return out if out.ndim else float(out)

    def postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        df = self.df_of(token) if token else 0
        if df <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        data = self._posting_rows(token)
        if data is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return data[:, 0].astype(np.int64), self._weights(data, df)

    def _posting_rows(self, token: str, rows: list[int] | None = None) -> np.ndarray | None:
        """(row, length, tf) of the token's postings, ascending by row (only at `rows` when given); None if none."""
        query = self._index._query
        if self._table and rows is None:  # one value per column, packed: tuples cost ~0.5 us each to receive
            packed = query(POSTINGS_PACKED, (token,), binary=True)[0]
            if packed[0] is None:
                return None
            return np.column_stack([np.frombuffer(packed[0], dtype=">i8"), np.frombuffer(packed[1], dtype=">i4"),
                                    np.frombuffer(packed[2], dtype=">i4")]).astype(np.float64)
        elif self._table:
            found = query("SELECT row, length, tf FROM {ns}.postings WHERE token = %s AND row = ANY(%s::bigint[]) "
                          "ORDER BY row", (token, int_array(rows)))
        else:  # a schema loaded before the postings table existed: read the tsvectors
            unnest = ("SELECT p.row, p.length, array_length(u.positions, 1) FROM {ns}.passages p, unnest(p.tokens) u "
                      "WHERE {match} AND u.lexeme = %s ORDER BY p.row")
            found = query(unnest.replace("{match}", "p.tokens @@ %s::tsquery"), (_lexeme(token), token)) if rows is None \
                else query(unnest.replace("{match}", "p.row = ANY(%s::bigint[])"), (int_array(rows), token))
        return np.asarray(found, dtype=np.float64) if found else None

    def _weights(self, data: np.ndarray, df: int) -> np.ndarray:
        """BM25 contributions (float32) of postings rows (row, length, tf) of a token with document frequency df."""
        tf, dl = data[:, 2], data[:, 1]
        idf = self.idf_of(df)
        return (idf * tf / (tf + self.k1 * (1 - self.b) + self.k1 * self.b / self.avgdl * dl)).astype(np.float32)

    PRUNE_FROM = 20_000
    """The lexical top-k prunes from this many postings in all (read whole from the postings table at ~0.2 us each:
    88 000 in 16-19 ms at 10^5 passages)."""

    LOOKUP_COST = 32
    """One passage's contribution looked up (an index probe) costs about this many postings read (500 rows' probes
    took 3.3 ms, ~6.6 us each, at 10^5 passages): `top_term_bm25` reads a token's postings whole rather than look up
    more rows than its postings / LOOKUP_COST. Only speed depends on it (the pruning is exact); chosen among 8, 16
    and 32 on the gold questions at 10^5 (reply p50 / p95 103 / 253 ms at 32 against 102-113 / 275-306 at 8)."""

    def frequency(self, token: str) -> int:
        return self.df_of(token) if token else 0

    def bound(self, token: str) -> float:
        df = self.frequency(token)
        return self.idf_of(df) if df > 0 else 0.0

    def scores_at(self, token: str, rows: np.ndarray) -> np.ndarray:
        """BM25 contribution of `token` at the given passage rows (0 where absent), by primary-key lookups."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        df = self.frequency(token)
        if df <= 0 or not len(rows):
            return out
        data = self._posting_rows(token, rows.tolist())
        if data is not None:
            out[np.searchsorted(rows, data[:, 0].astype(np.int64))] = self._weights(data, df)
        return out

    def token_scores(self, token: str) -> np.ndarray:
        out = np.zeros(self.count(), dtype=np.float32)
        rows, scores = self.postings(token)
        out[rows] = scores
        return out

    def idf(self) -> "PgIdf":
        return PgIdf(self)

    def search(self, query: str, k: int = 10):
        top = postings_top(self.postings, self.analyzer.analyze(query), k)
        return np.array([r for r, _ in top], dtype=np.int64), np.array([s for _, s in top], dtype=np.float32)


class _PgVocabulary:
    def __init__(self, lexical: PgLexical) -> None:
        self._lexical = lexical
        self.tokens: list[str] = []

    def get(self, token: str):
        return token if self._lexical.df_of(token) > 0 else None


class PgIdf(Mapping):
    """Lucene idf of tokens from the database's document frequencies (looked up and cached per token)."""

    def __init__(self, lexical: PgLexical) -> None:
        self._lexical = lexical

    def __getitem__(self, token: str) -> float:
        df = self._lexical.df_of(token) if token else 0
        if df <= 0:
            raise KeyError(token)
        return self._lexical.idf_of(df)

    def __contains__(self, token) -> bool:
        return bool(token) and self._lexical.df_of(token) > 0

    def __iter__(self):
        return iter([r[0] for r in self._lexical._index._query("SELECT token FROM {ns}.token_df WHERE df > 0")])

    def __len__(self) -> int:
        return int(self._lexical._index._query("SELECT count(*) FROM {ns}.token_df WHERE df > 0")[0][0])

    def values(self):  # type: ignore[override]
        rows = self._lexical._index._query("SELECT min(df) FROM {ns}.token_df WHERE df > 0")
        return [self._lexical.idf_of(int(rows[0][0]))] if rows and rows[0][0] else []
