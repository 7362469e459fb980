"""Reading a TOML or JSON file of configuration the one strict way, for every file a person writes money into.

A price file and a budget file are both money: a key given twice (JSON keeps the last value silently) must be
refused, not guessed at, and a byte-order mark some Windows editors write must not make a good file unreadable.
One reader does this for both (``pricing.overrides.load_file`` and ``budget.config.parse_config``), so a rule
learnt by one (nested duplicates, a BOM) holds for the other. Errors name the file, the line when it is known,
and the field.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..errors import ConfigurationError


class ConfigFileError(ConfigurationError):
    """A file of configuration that aicost refuses: says where (file, line) and which field. A
    ``ConfigurationError`` (so a ``ValueError``), like every other configure-time refusal."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None):
        where = path or "<overrides>"
        if line is not None:
            where += f":{line}"
        detail = f" (field {field!r})" if field else ""
        super().__init__(f"{where}: {message}{detail}")
        self.path, self.line, self.field = path, line, field
        self.problems: list[ConfigFileError] = [self]

    @classmethod
    def combine(cls, problems: "list[Any]") -> "Any":
        """One error for every problem found (a file is checked whole, so a person fixes all mistakes at once);
        ``problems`` lists them, each with its own line and field."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        error = cls(f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems), path=first.path)
        error.line, error.field, error.problems = first.line, first.field, list(problems)
        return error


def read_config_file(path: str | os.PathLike[str], kind: str, *, what: str,
                     error: Callable[..., ConfigFileError] = ConfigFileError,
                     parse_float: Callable[[str], Any] = Decimal) -> tuple[Any, str]:
    """The parsed content of the file at ``path`` and its text. ``kind``: ``"json"`` or ``"toml"``; ``what`` names
    the file in a read error ("price file"); ``error``: the ConfigFileError class raised. A UTF-8 byte-order mark is
    allowed. Every JSON object is a dict that remembers the keys it gave twice (:func:`repeated_keys` lists them;
    TOML refuses them itself); JSON numbers with a fraction are read by ``parse_float``."""
    label = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=label) from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (some Windows editors write one) is allowed
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be "
                    "decoded; save the file as UTF-8", path=label, line=line) from None
    if kind == "toml":
        return _parse_toml(text, label, error), text
    try:
        return json.loads(text, parse_float=parse_float, object_pairs_hook=_json_object), text
    except json.JSONDecodeError as exc:
        raise error(f"invalid JSON: {exc.msg}", path=label, line=exc.lineno) from None


def _parse_toml(text: str, label: str, error: Callable[..., ConfigFileError]) -> Any:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise error(
                "reading TOML on Python 3.10 needs tomli (an aicost dependency there; reinstall aicost) or use JSON",
                path=label,
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise error(f"invalid TOML: {exc}", path=label, line=int(match.group(1)) if match else None) from None


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object, with the keys it gave twice (``json`` keeps the last value silently; TOML refuses)."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = _Object(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        result.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return result


def duplicates_of(value: Any) -> tuple[str, ...]:
    """The keys one JSON object (as :func:`read_config_file` reads it) gave twice; () for anything else."""
    return getattr(value, "duplicates", ())


def repeated_keys(value: Any, path: str = "") -> Iterator[str]:
    """The path of each key a JSON object gave twice, in ``value`` or in any object inside it (``input``,
    ``long_context[0].input``, ``support-llama.gpu_hour``, ``budgets[0].limit_usd``)."""
    if isinstance(value, Mapping):
        for key in duplicates_of(value):
            yield f"{path}.{key}" if path else key
        for key, inner in value.items():
            yield from repeated_keys(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from repeated_keys(inner, f"{path}[{index}]")


# --- lines: enough to point a person at the right line -------------------------------------------------------

_TOML_ARRAY_HEADER = re.compile(r"^\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_TOML_TABLE_HEADER = re.compile(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]")
_TOML_KEY = re.compile(r"""^(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")


def toml_lines(text: str) -> dict[tuple[str, int], dict[str, int]]:
    """(section, index) -> {field: line, "": header line}; ``("", 0)`` holds the top level's keys and sections,
    ``(table, -1)`` a plain ``[table]``."""
    out: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
    counts: dict[str, int] = {}
    current: tuple[str, int] = ("", 0)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = _TOML_ARRAY_HEADER.match(line)
        if header:
            section = header.group(1)
            index = counts.get(section, 0)
            counts[section] = index + 1
            current = (section, index)
            out[current] = {"": number}
            out[("", 0)].setdefault(section, number)
            continue
        table = _TOML_TABLE_HEADER.match(line)
        if table:
            current = (table.group(1), -1)
            out.setdefault(("", 0), {}).setdefault(table.group(1), number)
            out[current] = {"": number}
            continue
        key = _TOML_KEY.match(line)
        if key:
            name = key.group(1) or key.group(2) or key.group(3)
            out.setdefault(current, {"": number}).setdefault(name, number)
    return out


def entry_lines(kind: str, text: str, data: Any, sections: Iterable[str]) -> dict[tuple[str, int], dict[str, int]]:
    """The lines of a file :func:`read_config_file` read (``kind`` ``"json"`` or ``"toml"``): its top-level keys, and
    the entries of its arrays of tables ``sections`` with their fields. What every file of configuration says its
    problems' lines with (:func:`entry_line`), so a price file and a budget file point at lines the same way."""
    return json_lines(text, data, sections) if kind == "json" else toml_lines(text)


def field_line(entry: Mapping[str, int] | None, field: str | None = None) -> int | None:
    """The line of ``field`` in one entry's lines (``entry_lines(...)[(section, index)]``): the entry's own first line
    when the field is not written in it (missing, or left to its default) or the problem is the entry's as a whole
    (``field`` None)."""
    entry = entry or {}
    return entry.get(field or "", entry.get(""))


def entry_line(lines: Mapping[tuple[str, int], Mapping[str, int]], section: str, index: int,
               field: str | None = None) -> int | None:
    """The line of ``field`` in entry ``index`` of the array ``section`` (:func:`field_line`); the section's own line
    when its entries' lines are not known (a TOML array written inline, ``budgets = [{...}]``)."""
    entry = lines.get((section, index))
    if entry is None:
        return lines.get(("", 0), {}).get(section)
    return field_line(entry, field)


def json_lines(text: str, data: Any, sections: Iterable[str]) -> dict[tuple[str, int], dict[str, int]]:
    """As :func:`toml_lines`, for JSON: the line of each top-level key and, for the arrays of objects under
    ``sections``, of each entry and its fields, found by re-decoding the arrays element by element."""
    out: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
    if not isinstance(data, Mapping):
        return out
    sections = frozenset(sections)
    decoder = json.JSONDecoder(parse_float=Decimal)

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    for key in data:
        found = re.search(r'"%s"\s*:\s*' % re.escape(str(key)), text)
        if not found:
            continue
        out[("", 0)][str(key)] = line_at(found.start())
        pos = found.end()
        if key not in sections or pos >= len(text) or text[pos] != "[":
            continue
        pos += 1
        index = 0
        while pos < len(text):
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text) or text[pos] == "]":
                break
            try:
                _, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            fields = {"": line_at(pos)}
            for field_match in re.finditer(r'"([^"\\]+)"\s*:', text[pos:end]):
                fields.setdefault(field_match.group(1), line_at(pos + field_match.start()))
            out[(str(key), index)] = fields
            index += 1
            pos = end
    return out
