import pytest

from rag.search.analysis import FOLDED_PREFIX, PART_PREFIX, CompoundSplitter, SwedishAnalyzer, content_words, stem
from tests.conftest import CORPUS


def test_stop_words_and_question_words_are_dropped():
    assert content_words("Vad får man för stöd som anhörig?") == ["stöd", "anhörig"]


def test_definite_forms_share_a_stem():
    assert stem("kontaktsjuksköterskan") == stem("kontaktsjuksköterska")
    assert stem("regionerna") == stem("regioner") == stem("region")


def test_folded_form_is_extra_not_a_replacement():
    analyzer = SwedishAnalyzer()
    tokens = analyzer.analyze("psykosocialt stöd")
    assert "stöd" in tokens  # the accented form stays
    folded = [t for t in tokens if t.startswith(FOLDED_PREFIX)]
    assert folded and set(folded) <= set(analyzer.analyze("psykosocialt stod"))  # and is also reachable without å/ä/ö


def test_compounds_split_into_known_parts():
    splitter = CompoundSplitter(["kontakt", "sjuksköterska", "cancer", "rehabilitering", "barn", "centrum"])
    assert splitter.split("kontaktsjuksköterska") == ("kontakt", "sjuksköterska")
    assert splitter.split("cancerrehabiliteringen") == ("cancer", "rehabiliteringen")
    assert splitter.split("barncancercentrum") == ("barn", "cancer", "centrum")
    assert splitter.split("ansvar") == ()


def test_query_word_matches_a_compound_in_the_text():
    analyzer = SwedishAnalyzer(["kontakt", "sjuksköterska"])
    doc_tokens = set(analyzer.analyze("Alla ska ha en kontaktsjuksköterska."))
    own, _ = analyzer.term_tokens("sjuksköterska", query=True)
    assert PART_PREFIX + "sjukskotersk" in own and set(own) & doc_tokens


def test_the_cached_lemma_dictionary_is_simplemmas_own_and_a_damaged_cache_file_is_rewritten(tmp_path, monkeypatch):
    import marshal

    import simplemma
    from simplemma.strategies.dictionaries.dictionary_factory import _load_dictionary_from_disk

    from rag.search.analysis import _cached_dictionary

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    decoded = _load_dictionary_from_disk("sv")
    first = _cached_dictionary("sv", simplemma.__version__, _load_dictionary_from_disk)
    path = tmp_path / "simplemma" / f"sv-{simplemma.__version__}.marshal"
    assert first == decoded and path.is_file()
    assert _cached_dictionary("sv", simplemma.__version__, lambda lang: pytest.fail("decoded again")) == decoded
    path.write_bytes(b"\x00 not marshal data")
    assert _cached_dictionary("sv", simplemma.__version__, _load_dictionary_from_disk) == decoded
    assert marshal.loads(path.read_bytes()) == decoded


def test_cached_stop_words_and_general_words_are_the_libraries_own_and_need_no_bm25s_import(tmp_path, monkeypatch):
    import subprocess
    import sys

    from bm25s.stopwords import STOPWORDS_SWEDISH
    from wordfreq import top_n_list

    code = ("import sys; from rag.search.analysis import swedish_stopwords, general_swedish_words; "
            "w = swedish_stopwords(); g = general_swedish_words(); "
            "print(repr((sorted(w), list(g[:2000]), len(g), 'bm25s' in sys.modules)))")
    env = {**__import__("os").environ, "RAG_CACHE_DIR": str(tmp_path)}
    runs = [eval(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                cwd=str(CORPUS.parents[0])).stdout) for _ in range(2)]
    (first_words, first_top, n, first_import), (words, top, _, second_import) = runs
    assert first_words == words and first_top == top and n == 50_000
    assert set(STOPWORDS_SWEDISH) <= set(words) and top == top_n_list("sv", 50_000)[:2000]
    assert first_import and not second_import  # the second start reads the cache, not the package
    assert (tmp_path / "stopwords").is_dir() and (tmp_path / "wordfreq").is_dir()


def test_the_lemmatizer_gives_simplemmas_lemmas_for_corpus_words():
    import re

    import simplemma

    from rag.search.analysis import _lemmatizer

    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((CORPUS / "seeds").glob("*.txt")))
    words = sorted(set(re.findall(r"[^\W\d_]+", text)))
    assert len(words) > 400
    assert [_lemmatizer()(w, lang="sv") for w in words] == [simplemma.lemmatize(w, lang="sv") for w in words]
