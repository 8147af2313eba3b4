import pytest

from eval.benchmarks import BENCHMARKS, BenchmarkMissing, benchmark_dir, materialize_corpus, published_seb, read_qrels
from rag.ingest.loader import CorpusLoader

needs_shared = pytest.mark.skipif(not (BENCHMARKS / "swefaq").exists(), reason="../shared/benchmarks is absent")


def test_missing_benchmark_is_a_clear_skip():
    with pytest.raises(BenchmarkMissing, match="not found"):
        benchmark_dir("no-such-benchmark")


@needs_shared
def test_swefaq_corpus_materializes_for_the_normal_ingest(tmp_path):
    corpus = materialize_corpus("swefaq", tmp_path / "swefaq")
    docs = CorpusLoader(corpus).run().documents
    assert len(docs) == 233
    qrels = read_qrels(benchmark_dir("swefaq") / "qrels.tsv")
    assert len(qrels) == 219
    assert {d for rel in qrels.values() for d in rel} <= {d.doc_id for d in docs}


@needs_shared
def test_published_seb_reference_scores():
    seb = published_seb("SweFAQ")
    assert seb["multilingual-e5-small"] == pytest.approx(0.687, abs=1e-3)
    assert seb["multilingual-e5-large"] == pytest.approx(0.733, abs=1e-3)
    assert seb["bge-m3"] == pytest.approx(0.715, abs=1e-3)
