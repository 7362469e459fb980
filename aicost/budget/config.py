"""Budget and policy declarations, validated when they are made.

A typo in a budget must fail when the application configures it, with the field named, not silently disable
the guard or crash a request at 3 a.m. Everything here is plain data: the guard does the work.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, Inexact
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .. import semconv
from ..errors import ConfigurationError
from ..pricing.files import ConfigFileError, entry_line, entry_lines, read_config_file, repeated_keys
from ..pricing.money import canonical, usd_amount
from .errors import ConfigurationTypeError
from .money import MAX_LIMIT_USD, MIN_LIMIT_USD
from .windows import validate_window

# Scope keys a budget or policy can be declared on -> attribution attribute the value is read from.
# "model" and "provider" come from the call itself; "tag.<name>" from aicost.tag.<name>.
SCOPE_ATTRIBUTES = {
    "global": None,
    "team": "aicost.team",
    "feature": "aicost.feature",
    "user": "aicost.user",
    "customer": "aicost.customer",
    "model": None,
    "provider": None,
}
ACTIONS = ("raise", "warn", "callback", "downgrade")
STORE_ERROR_POLICIES = ("open", "closed")


def parse_scope(scope: object, where: str) -> str:
    """Normalise a scope key; ``tag:<name>`` and ``aicost.tag.<name>`` are accepted spellings of ``tag.<name>``.
    ``where`` names the argument in errors (``Budget.scope``, ``Policy.unless``). A tag name follows the one rule
    ``aicost.attribute()`` applies (:func:`aicost.semconv.is_tag_name`): a scope by a tag no call can carry would
    be accepted here and then silently never apply."""
    if not isinstance(scope, str):
        raise ConfigurationTypeError(f"{where} must be a str, got {type(scope).__name__}")
    if scope in SCOPE_ATTRIBUTES:
        return scope
    for prefix in ("tag.", "tag:", "aicost.tag."):
        if scope.startswith(prefix):
            name = scope[len(prefix):]
            if semconv.is_tag_name(name):
                return f"tag.{name}"
            raise ConfigurationError(f"{where}: invalid tag name {name!r} in {scope!r}; a tag name is "
                                     f"{semconv.TAG_NAME_RULE}, as aicost.attribute() accepts")
    for key, attribute in SCOPE_ATTRIBUTES.items():
        if attribute == scope:  # "aicost.team" -> "team"
            return key
    raise ConfigurationError(
        f"{where}: unknown scope key {scope!r}; expected one of "
        f"{', '.join(SCOPE_ATTRIBUTES)} or 'tag.<name>'"
    )


def scope_attribute(scope: str) -> str | None:
    """The attribution attribute holding a scope's value (None for global / model / provider)."""
    if scope.startswith("tag."):
        return "aicost." + scope
    return SCOPE_ATTRIBUTES[scope]


