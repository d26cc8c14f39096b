"""Rule files (TOML) -> a validated RuleSet.

The shipped defaults live in ``rules/defaults/*.toml``; an operator's file
(``[rules] path``) is merged on top: lists extend the shipped ones, a
``remove = [...]`` list takes shipped terms out, scalars replace. Every
problem is a ``RuleFileError`` naming the file, the rule and the problem.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mail.text import fold
from rules.context import Vocabulary
from rules.model import MODEL_FILE, TextModel
from rules.vocabulary import CATEGORIES

DEFAULTS = Path(__file__).with_name("defaults")
WEIGHTS = {"strong": 3.0, "terms": 2.0, "behaviour": 2.0, "weak": 1.0}
URGENCIES = ("urgent", "normal", "low")
COMMAND_LANGUAGES = {"nl": "nl", "en": "en", "any": None}
MEMBER_COMMANDS = ("subscribe", "unsubscribe", "help", "urgent_only", "categories", "digest", "everything")

# Every table and key a rule file may hold: a misspelt one is refused when the file is loaded.
# "*" stands for any name (a category id, a street suffix); a value None for a key with a scalar or list.
_LIST, _TABLE = "list", "table"
SCHEMA: dict[str, Any] = {
    "threshold": None, "priority": _LIST, "urgent_threshold": None, "city_wide": _LIST, "city_names": _LIST,
    "ambiguous": _LIST, "disclaimer_starts": _LIST, "neutral": _LIST, "purpose": _LIST,
    "category": {"*": {"label_nl": None, "label_en": None, "names_nl": _LIST, "names_en": _LIST,
                       "strong": _LIST, "terms": _LIST, "behaviour": _LIST, "weak": _LIST, "against": _LIST,
                       "not_in": _LIST, "min_points": None}},
    "category_default": {"*": None},
    "cues": {"urgent": _LIST, "strong": _LIST, "calm": _LIST, "outcome": _LIST, "low": _LIST},
    "member_commands": {"*": {"nl": _LIST, "en": _LIST, "any": _LIST, "alone": None}},
    "resolved": {"words": _LIST},
    "auto_reply": {"subjects": _LIST},
    "street_abbreviations": {"*": _LIST},
    "safeguards": {"appearance": {"nl": _LIST, "en": _LIST}, "appearance_advice": {"nl": None, "en": None},
                   "services": {"prefixes": _LIST}},
    "context": {"negators": _LIST, "negation_window": None, "negation_bridges": _LIST, "now": _LIST, "past": _LIST,
                "conditional_starts": _LIST, "instruction_starts": _LIST, "instruction_phrases": _LIST,
                "quote_introducers": _LIST},
    "model": {"enabled": None},
}


class RuleFileError(Exception):
    """A broken rule file: ``str()`` is ``"<file>: <rule>: <problem>"``."""

    def __init__(self, file: str | Path, rule: str, problem: str) -> None:
        self.file, self.rule, self.problem = str(file), rule, problem
        super().__init__(f"{self.file}: {rule}: {problem}")


@dataclass(frozen=True)
class Term:
    """One word or phrase to look for, as written in a rule file."""

    text: str  # folded, without the "=" marker
    whole_word: bool
    weight: float
    source: str  # the rule it came from, e.g. "category.burglary.strong"


@dataclass(frozen=True)
class CommandWords:
    words: dict[str | None, list[str]]  # language (None: both) -> folded words
    alone: bool  # the whole line must be the command


@dataclass
class Category:
    id: str
    label_nl: str
    label_en: str
    # What people write for it (a member's CATEGORIEEN, a coordinator's CATEGORIE); the first is shown.
    names_nl: list[str] = field(default_factory=list)
    names_en: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    against: list[Term] = field(default_factory=list)
    not_in: list[str] = field(default_factory=list)
    min_points: float | None = None  # None: the rule set's threshold


@dataclass
class RuleSet:
    categories: dict[str, Category]
    threshold: float
    priority: list[str]
    urgency_defaults: dict[str, str]
    urgent_threshold: float
    # Police routine that names no kind of incident ("getuigen gezocht", "de verdachte").
    neutral: list[Term]
    # Words of purpose (prevention, information, invitation, looking back) that make a text information.
    purpose: list[Term]
    urgent_cues: list[Term]
    calm_cues: list[Term]
    # How it ended ("gevonden", "onder controle"): an urgent category is urgent no more.
    outcome_cues: list[Term]
    low_cues: list[Term]
    member_commands: dict[str, CommandWords]
    resolved_words: list[str]
    auto_reply_subjects: list[str]
    city_wide: list[str]
    city_names: list[str]
    ambiguous_places: set[str]
    street_abbreviations: dict[str, list[str]]
    disclaimer_starts: list[str]
    # rules.context's words: scopes of sentences, negation.
    context: Vocabulary
    # The trained text model weighed beside the rules (rules.model); None: the rules alone.
    model: TextModel | None = None
    # What the operator's rule file changed: (category, term) it added, and terms it removed. The
    # engine lets the operator's words outweigh the model and hides removed words from it.
    operator_terms: frozenset[tuple[str, str]] = frozenset()
    removed_words: frozenset[str] = frozenset()
    # rules.safeguards' patterns and advice, as the rule files give them.
    safeguards: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def label(self, category: str | None, language: str = "nl") -> str:
        cat = self.categories.get(category or "other") or self.categories["other"]
        return cat.label_en if language == "en" else cat.label_nl

    def name(self, category: str, language: str = "nl") -> str:
        """The word a person writes for ``category`` ("inbraak", "burglary")."""
        cat = self.categories[category]
        names = cat.names_en if language == "en" else cat.names_nl
        return names[0] if names else category

    def category_named(self, written: str) -> str | None:
        """The category a person means by a name, Dutch or English ("Inbraken", "missing person")."""
        key = " ".join(fold(written).replace("_", " ").split()).strip(" .!?:-")
        for cat in self.categories.values():
            if key in (fold(name) for name in (*cat.names_nl, *cat.names_en, cat.id.replace("_", " "))):
                return cat.id
        return None


def load_rules(extra_path: Path | str | None = None) -> RuleSet:
    data: dict[str, Any] = {}
    files = sorted(DEFAULTS.glob("*.toml"))
    for path in files:
        new = _read(path)
        _check_schema(new, SCHEMA, path)
        _merge_default(data, new, path)
    shipped = _category_words(data)
    if extra_path is not None:
        extra = Path(extra_path)
        new = _read(extra)
        _check_schema(new, SCHEMA, extra, removals=True)
        _merge_extra(data, new, extra)
        files.append(extra)
    where = files[-1] if extra_path is not None else DEFAULTS
    ruleset = _build(data, where)
    ruleset.files = files
    changed = _category_words(data)
    ruleset.operator_terms = frozenset(changed - shipped)
    ruleset.removed_words = frozenset(text for _category, text in shipped - changed)
    return ruleset


def _category_words(data: dict[str, Any]) -> set[tuple[str, str]]:
    """(category, folded term) of every category term: to tell the operator's changes from the shipped rules."""
    return {(cid, _fold_term(word)) for cid, table in data.get("category", {}).items() if isinstance(table, dict)
            for key in (*WEIGHTS, "against") for word in table.get(key, []) if isinstance(word, str)}


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise RuleFileError(path, "(file)", f"cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise RuleFileError(path, "(syntax)", str(error)) from None


def _check_schema(table: dict[str, Any], schema: dict[str, Any], path: Path, prefix: str = "",
                  removals: bool = False) -> None:
    """Refuse tables and keys the rules do not know (``[member_comands]``), naming file and key."""
    for key, value in table.items():
        rule = f"{prefix}{key}"
        if removals and key == "remove":
            continue
        expected = schema[key] if key in schema else schema.get("*", "unknown")
        if expected == "unknown":
            known = ", ".join(sorted(k for k in schema if k != "*"))
            raise RuleFileError(path, rule, f"unknown key (known here: {known})")
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise RuleFileError(path, rule, "must be a table")
            _check_schema(value, expected, path, rule + ".", removals)
        elif isinstance(value, dict):
            raise RuleFileError(path, rule, "must not be a table")
        elif expected == _LIST and not isinstance(value, list):
            raise RuleFileError(path, rule, "must be a list of non-empty strings")


def _merge_default(data: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    for key, value in new.items():
        if key in data and not (isinstance(data[key], dict) and isinstance(value, dict)):
            raise RuleFileError(path, key, "defined in two default rule files")
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge_default(data[key], value, path)
        else:
            data[key] = value


def _merge_extra(data: dict[str, Any], new: dict[str, Any], path: Path, prefix: str = "") -> None:
    """Lists extend, ``remove`` takes terms out of every list of the table, scalars replace."""
    removals = new.get("remove", [])
    if removals:
        _check_strings(removals, path, f"{prefix}remove")
        folded = {_fold_term(r) for r in removals}
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = [v for v in value if not (isinstance(v, str) and _fold_term(v) in folded)]
    for key, value in new.items():
        if key == "remove":
            continue
        rule = f"{prefix}{key}"
        current = data.get(key)
        if isinstance(value, dict):
            if current is not None and not isinstance(current, dict):
                raise RuleFileError(path, rule, "must not be a table")
            target = data.setdefault(key, {})
            _merge_extra(target, value, path, rule + ".")
        elif isinstance(value, list) and isinstance(current, list):
            data[key] = [*current, *value]
        else:
            data[key] = value


def _fold_term(value: str) -> str:
    return fold(value.strip()).lstrip("=")


def _build(data: dict[str, Any], where: Path) -> RuleSet:
    categories = _categories(data.get("category", {}), where)
    priority = _strings(data, "priority", where)
    for name in priority:
        if name not in CATEGORIES:
            raise RuleFileError(where, "priority", f"unknown category {name!r}")
    cues = data.get("cues", {})
    return RuleSet(
        categories=categories,
        threshold=_number(data, "threshold", where),
        priority=priority,
        urgency_defaults=_urgency_defaults(data.get("category_default", {}), where),
        urgent_threshold=_number(data, "urgent_threshold", where),
        neutral=_terms(_strings(data, "neutral", where), 0.0, "neutral", where),
        purpose=_terms(_strings(data, "purpose", where), 0.0, "purpose", where),
        urgent_cues=_urgent_terms(cues, where),
        calm_cues=_terms(_strings(cues, "calm", where, "cues.calm"), 1.0, "cues.calm", where),
        outcome_cues=_terms(_strings(cues, "outcome", where, "cues.outcome"), 1.0, "cues.outcome", where),
        low_cues=_terms(_strings(cues, "low", where, "cues.low"), 1.0, "cues.low", where),
        member_commands=_member_commands(data.get("member_commands", {}), where),
        resolved_words=[_fold_term(w) for w in _strings(data.get("resolved", {}), "words", where, "resolved.words")],
        auto_reply_subjects=[
            _fold_term(w) for w in _strings(data.get("auto_reply", {}), "subjects", where, "auto_reply.subjects")
        ],
        city_wide=[_fold_term(w) for w in _strings(data, "city_wide", where)],
        city_names=[_fold_term(w) for w in _strings(data, "city_names", where)],
        ambiguous_places={_fold_term(w) for w in _strings(data, "ambiguous", where)},
        street_abbreviations={
            suffix: _strings(data["street_abbreviations"], suffix, where, f"street_abbreviations.{suffix}")
            for suffix in data.get("street_abbreviations", {})
        },
        disclaimer_starts=_strings(data, "disclaimer_starts", where),
        context=_context(data.get("context", {}), where),
        model=_model(data.get("model", {}), where),
        safeguards=data.get("safeguards", {}),
    )


def _model(table: dict[str, Any], where: Path) -> TextModel | None:
    """The trained text model beside the rules, unless a rule file says ``[model] enabled = false``."""
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleFileError(where, "model.enabled", f"must be true or false, got {enabled!r}")
    if not enabled:
        return None
    try:
        return TextModel.load(MODEL_FILE)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RuleFileError(MODEL_FILE, "(model)", f"cannot read the trained model: {error}") from None


def _context(table: dict[str, Any], where: Path) -> Vocabulary:
    def words(key: str) -> list[str]:
        return [" ".join(fold(w).split()) for w in _strings(table, key, where, f"context.{key}")]

    past = words("past")
    window = table.get("negation_window", 3)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 10:
        raise RuleFileError(where, "context.negation_window", f"must be a whole number from 0 to 10, got {window!r}")
    return Vocabulary(
        negators=frozenset(words("negators")),
        negation_window=window,
        negation_bridges=frozenset(words("negation_bridges")),
        now=tuple(words("now")),
        past_words=frozenset(w for w in past if " " not in w),
        past_phrases=tuple(w for w in past if " " in w),
        conditional_starts=tuple(words("conditional_starts")),
        instruction_starts=tuple(words("instruction_starts")),
        instruction_phrases=tuple(words("instruction_phrases")),
        quote_introducers=tuple(words("quote_introducers")),
    )


def _categories(tables: dict[str, Any], where: Path) -> dict[str, Category]:
    result: dict[str, Category] = {}
    for cid, table in tables.items():
        rule = f"category.{cid}"
        if cid not in CATEGORIES:
            raise RuleFileError(where, rule, f"unknown category (one of {', '.join(CATEGORIES)})")
        if not isinstance(table, dict):
            raise RuleFileError(where, rule, "must be a table")
        category = Category(
            cid, str(table.get("label_nl", cid)), str(table.get("label_en", cid)),
            names_nl=_strings(table, "names_nl", where, f"{rule}.names_nl"),
            names_en=_strings(table, "names_en", where, f"{rule}.names_en"),
        )
        for key, weight in WEIGHTS.items():
            category.terms += _terms(_strings(table, key, where, f"{rule}.{key}"), weight, f"{rule}.{key}", where)
        category.against = _terms(_strings(table, "against", where, f"{rule}.against"), 3.0, f"{rule}.against", where)
        category.not_in = [_fold_term(w) for w in _strings(table, "not_in", where, f"{rule}.not_in")]
        if "min_points" in table:
            category.min_points = _number(table, "min_points", where, f"{rule}.min_points")
        result[cid] = category
    for cid in CATEGORIES:
        result.setdefault(cid, Category(cid, cid, cid))
    return result


def _member_commands(tables: dict[str, Any], where: Path) -> dict[str, CommandWords]:
    commands: dict[str, CommandWords] = {}
    for name, table in tables.items():
        rule = f"member_commands.{name}"
        if name not in MEMBER_COMMANDS:
            raise RuleFileError(where, rule, f"unknown command (one of {', '.join(MEMBER_COMMANDS)})")
        words = {language: [_fold_term(w) for w in _strings(table, key, where, f"{rule}.{key}")]
                 for key, language in COMMAND_LANGUAGES.items()}
        alone = table.get("alone", False)
        if not isinstance(alone, bool):
            raise RuleFileError(where, f"{rule}.alone", "must be true or false")
        commands[name] = CommandWords(words, alone)
    return commands


def _urgent_terms(cues: dict[str, Any], where: Path) -> list[Term]:
    strong = {_fold_term(w) for w in _strings(cues, "strong", where, "cues.strong")}
    words = _strings(cues, "urgent", where, "cues.urgent")
    terms = _terms(words, 1.0, "cues.urgent", where)
    return [Term(t.text, t.whole_word, 3.0 if t.text in strong else 1.0, t.source) for t in terms] + [
        t for t in _terms(sorted(strong - {x.text for x in terms}), 3.0, "cues.strong", where)
    ]


def _urgency_defaults(table: dict[str, Any], where: Path) -> dict[str, str]:
    for cid, value in table.items():
        if cid not in CATEGORIES:
            raise RuleFileError(where, f"category_default.{cid}", "unknown category")
        if value not in URGENCIES:
            raise RuleFileError(where, f"category_default.{cid}", f"must be one of {', '.join(URGENCIES)}")
    return dict(table)


def _terms(words: list[str], weight: float, rule: str, where: Path) -> list[Term]:
    terms = []
    for word in words:
        text = fold(word.strip())
        whole = text.startswith("=")
        text = " ".join(text.lstrip("=").split())
        if not text:
            raise RuleFileError(where, rule, f"empty term {word!r}")
        terms.append(Term(text, whole, weight, rule))
    return terms


def _strings(table: dict[str, Any], key: str, where: Path, rule: str | None = None) -> list[str]:
    value = table.get(key, [])
    _check_strings(value, where, rule or key)
    return list(value)


def _check_strings(value: Any, where: Path, rule: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RuleFileError(where, rule, "must be a list of non-empty strings")


def _number(data: dict[str, Any], key: str, where: Path, rule: str | None = None) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise RuleFileError(where, rule or key, f"must be a positive number, got {value!r}")
    return float(value)
