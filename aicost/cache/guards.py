"""Guards: cheap, deterministic vetoes of semantic matches that differ in what embeddings blur.

Embeddings place "refund order 1043" next to "refund order 1034", "is X safe" next to "is X not safe" and
"5 miles to km" next to "5 km to miles". Each guard extracts one meaning-bearing feature from both texts and
vetoes the match when it differs:

* ``numbers``: the multiset of numbers (digits, number words, ordinals) must be equal;
* ``negation``: the count of negation cues (not, never, without, n't, ...) must be equal;
* ``polarity``: one text must not use a word whose antonym the other uses (increase/decrease, before/after,
  enable/disable, safe/unsafe, sunrise/sunset, strongest/weakest, ...), nor the opposite particle after the same
  verb (turn on/turn off, zoom in/zoom out);
* ``entities``: every name-like token (capitalised mid-sentence, ALLCAPS, mixed letters and digits, quoted
  strings, identifiers, emails, URLs, paths) of one text must occur in the other;
* ``direction``: a directional word (to, from, into, than, vs, before, after, ...) used in both texts must be
  followed by the same word, which catches swapped arguments ("from Boston to Denver"); a word must not follow
  "to" in one text and "from" in the other ("ship to Canada" / "ship from Canada"); and two words must not trade
  places around one relational word ("ounces in a cup" / "cups in an ounce");
* ``units``: when both texts name units of measure or currencies, they must name the same ones ("in Celsius" /
  "in Fahrenheit", "to kilometers" / "to meters", "km" and "kilometers" being one unit);
* ``tense``: when both texts mark a tense with an auxiliary, the same one: past (was, were, did, had), present
  (is, are, am, do, does, has, have, "who's") or future (will, shall, 'll) - "who was the CEO" / "who is the CEO",
  "when did it end" / "when will it end"; and when both use a modal of obligation (must), possibility (may,
  might) or advice (should, ought), the same one - "must I" / "may I". The verifier ignores auxiliaries as
  question scaffolding; a text without one ("Who painted the Mona Lisa?" / "Who was the painter of the Mona
  Lisa?") and "can", "could", "would" (mostly politeness: "could you tell me") mark nothing, so "how do I" and
  "how can I" still match.

A veto costs a miss; a missing veto costs a wrong answer. Guards err towards vetoing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from .checks import check_bool

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
    # issue 14 item 19 and their kind: words used in the same places with opposite meanings
    ("sunrise", "sunset"), ("dawn", "dusk"), ("horizontal", "vertical"), ("strong", "weak"), ("hard", "soft"),
    ("hard", "easy"), ("difficult", "easy"), ("good", "bad"), ("heavy", "light"), ("light", "dark"), ("wide", "narrow"),
    ("thick", "thin"), ("deep", "shallow"), ("rich", "poor"), ("tall", "short"), ("wet", "dry"), ("full", "empty"),
    ("loud", "quiet"), ("young", "old"), ("hot", "cool"), ("freeze", "boil"), ("freezing", "boiling"),
    ("melt", "freeze"), ("healthy", "unhealthy"), ("renew", "cancel"), ("subscribe", "unsubscribe"),
    ("upgrade", "downgrade"), ("undo", "redo"), ("zoom", "unzoom"), ("mute", "unmute"), ("block", "unblock"),
    ("lock", "unlock"), ("follow", "unfollow"), ("pin", "unpin"), ("archive", "unarchive"), ("bold", "italic"),
    ("login", "logout"), ("inbound", "outbound"), ("incoming", "outgoing"), ("import", "export"), ("drop", "add"),
    ("expand", "collapse"), ("show", "hide"), ("visible", "hidden"), ("online", "offline"), ("join", "leave"),
    ("hire", "fire"), ("win", "lose"), ("gain", "lose"), ("attack", "defend"), ("minimum", "maximum"),
    ("min", "max"), ("lowest", "highest"), ("cheapest", "dearest"), ("worst", "best"), ("newest", "oldest"),
    ("slowest", "fastest"), ("warmest", "coldest"), ("hottest", "coldest"), ("wettest", "driest"),
    ("entry", "exit"), ("entrance", "exit"), ("rise", "fall"),
    ("rise", "set"), ("sunny", "rainy"), ("summer", "winter"), ("spring", "autumn"), ("spring", "fall"),
    ("northern", "southern"), ("eastern", "western"), ("top", "bottom"), ("front", "back"),
    ("inside", "outside"), ("indoor", "outdoor"), ("forward", "backward"), ("forwards", "backwards"),
    ("clockwise", "counterclockwise"), ("clockwise", "anticlockwise"), ("row", "column"), ("rows", "columns"),
    ("width", "height"), ("length", "width"), ("ceiling", "floor"), ("ceil", "floor"),
]
_ANTONYM_MAP: dict[str, set[str]] = {}
for _a, _b in _ANTONYMS:
    _ANTONYM_MAP.setdefault(_a, set()).add(_b)
    _ANTONYM_MAP.setdefault(_b, set()).add(_a)

# Verb + particle: the particle carries the polarity ("turn on" / "turn off", "zoom in" / "zoom out").
_PARTICLE_CLASH = {("on", "off"), ("in", "out"), ("up", "down")}
_PARTICLE_CLASH |= {(b, a) for a, b in _PARTICLE_CLASH}
_PARTICLES = {p for pair in _PARTICLE_CLASH for p in pair}

# Units of measure and currencies, by the one name each is compared under ("km" and "kilometres" are one unit).
_UNIT_NAMES = {
    "mile": "mile", "mi": "mile", "kilometer": "kilometer", "kilometre": "kilometer", "km": "kilometer",
    "meter": "meter", "metre": "meter", "centimeter": "centimeter", "centimetre": "centimeter",
    "cm": "centimeter", "millimeter": "millimeter", "millimetre": "millimeter", "mm": "millimeter",
    "foot": "foot", "feet": "foot", "ft": "foot", "inch": "inch", "inches": "inch", "yard": "yard",
    "yd": "yard", "gram": "gram", "kilogram": "kilogram", "kg": "kilogram", "kilo": "kilogram",
    "pound": "pound", "lb": "pound", "lbs": "pound", "ounce": "ounce", "oz": "ounce", "ton": "ton", "tonne": "ton",
    "liter": "liter", "litre": "liter", "milliliter": "milliliter", "millilitre": "milliliter",
    "ml": "milliliter", "gallon": "gallon", "gal": "gallon", "quart": "quart", "qt": "quart", "pint": "pint",
    "pt": "pint", "cup": "cup", "teaspoon": "teaspoon", "tsp": "teaspoon", "tablespoon": "tablespoon",
    "tbsp": "tablespoon", "celsius": "celsius", "centigrade": "celsius", "fahrenheit": "fahrenheit",
    "kelvin": "kelvin", "calorie": "calorie", "kcal": "calorie", "cal": "calorie", "joule": "joule",
    "kilojoule": "kilojoule", "kj": "kilojoule", "watt": "watt", "kilowatt": "kilowatt", "kw": "kilowatt",
    "kwh": "kilowatt-hour", "volt": "volt", "amp": "ampere", "ampere": "ampere", "mph": "mph", "kph": "kph",
    "acre": "acre", "hectare": "hectare", "byte": "byte", "kilobyte": "kilobyte", "kb": "kilobyte",
    "megabyte": "megabyte", "mb": "megabyte", "gigabyte": "gigabyte", "gb": "gigabyte", "terabyte": "terabyte",
    "tb": "terabyte", "bit": "bit", "dollar": "dollar", "usd": "dollar", "$": "dollar", "euro": "euro",
    "eur": "euro", "€": "euro", "gbp": "pound", "£": "pound", "sterling": "pound", "yen": "yen", "jpy": "yen",
    "rupee": "rupee", "inr": "rupee", "peso": "peso", "franc": "franc", "chf": "franc", "yuan": "yuan",
    "cny": "yuan", "won": "won", "ruble": "ruble", "rouble": "ruble", "bitcoin": "bitcoin", "btc": "bitcoin",
}

# Auxiliaries that mark a tense, and modals, by what they mark (contractions included: "wasn't" is past).
_TENSE_AUX = {
    **dict.fromkeys(("was", "were", "did", "had", "wasn't", "weren't", "didn't", "hadn't"), "past"),
    **dict.fromkeys(("is", "are", "am", "do", "does", "has", "have", "isn't", "aren't", "don't", "doesn't",
                     "hasn't", "haven't"), "present"),
    **dict.fromkeys(("will", "shall", "won't", "shan't"), "future"),
}
_MODAL_AUX = {
    **dict.fromkeys(("must", "mustn't"), "obligation"),
    **dict.fromkeys(("may", "might", "mightn't"), "possibility"),
    **dict.fromkeys(("should", "shouldn't", "ought"), "advice"),
}
# "who's", "it's": a contracted "is"/"has" (the tokenizer drops "'s" as a possessive, so it is read here).
_CONTRACTED_IS = re.compile(r"\b(?:who|what|where|when|why|how|which|it|that|there|here|he|she)'s\b", re.I)
_CONTRACTED = {"'ll": "future", "'re": "present", "'ve": "present"}

_DIRECTIONAL = {"to", "into", "from", "than", "vs", "versus", "before", "after", "onto", "toward", "towards",
                "per", "over"}
_SKIP_AFTER_DIRECTIONAL = {"the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "this", "that"}


# Phrasal verbs with a one-word equivalent, so that "turn off" and "disable" compare as one word (and "turn on"
# clashes with "disable").
PHRASAL = {("turn", "off"): "disable", ("switch", "off"): "disable", ("shut", "off"): "disable",
           ("turn", "on"): "enable", ("switch", "on"): "enable", ("get", "rid"): "remove", ("set", "up"): "setup",
           ("sign", "in"): "login", ("log", "in"): "login", ("sign", "out"): "logout", ("log", "out"): "logout"}


def phrasal(tokens: list[str]) -> list[str]:
    """Replace phrasal verbs by their one-word equivalent (tokens as :func:`_tokens` returns them)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = PHRASAL.get((tokens[i], tokens[i + 1])) if i + 1 < len(tokens) else None
        if word is not None:
            out.append(word)
            i += 2
        else:
            out.append(tokens[i])
            i += 1
    return out


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


