"""Cache keys: a hash of everything that can change the answer, and nothing that cannot.

Peer caches hit on the wrong question because their key left something out: only the last message of a
conversation, or not the model, temperature, tools or system prompt (GPTCache #8 #694). Here the key covers
*every* argument of the decorated function (so a function taking the SDK's keyword arguments keys on model,
messages, tools, response format and sampling parameters), the function's identity and its code constants (a
hard-coded model name or system prompt is part of the key, so editing it invalidates old entries), extra key
parts the caller adds, and the tenancy scope. Only the *prompt* argument is normalised, and only in ways that do
not change what is asked (but in the rare text whose last word is code ending in "." or "?", see docs/cache.md):
Unicode canonical composition (NFC: the same character typed as one code point or as a letter plus a combining
accent), runs of spaces inside a line, spaces at line ends, blank lines around the text, the indentation of a
one-line text and one full stop or question mark ending the text right after a word. Line breaks, indentation,
tabs, a space before punctuation ("rm -rf .") and ellipses are kept. Unicode *compatibility* folding (NFKC) is
not applied: it turns "2³" into "23" and "10⁶" into "106". Letter case is kept by default: it is meaning in
base64, identifiers, passwords and names ("aGVsbG8=" is not "AGVSBG8="); ``case_sensitive=False`` opts in to
folding the case of plain words only.

An argument whose value cannot be rendered canonically (an arbitrary object) makes the call uncacheable
rather than being keyed by something lossy like its type name: two different requests must never share a key.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import math
import pathlib
import re
import types
import unicodedata
import uuid
from decimal import Decimal
from typing import Any, Callable, Mapping

from ..pricing.money import private_context
from ..vendor import sdk_sentinel

# 2: NFC instead of NFKC, case kept by default, a trailing '!' kept. 3: line breaks, a space before punctuation and
# ellipses kept (a v2 entry of "Explain: rm -rf ." must not answer "Explain: rm -rf" from a shared store).
KEY_VERSION = 3

# Runs of spaces after a line's indentation. Tabs are kept: they separate the fields of a pasted table.
_INNER_SPACES = re.compile(r"(?<=\S) {2,}")
# One "." or "?" ending the text right after a word ends the sentence ("kilometers.", "France ?"). A "." after a
# space is an argument ("rm -rf ."), "..." / "??" are not one stop, and "!" is kept ("5!" is a factorial).
_FINAL_STOP = re.compile(r"(?<=\w)(?:\.| *\?)\Z")
_TOKEN = re.compile(r"\S+")
_EDGE_PUNCT = "\"'()[]{}<>.,;:!?\u00ab\u00bb\u201c\u201d\u2018\u2019"
# Keys of message dicts whose string values are user-visible text that may be normalised.
_TEXT_KEYS = frozenset({"content", "text", "input"})
# Decimals are keyed by their exact value, read in a context of aicost's own: ``Decimal.normalize()`` rounds to the
# *thread's* precision (a host that lowered it would key 1.234567 and 1.234568 alike, and another host the two
# apart) and ``str()`` follows the thread's ``capitals``. At the widest precision nothing rounds.
_EXACT = private_context(decimal.MAX_PREC, traps=[decimal.InvalidOperation], emax=decimal.MAX_EMAX,
                         emin=decimal.MIN_EMIN)


class Uncacheable(Exception):
    """Raised while building a key when an argument has no canonical form; the call then bypasses the cache."""


def normalise_text(text: str, *, case_sensitive: bool = True) -> str:
    """Collapse formatting that cannot change the answer: canonically equivalent Unicode forms, runs of spaces
    inside lines, spaces at line ends, blank lines around the text, one closing full stop or question mark;
    case only on request.

    Line breaks and indentation are kept: a list, a poem or code on several lines is not the same request as its
    one-line form ("how many lines are in: a / b / c"). Only a one-line text loses its indentation (nothing to be
    indented relative to).
    """
    text = unicodedata.normalize("NFC", text)
    lines = [_normalise_line(line) for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) == 1:
        lines[0] = lines[0].lstrip()
    text = _FINAL_STOP.sub("", "\n".join(lines), count=1)
    return text if case_sensitive else _TOKEN.sub(_fold_word, text)


def _normalise_line(line: str) -> str:
    """The line's indentation as typed, then its text with runs of spaces collapsed and its end trimmed."""
    body = line.lstrip()
    if not body:
        return ""
    return line[: len(line) - len(body)] + _INNER_SPACES.sub(" ", body.rstrip())


def _fold_word(match: re.Match) -> str:
    """Fold the case of a plain word (all lower, Capitalised or ALL CAPS letters, with surrounding punctuation).

    A token mixing cases inside it or holding digits or symbols (base64 ``aGVsbG8=``, ``iPhone``, ``gpt-4o``,
    ``snake_case``) is kept as typed: its case is part of what it says.
    """
    token = match.group(0)
    word = token.strip(_EDGE_PUNCT)
    if word.isalpha() and (word.islower() or word.isupper() or word.istitle()):
        return token.casefold()
    return token


def canonical(value: Any, *, path: str = "", names: bool = False) -> Any:
    """A JSON-ready, order-independent rendering of ``value`` that is exact (never lossy).

    An :class:`Uncacheable` error says where the value is, for the log: ``path`` (``arguments``), then the keys of
    the top mapping when ``names`` says they are names (parameters, key parts), then list positions. It never says
    a value, nor a key deeper down: those are the application's data (a dict keyed by e-mail address or API key),
    which stays out of logs unless opted in. The application's own code that renders a value (a pydantic model's
    ``model_dump``, a mapping's ``items``) may fail with a message quoting it: that is said by its type alone.
    """
    try:
        return _render(value, path, names)
    except Uncacheable:
        raise
    except Exception as exc:
        raise Uncacheable(f"{path or 'argument'}: rendering it for the key raised {type(exc).__name__}") from exc