def _positive_int(value: object, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationTypeError(f"{owner} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ConfigurationError(f"{owner} must be > 0, got {value}")
    return value


def _model_patterns(value: object, owner: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigurationTypeError(f"{owner} must be a list of model names or glob patterns (e.g. 'gpt-4o*')")
    return tuple(value)


def _scope_values(mapping: object, owner: str) -> tuple[tuple[str, frozenset[str]], ...]:
    if mapping is None:
        return ()
    if not isinstance(mapping, Mapping):
        raise ConfigurationTypeError(f"{owner} must be a mapping of scope key -> value(s), e.g. {{'team': 'research'}}")
    out = []
    for key, values in mapping.items():
        scope = parse_scope(key, owner)
        if scope == "global":
            raise ConfigurationError(f"{owner}: 'global' has no value to match")
        if isinstance(values, str):
            values = (values,)
        if not isinstance(values, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in values):
            raise ConfigurationTypeError(f"{owner}[{key!r}] must be a str or a list of str")
        out.append((scope, frozenset(values)))
    return tuple(out)


@contextmanager
def _checking(field_name: str) -> Iterator[None]:
    """Marks a ConfigurationError raised while one field is checked with that field (``error.field``): an entry
    read from a file is then reported at the line of that field (:class:`ConfigSource`). The checks share helpers
    (``usd_amount``, ``parse_scope``, ``validate_window``) whose errors cannot know the field: it is marked here."""
    try:
        yield
    except ConfigurationError as exc:
        exc.field = field_name  # type: ignore[attr-defined]
        raise


def entry_error(error: ConfigurationError, section: str, index: int, field_name: str | None = None
                ) -> ConfigurationError:
    """``error`` marked as a problem of entry ``index`` of ``section`` (``"budgets"`` / ``"policies"``) and, when
    known, of its field: for an entry read from a file, :meth:`ConfigSource.locating` then names the file and the
    line. The guard marks what it finds wrong in a budget the same way (a callback budget with no callback)."""
    error.entry, error.field = (section, index), field_name  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True)
class Budget:
    """A spending limit in USD per calendar window (UTC) for one scope.

    ``scope="team"`` with ``value=None`` gives *every* team its own ``limit_usd``; ``value="search"`` limits only
    that team. A call without the scope's attribute (no team set) is not counted by a team budget: pair it with
    a global budget to catch unattributed spend.

    ``action`` when a call would not fit: ``raise`` (BudgetExceeded), ``warn`` (log once per window, allow),
    ``callback`` (``on_exceed(event)`` is called; the call proceeds unless it returns ``False`` or raises
    :class:`aicost.errors.CallRefused`), or ``downgrade`` (retry
    the reservation with ``downgrade_to``, raise if that does not fit either). ``thresholds`` are fractions of the
    limit (e.g. ``(0.5, 0.8, 1.0)``); ``on_threshold(event)`` fires once per window when settled spend crosses one.
    A budget without its own ``on_exceed`` / ``on_threshold`` uses the ones given to ``configure_budgets`` (a
    budget from a config file can have no other): so a ``callback`` budget's callback is checked by the guard.
    """

    limit_usd: Decimal
    window: str = "day"
    scope: str = "global"
    value: str | None = None
    action: str = "raise"
    downgrade_to: str | None = None
    thresholds: tuple[Decimal, ...] = ()
    on_threshold: Callable[[Any], None] | None = field(default=None, compare=False)
    on_exceed: Callable[[Any], None] | None = field(default=None, compare=False)
    name: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        with _checking("limit_usd"):
            limit = usd_amount(self.limit_usd, "Budget.limit_usd")
            if limit <= 0:
                raise ConfigurationError(f"Budget.limit_usd must be > 0, got {limit}")
            if limit < MIN_LIMIT_USD:
                raise ConfigurationError(
                    f"Budget.limit_usd must be at least {MIN_LIMIT_USD} (one nanodollar), got {limit}")
            if limit > MAX_LIMIT_USD:
                raise ConfigurationError(f"Budget.limit_usd must be at most {MAX_LIMIT_USD} per window, got {limit}")
            try:  # in the one form aicost writes money: "20.00" and "2E+1" are kept, returned and printed as 20
                limit = canonical(limit)
            except Inexact:
                raise ConfigurationError(
                    f"Budget.limit_usd has more digits than an amount of money can carry, got {limit}")
            set_(self, "limit_usd", limit)
        with _checking("window"):
            validate_window(self.window)
        with _checking("scope"):
            set_(self, "scope", parse_scope(self.scope, "Budget.scope"))
        with _checking("value"):
            if self.value is not None:
                if not isinstance(self.value, str) or not self.value:
                    raise ConfigurationTypeError(
                        "Budget.value must be a non-empty str (or None for 'each value separately')")
                if self.scope == "global":
                    raise ConfigurationError("Budget.value: a global budget has no value to match")
        with _checking("action"):
            if self.action not in ACTIONS:
                raise ConfigurationError(
                    f"Budget.action: unknown action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        with _checking("downgrade_to"):
            if self.action == "downgrade":
                if not isinstance(self.downgrade_to, str) or not self.downgrade_to:
                    raise ConfigurationError(
                        "Budget.downgrade_to: action='downgrade' needs the cheaper model to switch to")
            elif self.downgrade_to is not None:
                raise ConfigurationError("Budget.downgrade_to is only used with action='downgrade'")
        for attr in ("on_threshold", "on_exceed"):
            if getattr(self, attr) is not None and not callable(getattr(self, attr)):
                raise ConfigurationTypeError(f"Budget.{attr} must be callable")
        with _checking("thresholds"):
            if isinstance(self.thresholds, (str, bytes)) or not isinstance(self.thresholds, Iterable):
                raise ConfigurationTypeError(
                    "Budget.thresholds must be a list of fractions of the limit, e.g. [0.5, 0.8, 1.0]")
            fractions = sorted({usd_amount(t, "Budget.thresholds[]") for t in self.thresholds})
            if any(not (0 < t <= 10) for t in fractions):
                raise ConfigurationError(
                    f"Budget.thresholds must be fractions of the limit in (0, 10], got {fractions}")
            set_(self, "thresholds", tuple(fractions))
        with _checking("name"):
            if self.name is None:
                where = self.scope if self.value is None else f"{self.scope}={self.value}"
                set_(self, "name", f"{where}/{self.window}")
            elif not isinstance(self.name, str) or not self.name or "|" in self.name:
                raise ConfigurationError("Budget.name must be a non-empty str without '|'")

    @property
    def attribute(self) -> str | None:
        return scope_attribute(self.scope)


@dataclass(frozen=True)
class Policy:
    """A governance rule checked before every call, independent of money.

    Applies to calls in ``scope`` (``value=None``: any call that has the scope's attribute; global: every call)
    except those matching ``unless`` (e.g. ``unless={"team": "research"}``). ``allow_models`` / ``deny_models``
    are exact names or globs (``claude-opus-*``). ``max_input_tokens`` refuses longer prompts unless the caller
    opted in with :func:`aicost.budget.allow_long_context`. ``max_output_tokens`` is *written into the request*
    (the endpoint's max-tokens parameter is lowered or set), so the vendor enforces it.
    """

    scope: str = "global"
    value: str | None = None
    allow_models: tuple[str, ...] | None = None
    deny_models: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    unless: tuple[tuple[str, frozenset[str]], ...] | Mapping[str, Any] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        with _checking("scope"):
            set_(self, "scope", parse_scope(self.scope, "Policy.scope"))
        with _checking("value"):
            if self.value is not None and (not isinstance(self.value, str) or not self.value):
                raise ConfigurationTypeError("Policy.value must be a non-empty str or None")
            if self.value is not None and self.scope == "global":
                raise ConfigurationError("Policy.value: a global policy has no value to match")
        with _checking("allow_models"):
            if self.allow_models is not None:
                set_(self, "allow_models", _model_patterns(self.allow_models, "Policy.allow_models"))
        with _checking("deny_models"):
            if self.deny_models:
                set_(self, "deny_models", _model_patterns(self.deny_models, "Policy.deny_models"))
            else:
                set_(self, "deny_models", ())
        with _checking("max_input_tokens"):
            if self.max_input_tokens is not None:
                _positive_int(self.max_input_tokens, "Policy.max_input_tokens")
        with _checking("max_output_tokens"):
            if self.max_output_tokens is not None:
                _positive_int(self.max_output_tokens, "Policy.max_output_tokens")
        with _checking("unless"):
            if not isinstance(self.unless, tuple):
                set_(self, "unless", _scope_values(self.unless, "Policy.unless"))
        if (
            self.allow_models is None
            and not self.deny_models
            and self.max_input_tokens is None
            and self.max_output_tokens is None
        ):
            raise ConfigurationError("Policy: set at least one of allow_models, deny_models, max_input_tokens, max_output_tokens")
        with _checking("name"):
            if self.name is None:
                where = self.scope if self.value is None else f"{self.scope}={self.value}"
                set_(self, "name", where)
            elif not isinstance(self.name, str) or not self.name:
                raise ConfigurationError("Policy.name must be a non-empty str")

    @property
    def attribute(self) -> str | None:
        return scope_attribute(self.scope)


_BUDGET_FIELDS = {"limit_usd", "window", "scope", "value", "action", "downgrade_to", "thresholds", "name"}
_POLICY_FIELDS = {
    "scope", "value", "allow_models", "deny_models", "max_input_tokens", "max_output_tokens", "unless", "name",
}
_TOP_FIELDS = {
    "budgets", "policies", "store", "on_store_error", "store_timeout_s", "default_max_output_tokens",
    "on_unknown_price", "estimate_margin", "lease_seconds",
}


def _check_keys(item: Mapping[str, Any], allowed: set[str], section: str, index: int | None = None) -> None:
    """Refuse a field that is not in ``allowed``: of the top level (``section`` names it), or of entry ``index``."""
    unknown = sorted(set(item) - allowed, key=str)
    if unknown:
        owner = section if index is None else f"{section}[{index}]"
        error = ConfigurationError(f"{owner}: unknown field(s) {', '.join(map(repr, unknown))}; "
                                   f"allowed: {', '.join(sorted(allowed))}")
        raise error if index is None else entry_error(error, section, index, str(unknown[0]))


def _in_item(cls: Any, item: Mapping[str, Any], section: str, index: int) -> Any:
    """Build a Budget / Policy from a config entry; an error says which entry it was in (and, from a file, where)."""
    try:
        return cls(**item)
    except ConfigurationError as exc:
        raise entry_error(type(exc)(f"{section}[{index}]: {exc}"), section, index, getattr(exc, "field", None)) \
            from None


@dataclass(frozen=True)
class ConfigSource:
    """Where a budget config came from, so that a problem in one of its entries says where it is: a file's path,
    the lines of its entries (:func:`aicost.pricing.files.entry_lines`, as a price file's) and how many entries each
    section has. A mapping has no path: its problems name the entry (``budgets[2]``) and the field alone."""

    path: str | None = None
    lines: Mapping[tuple[str, int], Mapping[str, int]] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)

    def located(self, error: ConfigurationError) -> ConfigurationError:
        """``error``, if it is about an entry of this file (:func:`entry_error`), said as a price file says its
        problems: ``config: budgets.toml:7: budgets[1]: Budget.window: ... (field 'window')``; else ``error``."""
        entry = getattr(error, "entry", None)
        if self.path is None or entry is None or not 0 <= entry[1] < self.counts.get(entry[0], 0):
            return error  # a mapping's, or a budget given in code beside the file's
        field_name = error.field  # type: ignore[attr-defined]
        line = entry_line(self.lines, entry[0], entry[1], field_name)
        return type(error)(f"config: {ConfigFileError(str(error), path=self.path, line=line, field=field_name)}")

    @contextmanager
    def locating(self) -> Iterator[None]:
        """Raise a ConfigurationError about an entry of this file as :meth:`located` says it."""
        try:
            yield
        except ConfigurationError as exc:
            located = self.located(exc)
            if located is exc:
                raise
            raise located from None


_SECTIONS_OF_ENTRIES = ("budgets", "policies")


def _read_file(path: str) -> tuple[Any, ConfigSource]:
    """A budget file, read as price files are (``aicost.pricing.files``): a UTF-8 byte-order mark is allowed, and a
    key given twice is refused (JSON would keep the last of two limits silently; TOML refuses it itself). Every
    problem is a ConfigurationError naming ``config``, the file, the line when known, and the key. Returns the
    data and where its entries are (:class:`ConfigSource`), for the problems found in them later."""
    kind = "toml" if path.endswith(".toml") else "json"
    try:
        data, text = read_config_file(path, kind, what="the budget config file", parse_float=float)
        lines = entry_lines(kind, text, data, _SECTIONS_OF_ENTRIES)
        for key_path in repeated_keys(data):
            entry = re.match(r"(budgets|policies)\[(\d+)\]\.([^.\[]+)", key_path)
            line = (entry_line(lines, entry[1], int(entry[2]), entry[3]) if entry
                    else lines[("", 0)].get(re.split(r"[.\[]", key_path, maxsplit=1)[0]))
            raise ConfigFileError("given twice: which value is meant? (keep one)", path=path, line=line,
                                  field=key_path)
    except ConfigFileError as exc:
        hint = "" if path.endswith((".json", ".toml")) else " (a .toml file is read as TOML, anything else as JSON)"
        raise ConfigurationError(f"config: {exc}{hint}") from None
    counts = {section: len(data[section]) for section in _SECTIONS_OF_ENTRIES
              if isinstance(data, Mapping) and isinstance(data.get(section), list)}
    return data, ConfigSource(path, lines, counts)


def parse_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Turn a JSON / TOML file or a mapping into keyword arguments for :func:`configure_budgets`.

    Callbacks cannot live in a file: attach them in code (``Budget(..., on_threshold=fn)``) or pass
    ``on_threshold=`` to ``configure_budgets`` as a default for all budgets.
    """
    return load_config(config)[0]


def load_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> tuple[dict[str, Any], ConfigSource]:
    """:func:`parse_config`, and where the config came from: ``configure_budgets`` says with it where in a file a
    budget is that the guard finds wrong later (a callback budget with no callback, a downgrade to a model with no
    price), as a problem found here is said."""
    if isinstance(config, (str, os.PathLike)):
        data, source = _read_file(os.fspath(config))
    else:
        data, source = config, ConfigSource()
    with source.locating():
        return _parse(data), source


def _parse(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigurationTypeError(
            f"config must be a mapping or the path of a JSON / TOML file with 'budgets' and/or 'policies', "
            f"got {type(config).__name__}"
        )
    _check_keys(config, _TOP_FIELDS, "budget config")
    kwargs = {k: v for k, v in config.items() if k not in ("budgets", "policies")}
    budgets = config.get("budgets", [])
    policies = config.get("policies", [])
    if not isinstance(budgets, Sequence) or not isinstance(policies, Sequence):
        raise ConfigurationTypeError("budget config: 'budgets' and 'policies' must be lists")
    parsed_budgets = []
    for i, item in enumerate(budgets):
        if not isinstance(item, Mapping):
            raise entry_error(ConfigurationTypeError(f"budget config: budgets[{i}] must be a mapping"), "budgets", i)
        _check_keys(item, _BUDGET_FIELDS, "budgets", i)
        if "limit_usd" not in item:
            raise entry_error(ConfigurationError(f"budgets[{i}]: limit_usd is required"), "budgets", i, "limit_usd")
        parsed_budgets.append(_in_item(Budget, item, "budgets", i))
    parsed_policies = []
    for i, item in enumerate(policies):
        if not isinstance(item, Mapping):
            raise entry_error(ConfigurationTypeError(f"budget config: policies[{i}] must be a mapping"), "policies", i)
        _check_keys(item, _POLICY_FIELDS, "policies", i)
        parsed_policies.append(_in_item(Policy, item, "policies", i))
    kwargs["budgets"] = parsed_budgets
    kwargs["policies"] = parsed_policies
    return kwargs