def tense(text: str) -> frozenset[str]:
    """The tenses the text's auxiliaries mark ({"past"} for "who was ...", {} for "who painted ...")."""
    text = text.replace("’", "'")
    marks = {"present"} if _CONTRACTED_IS.search(text) else set()
    for t in re.findall(r"[a-z']+", text.casefold()):
        mark = _TENSE_AUX.get(t) or next((m for end, m in _CONTRACTED.items() if t.endswith(end)), None)
        if mark is not None:
            marks.add(mark)
    return frozenset(marks)


def modality(text: str) -> frozenset[str]:
    """The modalities the text's modals mark ({"obligation"} for "must I ...")."""
    return frozenset(_MODAL_AUX[t] for t in re.findall(r"[a-z']+", text.replace("’", "'").casefold())
                     if t in _MODAL_AUX)


def _tense_clash(a: str, b: str) -> bool:
    """Both texts mark a tense (or a modality) and not the same: a text that marks none agrees with any."""
    ta, tb = tense(a), tense(b)
    ma, mb = modality(a), modality(b)
    return bool(ta and tb and ta != tb) or bool(ma and mb and ma != mb)


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
        elif core[:1].isupper() and not sentence_start and core.casefold().split("'")[0] != "i":
            is_entity = True  # Paris, Python (mid-sentence capital)
        if is_entity:
            found.add(core.casefold())
        sentence_start = raw.endswith((".", "?", "!", ":")) or raw in ("-", "—")
    return found


