"""Guards: cheap, deterministic vetoes of semantic matches that differ in what embeddings blur.

Embeddings place "refund order 1043" next to "refund order 1034", "is X safe" next to "is X not safe" and
"5 miles to km" next to "5 km to miles". Each guard extracts one meaning-bearing feature from both texts and
vetoes the match when it differs:

* ``numbers``: the multiset of numbers (digits, number words, ordinals) must be equal;
* ``negation``: the count of negation cues (not, never, without, n't, ...) must be equal;
* ``polarity``: one text must not use a word whose antonym the other uses (increase/decrease, before/after,
  enable/disable, safe/unsafe, ...);
* ``entities``: every name-like token (capitalised mid-sentence, ALLCAPS, mixed letters and digits, quoted
  strings, identifiers, emails, URLs, paths) of one text must occur in the other;
* ``direction``: for directional words (to, from, into, than, vs, before, after, ...) the word that follows
  must be the same in both texts, which catches swapped arguments ("from Boston to Denver").

A veto costs a miss; a missing veto costs a wrong answer. Guards err towards vetoing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_'\-\.]*[A-Za-z0-9_]|[A-Za-z0-9_]")
_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,]\d+)*(?:st|nd|rd|th)?")
_QUOTED = re.compile(r"(?:(?<=[\s(\[])|^)[\"'`“‘]([^\"'`”’]{1,80})[\"'`”’](?=[\W]|$)")
_SPECIAL = re.compile(r"\S+@\S+\.\w+|https?://\S+|(?:\.{0,2}/)?[\w\-]+(?:/[\w\-\.]+)+|\b\w+\.\w{1,5}\b")

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12, "half": 0.5, "twice": 2, "double": 2,
    "triple": 3, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "once": 1, "single": 1, "pair": 2, "couple": 2, "quarter": 0.25,
}
_NEGATIONS = {
    "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "nowhere",
    "can't", "won't", "don't", "doesn't", "isn't", "aren't", "wasn't", "weren't", "shouldn't", "wouldn't",
    "couldn't", "didn't", "hasn't", "haven't", "hadn't", "mustn't", "needn't", "mightn't", "ain't", "dont",
    "doesnt", "isnt", "cant", "wont", "shouldnt", "didnt", "arent", "except", "excluding", "avoid", "lack",
    "lacks", "unable", "fail", "fails", "failed", "stop", "stopped",
}
_ANTONYMS = [
    ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("higher", "lower"), ("high", "low"),
    ("more", "less"), ("more", "fewer"), ("most", "least"), ("max", "min"), ("maximum", "minimum"),
    ("before", "after"), ("first", "last"), ("early", "late"), ("earliest", "latest"), ("oldest", "newest"),
    ("old", "new"), ("enable", "disable"), ("allow", "deny"), ("allow", "block"), ("accept", "reject"),
    ("include", "exclude"), ("add", "remove"), ("add", "delete"), ("create", "delete"), ("install", "uninstall"),
    ("encrypt", "decrypt"), ("encode", "decode"), ("compress", "decompress"), ("upload", "download"),
    ("import", "export"), ("input", "output"), ("push", "pull"), ("buy", "sell"), ("open", "close"),
    ("start", "stop"), ("start", "end"), ("begin", "end"), ("true", "false"), ("yes", "no"),
    ("safe", "unsafe"), ("safe", "dangerous"), ("legal", "illegal"), ("possible", "impossible"),
    ("positive", "negative"), ("above", "below"), ("over", "under"), ("up", "down"), ("left", "right"),
    ("north", "south"), ("east", "west"), ("ascending", "descending"), ("asc", "desc"), ("inner", "outer"),
    ("love", "hate"), ("like", "dislike"), ("best", "worst"), ("better", "worse"), ("cheapest", "expensive"),
    ("cheap", "expensive"), ("fast", "slow"), ("faster", "slower"), ("fastest", "slowest"), ("large", "small"),
    ("larger", "smaller"), ("largest", "smallest"), ("big", "small"), ("long", "short"), ("longer", "shorter"),
    ("hot", "cold"), ("warm", "cold"), ("win", "lose"), ("pros", "cons"), ("advantages", "disadvantages"),
    ("benefits", "risks"), ("benefits", "drawbacks"), ("import", "export"), ("sync", "async"),
    ("synchronous", "asynchronous"), ("public", "private"), ("internal", "external"), ("client", "server"),
    ("send", "receive"), ("lend", "borrow"), ("arrive", "depart"), ("arrival", "departure"), ("men", "women"),
    ("male", "female"), ("adults", "children"), ("adult", "child"), ("adults", "kids"), ("beginner", "expert"),
    ("beginners", "experts"), ("plural", "singular"), ("uppercase", "lowercase"), ("upper", "lower"),
    ("prefix", "suffix"), ("head", "tail"), ("import", "export"), ("deposit", "withdraw"), ("debit", "credit"),
    ("profit", "loss"), ("income", "expense"), ("past", "future"), ("yesterday", "tomorrow"), ("today", "tomorrow"),
    ("today", "yesterday"), ("morning", "evening"), ("day", "night"), ("weekday", "weekend"), ("win", "loss"),
]
_ANTONYM_MAP: dict[str, set[str]] = {}
for _a, _b in _ANTONYMS:
    _ANTONYM_MAP.setdefault(_a, set()).add(_b)
    _ANTONYM_MAP.setdefault(_b, set()).add(_a)

_DIRECTIONAL = {"to", "into", "from", "than", "vs", "versus", "before", "after", "onto", "toward", "towards",
                "per", "over"}
_SKIP_AFTER_DIRECTIONAL = {"the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "this", "that"}


def _tokens(text: str) -> list[str]:
    """Lower-cased word tokens; possessive 's dropped ("Japan's" -> "japan", "what's" -> "what")."""
    out = []
    for t in _TOKEN.findall(text.replace("’", "'")):
        t = t.casefold().strip(".-'")
        if t.endswith("'s"):
            t = t[:-2]
        if t:
            out.append(t)
    return out


