"""Local token counting that works offline, and says when it is only an estimate.

tiktoken downloads its rank files at first use, which hangs or fails on air-gapped machines and in CI. aicost
never triggers that download itself. It looks for encodings in this order:

1. The rank files shipped by the ``bpe-openai`` package (``pip install "aicost-otel[offline]"``): they are
   checked against the SHA-256 that tiktoken itself pins, then handed to ``tiktoken.Encoding``, so the counts
   are tiktoken's exact counts.
2. tiktoken's own cache, only when the file is already there (``TIKTOKEN_CACHE_DIR`` or the default cache),
   i.e. no network access is attempted.
3. Otherwise a character-based estimate (about 4 characters per token), flagged as such.

The encodings are OpenAI's: counts for other vendors' models are estimates (most publish no local tokenizer), as
the request's ``RequestShape.tokenizer_is_exact`` says. Callers get a :class:`TokenCount` whose ``exact`` flag
feeds ``aicost.usage.estimated``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _fork

if TYPE_CHECKING:  # pragma: no cover
    from .vendor import InputText

logger = logging.getLogger("aicost")

# tiktoken's pinned hashes of the raw .tiktoken files (tiktoken_ext/openai_public.py).
_EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
_TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
CHARS_PER_TOKEN = 4  # the rule of thumb both vendors document for English text


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool  # False: a heuristic, or a tokenizer that is not the model's own


# ``tiktoken.model``, imported at the first model name asked about, then kept: an import statement in
# ``encoding_name_for`` ran the import machinery at every count. Without tiktoken it is asked for again at each
# model name not yet looked up.
_tiktoken_model: Any = None


def _import_tiktoken_model() -> Any:
    global _tiktoken_model
    import tiktoken.model

    _tiktoken_model = tiktoken.model
    return _tiktoken_model


def encoding_name_for(model: str | None) -> str:
    """The tiktoken encoding of an OpenAI model; o200k_base for anything newer or unknown."""
    if isinstance(model, str) and model:
        return _encoding_name_of(model)
    return "o200k_base"


# Model names come from the application (any number of distinct ones): the last few hundred are kept, unknown ones
# too (their lookup is the slowest: every prefix, then tiktoken's KeyError).
_ENCODING_NAMES_KEPT = 256


@functools.lru_cache(maxsize=_ENCODING_NAMES_KEPT)
def _encoding_name_of(model: str) -> str:
    """``encoding_name_for`` of a non-empty name, looked up once per name: tiktoken's ``encoding_name_for_model``
    scans its prefixes in Python (and raises for a name it does not know) on every count otherwise."""
    name = model.split("/")[-1]
    try:
        return (_tiktoken_model or _import_tiktoken_model()).encoding_name_for_model(name)
    except Exception:
        pass
    if name.startswith(("gpt-3.5", "gpt-35", "gpt-4-", "text-embedding-", "davinci", "babbage")) or name == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


_load_lock = _fork.lock()
_loading_here = threading.local()  # .active: this thread is loading (a re-entry then loads nothing)
_encodings: dict[str, Any] = {}


def _load_encoding(name: str) -> Any | None:
    """Load an encoding once per process. Checked again under the lock: threads making their first call at
    the same moment must wait for one load (~1 s), not each load the ranks again in turn.

    None (the caller estimates, as without local data) where waiting for the load would be wrong: on the thread
    already loading it (a stream abandoned in a reference cycle, finished by the garbage collector in the middle
    of the load, would otherwise wait for itself for ever), or on an event loop (whose every task the load would
    stall for ~1 s: a background thread loads it instead, for the calls after it)."""
    try:
        return _encodings[name]
    except KeyError:
        pass
    if getattr(_loading_here, "active", False):
        return None
    if _on_event_loop():
        _load_in_background(name)
        return None
    # At exit a daemon loader thread is frozen, perhaps holding the lock: never wait for it then.
    if not _load_lock.acquire(blocking=not sys.is_finalizing()):
        return None
    _loading_here.active = True
    try:
        if name in _encodings:
            return _encodings[name]
        enc = _from_bpe_openai(name) or _from_tiktoken_cache(name)
        _encodings[name] = enc
    finally:
        _loading_here.active = False
        _load_lock.release()
    if enc is None:
        logger.warning(
            "aicost: no local tokenizer data for %s (install aicost-otel[offline] or set TIKTOKEN_CACHE_DIR); "
            "token counts are estimated at %d characters per token",
            name,
            CHARS_PER_TOKEN,
        )
    return enc


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop (asyncio, or trio through the SDKs' own sniffio)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return True
    sniffio = sys.modules.get("sniffio") if "trio" in sys.modules else None
    if sniffio is not None:
        try:
            return sniffio.current_async_library() == "trio"
        except Exception:
            return False
    return False


_loading: set[str] = set()  # encodings a background thread was started for


def _load_in_background(name: str) -> None:
    """Start one daemon thread loading ``name`` (never while the interpreter shuts down: no thread can start)."""
    if name in _loading or sys.is_finalizing():
        return
    _loading.add(name)
    try:
        threading.Thread(target=_load_encoding, args=(name,), name="aicost-tokenizer", daemon=True).start()
    except Exception:  # RuntimeError: can't create new thread at interpreter shutdown
        _loading.discard(name)


@_fork.on_fork_in_child
def _forget_loader_threads() -> None:
    _loading.clear()  # the parent's loader thread does not run in the child: the child starts its own


def _from_bpe_openai(name: str) -> Any | None:
    try:
        import importlib.resources as resources

        import tiktoken
        import tiktoken_ext.openai_public as public

        raw = resources.files("bpe_openai.data").joinpath(f"{name}.tiktoken.gz").read_bytes()
    except Exception:
        return None
    try:
        data = gzip.decompress(raw)
        if hashlib.sha256(data).hexdigest() != _EXPECTED_SHA256.get(name):
            logger.warning("aicost: bpe-openai's %s does not match tiktoken's pinned hash; not used", name)
            return None
        ranks = {}
        import base64

        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        spec = getattr(public, name)  # tiktoken's own constructor gives the authoritative regex/special tokens
        return _build_with_ranks(tiktoken, spec, ranks)
    except Exception:
        logger.warning("aicost: could not load %s from bpe-openai", name, exc_info=True)
        return None


def _build_with_ranks(tiktoken: Any, spec_fn: Any, ranks: dict[bytes, int]) -> Any:
    # Call tiktoken's constructor with its loader pointed at our verified ranks, so pat_str and special tokens
    # stay exactly tiktoken's (no copy of its regex here to drift).
    import tiktoken_ext.openai_public as public

    original = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda *a, **k: ranks  # type: ignore[assignment]
    try:
        spec = spec_fn()
    finally:
        public.load_tiktoken_bpe = original  # type: ignore[assignment]
    return tiktoken.Encoding(**spec)


def _from_tiktoken_cache(name: str) -> Any | None:
    url = _TIKTOKEN_URLS.get(name)
    if url is None:
        return None
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    cache_key = hashlib.sha1(url.encode()).hexdigest()
    if not os.path.exists(os.path.join(cache_dir, cache_key)):
        return None  # tiktoken would download it: never do that from inside the host application
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception:
        return None


def count_text(text: str, model: str | None = None, own_tokenizer: bool = True) -> TokenCount:
    """Tokens of ``text``. ``own_tokenizer``: whether tiktoken's encoding is the vendor's own tokenizer for this
    model (``RequestShape.tokenizer_is_exact``); if not, the count is an estimate."""
    if not text:
        return TokenCount(0, True)
    enc = _load_encoding(encoding_name_for(model))
    if enc is None:
        return TokenCount(max(1, -(-len(text) // CHARS_PER_TOKEN)), False)
    n = len(enc.encode(text, disallowed_special=()))
    return TokenCount(n, own_tokenizer)


def count_input(text: "InputText", model: str | None, own_tokenizer: bool = True) -> TokenCount:
    """Tokens of a request's input (``RequestShape.input_text``), exact only where the tokenizer is the vendor's."""
    total = 0
    exact = text.exact
    for piece in text.pieces:
        c = count_text(piece, model, own_tokenizer)
        total += c.tokens
        exact = exact and c.exact
    return TokenCount(total + text.overhead, exact)


def count_request_input(kwargs: dict[str, Any], model: str | None, provider: str, shape: Any) -> TokenCount:
    """Estimate the input tokens of a request from its kwargs, read through the endpoint's ``RequestShape``. Good
    enough for budgets' worst-case reservations and for streams without usage."""
    return count_input(shape.input_text(kwargs), model, shape.tokenizer_is_exact(provider))
