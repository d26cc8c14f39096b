"""A small linear text model beside the rules: words, word pairs and letter groups, weighed.

The rules say why in words a person can change; the model generalises from
labelled real messages (``bench/train_model.py`` trains it on the tuning part
of the real-text corpus and the invented corpus, with scikit-learn, and writes
``defaults/model.json``). Here it is only read and applied, in plain Python:
TF-IDF features (sublinear counts, l2-normalised) times a logistic
regression's weights, one model per question (category, urgency). Its
strongest features for the answer are its explanation.

Features are the text's words and neighbouring word pairs, and the letter
groups (3 to 5) inside each word, so Dutch compounds ("hennepkwekerij",
"omleidingsborden") share features with their parts. A word the text negates
("niet ingebroken") becomes its own feature, "niet_ingebroken"; a word in a
sentence of advice, a conditional, a quote or the past carries that scope
("advies:112"), so "bel 112" as advice and "bel nu 112" differ.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from rules.context import Context, Readings, Scope, Vocabulary, not_now, read

MODEL_FILE = Path(__file__).with_name("defaults") / "model.json"
_TOKEN = re.compile(r"[^\W_]{2,}")
LETTER_GROUPS = (3, 5)  # shortest and longest letter group
_SCOPE_MARK = {Scope.QUOTED: "quote", Scope.CONDITIONAL: "if", Scope.INSTRUCTION: "advice", Scope.PAST: "past"}


Features = dict[str, float]  # feature -> how often (the subject's count as much as the rules say)


def features(subject: str, text: str, vocabulary: Vocabulary, subject_weight: float = 2.0,
             ignored: frozenset[str] = frozenset()) -> Features:
    """The model's features of one message (the subject counts as much as for the rules); a word
    holding one of ``ignored`` (the terms an operator removed from the rules) is not seen."""
    return features_of(read(subject, text, vocabulary), subject_weight, ignored)


def features_of(readings: Readings, subject_weight: float = 2.0, ignored: frozenset[str] = frozenset()) -> Features:
    """``features`` of a message already read (``rules.context.read``)."""
    found: Features = {}
    for context, weight in ((readings.subject, subject_weight), (readings.body, 1.0)):
        for feature, count in Counter(_zone_features(context.text, context, ignored)).items():
            found[feature] = found.get(feature, 0.0) + weight * count
    return found


def with_category(counts: Features, category: str) -> Features:
    """The urgency model's features: the text's, and the category it was given."""
    return {**counts, f"category={category}": 1.0}


def _zone_features(folded: str, context: Context, ignored: frozenset[str]) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(folded):
        word = match.group()
        if ignored and any(stem in word for stem in ignored):
            continue
        negator = context.negation_before(match.start())
        tokens.append(f"{negator}_{word}" if negator else word)
        scopes = context.scopes_at(match.start())
        mark = _scope_mark(scopes)
        if mark is not None:
            tokens_scope = f"{mark}:{word}"
            tokens.append(tokens_scope)
    words = [t for t in tokens if ":" not in t]
    found = list(tokens)
    found.extend(f"{a} {b}" for a, b in pairwise(words))
    for word in words:
        if "_" not in word:
            found.extend(letter_groups(word))
    return found


@lru_cache(maxsize=64)  # a handful of scope combinations, asked for every word
def _scope_mark(scopes: frozenset[Scope]) -> str | None:
    scope = not_now(scopes)
    if scope is not None:
        return _SCOPE_MARK[scope]
    return "now" if Scope.NOW in scopes else None


@lru_cache(maxsize=65536)  # words repeat from message to message; their letter groups never change
def letter_groups(word: str) -> tuple[str, ...]:
    padded = f"<{word}>"
    shortest, longest = LETTER_GROUPS
    return tuple(f"#{padded[i:i + n]}" for n in range(shortest, longest + 1) for i in range(len(padded) - n + 1))


def explain(question: str, label: str, probability: float, evidence: list[tuple[str, float]]) -> str:
    """ "model: category burglary (87%): 'ingebroken' +0.41, 'inbraak' +0.33"."""
    shown = ", ".join(f"'{name}' {weight:+.2f}" for name, weight in evidence) or "no strong feature"
    return f"model: {question} {label} ({probability:.0%}): {shown}"


@dataclass(frozen=True)
class Vector:
    """A message's features as one model weighs them: which of its features, and their values."""

    rows: np.ndarray  # the features' rows in the model's tables
    values: np.ndarray  # sublinear TF times IDF, l2-normalised