def _render(value: Any, path: str, names: bool = False) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"__float__": repr(value)}
        # 1.0 and 1 give the same answer from any vendor API; keep them one key.
        return int(value) if value.is_integer() else value
    if isinstance(value, Decimal):
        return {"__decimal__": _decimal_key(value)}
    if isinstance(value, bytes):
        return {"__bytes__": hashlib.sha256(value).hexdigest()}
    if isinstance(value, Mapping):
        items = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise Uncacheable(f"{path or 'argument'} has a non-scalar mapping key {type(k).__name__}")
            # a named value (an argument) goes through canonical(): a failure in it is said by its name
            items[str(k)] = canonical(v, path=f"{path}.{k}") if names else _render(v, path)
        return {"__map__": sorted(items.items())}
    if isinstance(value, (list, tuple)):
        return [_render(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        rendered = [_render(v, f"{path}{{}}") for v in value]
        return {"__set__": sorted(rendered, key=lambda r: json.dumps(r, sort_keys=True))}
    if isinstance(value, enum.Enum):
        return {"__enum__": _qualname(type(value)), "v": _render(value.value, path)}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, (uuid.UUID, pathlib.PurePath)):
        return {"__str__": str(value)}
    if sdk_sentinel(value):  # an SDK's NOT_GIVEN / omit: all its instances are the same value
        return {"__instance_of__": _qualname(type(value))}
    model_dump = getattr(value, "model_dump", None)  # pydantic models (response_format, tool schemas)
    if callable(model_dump):
        try:
            return {"__model__": _qualname(type(value)), "v": _render(model_dump(mode="json"), path)}
        except TypeError:
            return {"__model__": _qualname(type(value)), "v": _render(model_dump(), path)}
    if isinstance(value, type):  # a response_format class: its schema is what matters to the vendor
        schema = getattr(value, "model_json_schema", None)
        if callable(schema):
            return {"__schema__": _render(schema(), path)}
        return {"__type__": _qualname(value)}
    if dataclasses.is_dataclass(value):
        return {"__dataclass__": _qualname(type(value)), "v": _render(dataclasses.asdict(value), path)}
    raise Uncacheable(
        f"{path or 'argument'} of type {type(value).__name__} has no canonical form; "
        "exclude it with ignore=[...] or key it with key_parts"
    )


def _decimal_key(value: Decimal) -> str:
    """The value's text without trailing zeros (``1.50`` -> ``1.5``), the same whatever the thread's context."""
    if not value.is_finite():
        return str(value)  # NaN / Infinity: no digits or exponent for a context to change
    if not value:
        return "0"  # 0, -0, 0E-7: one value
    return _EXACT.to_sci_string(_EXACT.normalize(value))


def normalise_prompt(value: Any, *, case_sensitive: bool = True) -> Any:
    """Normalise the prompt argument: a string, or a conversation (list of messages with text content)."""
    if isinstance(value, str):
        return normalise_text(value, case_sensitive=case_sensitive)
    if isinstance(value, Mapping):
        return {
            k: (normalise_text(v, case_sensitive=case_sensitive) if k in _TEXT_KEYS and isinstance(v, str)
                else normalise_prompt(v, case_sensitive=case_sensitive) if isinstance(v, (list, tuple, Mapping))
                else v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [normalise_prompt(v, case_sensitive=case_sensitive) for v in value]
    return value


def variable_text(prompt: Any) -> tuple[str | None, Any]:
    """Split a prompt into (the user's variable text, the fixed context around it).

    A string prompt is all variable. A conversation's variable text is its last user message; every earlier
    message is context, which must match *exactly* for a semantic hit (the whole conversation is keyed).
    Returns ``(None, prompt)`` when there is no text to compare (then only the exact tier applies).
    """
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, (list, tuple)) and prompt:
        last = prompt[-1]
        if isinstance(last, Mapping) and last.get("role") == "user":
            text = _message_text(last.get("content"))
            if text is not None:
                rest = {k: v for k, v in last.items() if k != "content"}
                return text, [list(prompt[:-1]), rest]
    return None, prompt


def _message_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # content parts: only pure text parts are comparable
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") in ("text", "input_text") and isinstance(
                part.get("text"), str
            ):
                texts.append(part["text"])
            else:
                return None
        return "\n".join(texts) if texts else None
    return None


def code_fingerprint(func: Callable[..., Any]) -> str:
    """Hash of the function's bytecode constants and names (string literals such as a model or system prompt).

    Bytecode itself differs between Python versions; constants and names do not, so a shared store keeps
    working across interpreter upgrades while an edited literal still changes the key.
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return ""
    digest = hashlib.sha256()

    def visit(c: types.CodeType) -> None:  # names of nested code objects are constants of their parent
        digest.update("\x00".join(c.co_names).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                visit(const)
            else:
                digest.update(repr(const).encode())
                digest.update(b"\x1f")

    visit(code)
    return digest.hexdigest()[:16]


def key_prefix(name: str) -> str:
    """The namespace of one cached function's keys, ``aicost:cache:<name>:`` (the hash follows).

    ``%`` and ``:`` in the name are escaped, so the escaped name holds no ``:`` and no function's prefix starts
    another's: ``clear()`` of a function named ``a`` drops its own keys by prefix, never those of ``a:b``.
    """
    return "aicost:cache:" + name.replace("%", "%25").replace(":", "%3A") + ":"

def hash_material(material: Any) -> str:
    payload = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _qualname(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"
