"""The Encoder protocol every embedding backend implements, and shared helpers."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

ProgressFn = Callable[[int, int], None]
"""Called as `progress(done, total)` while passages are encoded."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which model, why, and how to fix it."""


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalized float32 vectors; queries and passages may be encoded differently."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode search queries -> array of shape (len(texts), dim)."""
        ...

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
        """Encode passages -> array of shape (len(texts), dim)."""
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length; all-zero rows stay zero instead of becoming NaN.

    Parameters
    ----------
    vectors : np.ndarray
        Array of shape (n, dim).

    Returns
    -------
    np.ndarray
        C-contiguous float32 array of the same shape.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def batched_encode(
    encode: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    dim: int,
    batch_size: int,
    progress: ProgressFn | None,
) -> np.ndarray:
    """Encode `texts` in batches with `encode`, reporting progress after each batch."""
    texts = list(texts)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        out[start : start + len(chunk)] = encode(chunk)
        if progress is not None:
            progress(start + len(chunk), len(texts))
    return l2_normalize(out) if len(texts) else out