def units(text: str) -> set[str]:
    """Units of measure and currencies named in the text, each under one name ("km" -> "kilometer")."""
    found = {_UNIT_NAMES[c] for c in text if c in "$€£"}
    for tok in _tokens(text):
        name = _UNIT_NAMES.get(tok) or _UNIT_NAMES.get(_stem(tok))
        if name is not None:
            found.add(name)
    return found


def _particles(text: str) -> dict[str, str]:
    """verb -> the polarity particle right after it ("turn on" -> {"turn": "on"})."""
    toks = _tokens(text)
    return {toks[i]: toks[i + 1] for i in range(len(toks) - 1)
            if toks[i + 1] in _PARTICLES and toks[i] not in _PARTICLES and toks[i] not in _DIRECTIONAL}


_TOWARDS = {"to", "into", "onto", "toward", "towards"}
_RELATIONAL = _DIRECTIONAL | {"in", "of", "for", "on", "at", "with"}


def _arguments(text: str) -> tuple[list[str], dict[str, list[tuple[int, set[str]]]]]:
    """(stemmed tokens, relational word -> [(its position, the words after it up to the next relational word,
    at most 2, articles skipped)]): "from a python list" -> ("from", {"python", "list"})."""
    raw = _tokens(text)
    toks = [_stem(t) for t in raw]
    out: dict[str, list[tuple[int, set[str]]]] = {}
    for i, tok in enumerate(raw):
        if tok not in _RELATIONAL:
            continue
        key = "to" if tok in _TOWARDS else tok
        words: set[str] = set()
        j = i + 1
        while j < len(raw) and len(words) < 2 and raw[j] not in _RELATIONAL:
            if raw[j] not in _SKIP_AFTER_DIRECTIONAL:
                words.add(toks[j])
            j += 1
        if words:
            out.setdefault(key, []).append((i, words))
    return toks, out