def _stem(word: str) -> str:
    """Plural to singular, conservatively (a wrong merge could hide a difference; a missed one costs a miss)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def numbers(text: str) -> list[float]:
    """Numbers in order of appearance: digits (1,000 / 2.5 / 3rd) and number words (five, second, half)."""
    found: list[tuple[int, float]] = []
    for m in _NUMBER.finditer(text):
        raw = re.sub(r"(st|nd|rd|th)$", "", m.group(0))
        raw = raw.replace(",", "") if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", raw) else raw.replace(",", ".")
        try:
            found.append((m.start(), float(raw)))
        except ValueError:
            continue
    for m in re.finditer(r"[A-Za-z]+", text):
        word = m.group(0).casefold()
        if word in _NUMBER_WORDS:
            found.append((m.start(), float(_NUMBER_WORDS[word])))
    return [value for _, value in sorted(found)]


def negation_count(text: str) -> int:
    toks = _tokens(text.replace("’", "'"))
    return sum(1 for t in toks if t in _NEGATIONS or t.endswith("n't"))


def entities(text: str) -> set[str]:
    """Name-like spans, case-folded: the things whose identity a paraphrase must keep."""
    found: set[str] = set()
    for m in _QUOTED.finditer(text):
        found.add(m.group(1).casefold().strip())
    for m in _SPECIAL.finditer(text):
        found.add(m.group(0).casefold().rstrip(".,;:?!"))
    sentence_start = True
    for raw in re.findall(r"\S+", text):
        word = raw.strip("\"'`“”‘’()[]{}<>,;:?!.")
        if not word:
            continue
        core = word.strip(".-").replace("’", "'")
        if core.lower().endswith("'s"):
            core = core[:-2]
        if not core:
            continue
        is_entity = False
        if any(c.isdigit() for c in core) and any(c.isalpha() for c in core):
            is_entity = True  # gpt-4o, S3, iPhone15
        elif len(core) > 1 and core.isupper():
            is_entity = True  # AWS, SQL
        elif any(c.isupper() for c in core[1:]) and any(c.islower() for c in core):
            is_entity = True  # iPhone, JavaScript, camelCase
        elif "_" in core:
            is_entity = True  # snake_case identifiers
        elif core[:1].isupper() and not sentence_start and core.casefold() != "i":
            is_entity = True  # Paris, Python (mid-sentence capital)
        if is_entity:
            found.add(core.casefold())
        sentence_start = raw.endswith((".", "?", "!", ":")) or raw in ("-", "—")
    return found


def direction_signature(text: str) -> dict[str, str]:
    """directional word -> the stemmed content word that follows it (first occurrence)."""
    toks = _tokens(text)
    sig: dict[str, str] = {}
    for i, tok in enumerate(toks):
        if tok in _DIRECTIONAL and tok not in sig:
            j = i + 1
            while j < len(toks) and toks[j] in _SKIP_AFTER_DIRECTIONAL:
                j += 1
            if j < len(toks):
                sig[tok] = _stem(toks[j])
    return sig


@dataclass(frozen=True)
class Guards:
    """Which vetoes apply. All on by default; turning one off trades precision for recall."""

    numbers: bool = True
    negation: bool = True
    polarity: bool = True
    entities: bool = True
    direction: bool = True

    def veto(self, query: str, cached: str) -> str | None:
        """The name of the first guard that rejects serving ``cached``'s answer to ``query``, or None."""
        if self.numbers and numbers(query) != numbers(cached):  # same numbers, in the same order
            return "numbers"
        if self.negation and negation_count(query) != negation_count(cached):
            return "negation"
        if self.polarity and _polarity_clash(query, cached):
            return "polarity"
        if self.entities and not _entities_agree(query, cached):
            return "entities"
        if self.direction:
            a, b = direction_signature(query), direction_signature(cached)
            if any(a[k] != b[k] for k in a.keys() & b.keys()):
                return "direction"
        return None


def _polarity_clash(a: str, b: str) -> bool:
    ta = {_stem(t) for t in _tokens(a)} | set(_tokens(a))
    tb = {_stem(t) for t in _tokens(b)} | set(_tokens(b))
    for word in ta - tb:
        if _ANTONYM_MAP.get(word, set()) & (tb - ta):
            return True
    # "unsafe" vs "safe", "disable" vs "enable" by prefix
    for word in ta ^ tb:
        for prefix in ("un", "in", "dis", "non", "im", "il", "ir"):
            if word.startswith(prefix) and len(word) > len(prefix) + 2:
                base = word[len(prefix):]
                if (word in ta and base in tb and base not in ta) or (word in tb and base in ta and base not in tb):
                    return True
    return False


def _entities_agree(a: str, b: str) -> bool:
    """Every entity of each text occurs in the other: as a token, or as the regular plural of a longer name
    (never by stemming a short name: HTTP and HTTPS are different protocols)."""
    ta, tb = a.casefold(), b.casefold()
    toks_a, toks_b = set(_tokens(a)), set(_tokens(b))
    checks = [(e, tb, toks_b) for e in entities(a)] + [(e, ta, toks_a) for e in entities(b)]
    for ent, other_text, other_toks in checks:
        if ent in other_toks:
            continue
        if len(ent) >= 5 and ent.isalpha() and ({ent + "s", ent + "es"} & other_toks
                                                 or (ent.endswith("s") and ent[:-1] in other_toks)):
            continue
        if (" " in ent or "/" in ent or "@" in ent or "." in ent) and ent in other_text:
            continue
        return False
    return True