class LinearModel:
    """One question's model: a vocabulary with IDF weights, and per feature its weight per label.

    The weights are one matrix (a row per feature, a column per label), so a
    message's scores are one product over the rows of its features.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.labels: list[str] = list(data["labels"])
        self._intercepts = np.array([float(x) for x in data["intercepts"]])
        table = data["features"]
        self.names: list[str] = list(table)
        self.rows: dict[str, int] = {name: row for row, name in enumerate(self.names)}
        self.idf = np.array([float(idf) for idf, _ in table.values()])
        # A label the file leaves out of a feature's weights weighs 0 for it.
        self.weights = np.zeros((len(self.names), len(self.labels)))
        for row, (_, weights) in enumerate(table.values()):
            for label, weight in weights.items():
                self.weights[row, int(label)] = float(weight)

    @property
    def intercepts(self) -> list[float]:
        return [float(x) for x in self._intercepts]

    def probabilities(self, counts: Features) -> dict[str, float]:
        return self.probabilities_of(self.vector(counts))

    def probabilities_of(self, vector: Vector) -> dict[str, float]:
        scores = self._intercepts + vector.values @ self.weights[vector.rows]
        exps = np.exp(scores - scores.max())
        return {label: float(e) for label, e in zip(self.labels, exps / exps.sum(), strict=True)}

    def evidence(self, vector: Vector, label: str, shown: int = 4) -> list[tuple[str, float]]:
        """The features that pushed most towards ``label``, strongest first; readable ones before letter groups."""
        pushes = vector.values * self.weights[vector.rows, self.labels.index(label)]
        positive: list[tuple[str, float]] = []
        readable: list[tuple[str, float]] = []
        for k in np.argsort(-pushes, kind="stable"):  # stable: ties keep the model file's order
            if pushes[k] <= 0 or len(readable) >= shown:
                break
            item = (self.names[vector.rows[k]], float(pushes[k]))
            positive.append(item)
            if not item[0].startswith("#"):
                readable.append(item)
        return (readable or positive)[:shown]

    def vector(self, counts: Features) -> Vector:
        """Sublinear TF times IDF, l2-normalised, over the features the model knows."""
        # Most of a text's letter groups are not in the model: intersect the keys first (in C).
        known = counts.keys() & self.rows.keys()
        rows = np.fromiter((self.rows[name] for name in known), dtype=np.intp, count=len(known))
        counted = np.fromiter((counts[name] for name in known), dtype=float, count=len(known))
        in_model_order = np.argsort(rows)  # a set's order varies from run to run; the model's does not
        rows, counted = rows[in_model_order], counted[in_model_order]
        values = (1.0 + np.log(counted)) * self.idf[rows]
        norm = float(np.sqrt(values @ values)) or 1.0
        return Vector(rows, values / norm)

    def feature_weights(self) -> dict[str, tuple[float, list[float]]]:
        """Every feature with its IDF and its weight per label (to write the model file again)."""
        return {name: (float(self.idf[row]), [float(w) for w in self.weights[row]]) for name, row in self.rows.items()}


@dataclass(frozen=True)
class Weighed:
    label: str
    probabilities: dict[str, float]
    vector: Vector  # what the model weighed (for ``LinearModel.evidence``)
    unsure: bool = False  # the model named a category where the rules found none, but not surely enough
    point_weight: float = 0.0  # what one rule point added (the category's ``rule_point_weight``)


def rule_point_weight(blend: dict[str, float], words: int) -> float:
    """The log-probability one rule point adds for a text of ``words`` words: ``blend["category_words"]``
    divided by the length, at most 1. Rule points grow with a text's length (every mention counts) while the
    model's features are length-normalised, so in a two-line note the rules' words decide and in a long news
    text the model's reading of the whole does."""
    return min(1.0, blend.get("category_words", 0.0) / max(words, 1))


def weigh_category(model: LinearModel, counts: Features, points: dict[str, float], *, ruled: str, words: int,
                   blend: dict[str, float], operator: dict[str, float] | None = None,
                   operator_point: float = 1.0) -> Weighed:
    """The category: the model's log-probability plus ``rule_point_weight`` per rule point (capped),
    plus ``operator_point`` per point of the operator's own terms; where the rules found nothing, the
    model's answer only when it is at least ``blend["category_sure"]``. One home for rules.engine and
    bench/train_model.py."""
    vector = model.vector(counts)
    probabilities = model.probabilities_of(vector)
    per_point, cap = rule_point_weight(blend, words), blend.get("points_cap", 20.0)
    operator = operator or {}

    def combined(label: str) -> float:
        rule_points = min(max(points.get(label, 0.0), 0.0), cap)
        return (math.log(max(probabilities.get(label, 0.0), 1e-9)) + per_point * rule_points
                + operator_point * operator.get(label, 0.0))

    best = max(model.labels, key=combined)
    if ruled == "other" and best != ruled and not operator and probabilities[best] < blend.get("category_sure", 0.0):
        return Weighed("other", probabilities, vector, unsure=True, point_weight=per_point)
    return Weighed(best, probabilities, vector, point_weight=per_point)


def weigh_urgency(model: LinearModel, counts: Features, ruled: str, bonus: float) -> Weighed:
    """The urgency: the model's log-probability, ``bonus`` more for the rules' reading."""
    vector = model.vector(counts)
    probabilities = model.probabilities_of(vector)
    best = max(model.labels, key=lambda label: math.log(max(probabilities.get(label, 0.0), 1e-9))
               + (bonus if label == ruled else 0.0))
    return Weighed(best, probabilities, vector)


@dataclass(frozen=True)
class TextModel:
    category: LinearModel
    urgency: LinearModel
    # How much the rules count beside the model's log-probabilities (see rules.engine):
    # "category_words" for a rule point (``rule_point_weight``), "urgency_rules" for the rules' urgency.
    blend: dict[str, float]

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> TextModel:
        """Read once per file version: every rule set loaded afterwards shares it (it is only read)."""
        return _load(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load(path: Path, _version: int) -> TextModel:
    data = json.loads(path.read_text(encoding="utf-8"))
    return TextModel(LinearModel(data["category"]), LinearModel(data["urgency"]), dict(data.get("blend", {})))