def _direction_clash(a: str, b: str) -> bool:
    """Arguments in other places: a directional word (to, from, than, vs, ...) used in both texts is followed
    by different words ("5 miles to km" / "5 km to miles"); a word is a destination in one text and an origin
    in the other ("ship to Canada" / "ship from Canada"); or two words trade places around one relational word
    ("ounces in a cup" / "cups in an ounce")."""
    toks_a, args_a = _arguments(a)
    toks_b, args_b = _arguments(b)

    def after(args: dict, key: str) -> set[str]:
        return set().union(*(words for _, words in args.get(key, [])))

    for key in _DIRECTIONAL & args_a.keys() & args_b.keys():
        if not after(args_a, key) & after(args_b, key):
            return True
    if after(args_a, "to") & after(args_b, "from") or after(args_b, "to") & after(args_a, "from"):
        return True
    # words introduced by a relational word are arguments of that relation, not the other side of a swap
    introduced_a = set().union(*(after(args_a, k) for k in args_a))
    introduced_b = set().union(*(after(args_b, k) for k in args_b))
    for key in args_a.keys() & args_b.keys():
        all_a, all_b = after(args_a, key), after(args_b, key)
        for pos_a, words_a in args_a[key]:
            for pos_b, words_b in args_b[key]:
                for x in words_a - all_b - introduced_b:
                    for y in words_b - all_a - introduced_a:
                        # y before the relational word in a, x before it in b: the two swapped sides
                        if y in toks_a[:pos_a] and x in toks_b[:pos_b]:
                            return True
    return False


@dataclass(frozen=True)
class Guards:
    """Which vetoes apply. All on by default; turning one off trades precision for recall."""

    numbers: bool = True
    negation: bool = True
    polarity: bool = True
    entities: bool = True
    direction: bool = True
    units: bool = True
    tense: bool = True

    def __post_init__(self) -> None:
        for guard in fields(self):  # a string such as "false" is truthy: it would keep the guard on
            check_bool(f"Guards({guard.name}=...)", getattr(self, guard.name))

    def veto(self, query: str, cached: str) -> str | None:
        """The name of the first guard that rejects serving ``cached``'s answer to ``query``, or None."""
        if self.numbers and numbers(query) != numbers(cached):  # same numbers, in the same order
            return "numbers"
        if self.negation and negation_count(query) != negation_count(cached):
            return "negation"
        if self.polarity and _polarity_clash(query, cached):
            return "polarity"
        if self.units:
            ua, ub = units(query), units(cached)
            if ua and ub and ua != ub:
                return "units"
        if self.entities and not _entities_agree(query, cached):
            return "entities"
        if self.direction and _direction_clash(query, cached):
            return "direction"
        if self.tense and _tense_clash(query, cached):
            return "tense"
        return None


def base_form(word: str) -> str:
    """Strip a degree or adverb ending: strongest -> strong, hottest -> hot, horizontally -> horizontal."""
    for suffix, repl in (("iest", "y"), ("ier", "y"), ("est", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: len(word) - len(suffix)] + repl
            if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "aeiousl":
                stem = stem[:-1]  # hottest -> hott -> hot, biggest -> big
            return stem
    return word


def antonyms(x: str, y: str) -> bool:
    """x and y (lower-case words) are listed as opposites, directly or in their base forms."""
    for a, b in ((x, y), (base_form(x), base_form(y)), (_stem(x), _stem(y))):
        if b in _ANTONYM_MAP.get(a, ()):
            return True
    return False


def _polarity_clash(a: str, b: str) -> bool:
    toks_a, toks_b = phrasal(_tokens(a)), phrasal(_tokens(b))
    ta = {_stem(t) for t in toks_a} | set(toks_a)
    tb = {_stem(t) for t in toks_b} | set(toks_b)
    only_a, only_b = ta - tb, tb - ta
    for word in only_a:
        if any(antonyms(word, other) for other in only_b):
            return True
    pa, pb = _particles(a), _particles(b)
    if any((pa[v], pb[v]) in _PARTICLE_CLASH for v in pa.keys() & pb.keys()):
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
        if "-" in ent and ent.replace("-", " ") in other_text:  # "30-year" / "30 year"
            continue
        return False
    return True
