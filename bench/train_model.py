"""Train the text model weighed beside the rules and write ``rules/defaults/model.json``.

    .venv/bin/python bench/train_model.py [--check] [--folds 5]

Trains on the real-text corpus's tuning part (``tests/corpus/real``, part
``tune``) and the invented corpus (``tests/corpus``); the held-out part is never
read here. Two multinomial logistic regressions over ``rules.model.features``
(words, negated words, scope-marked words, word pairs, letter groups), with
scikit-learn (a test dependency: binrelay itself only reads the weights):

1. fit on every feature seen in two messages or more, keep the ``KEEP``
   strongest, fit again on those alone (so the shipped file is small and the
   l2 norm at classification time is the one trained with);
2. choose how much the rules' points count beside the model by
   cross-validation on the tuning part (``--folds``): the weight with the best
   mean accuracy over the folds, each fold's model trained without it. A rule
   point weighs less in a longer text (``rules.model.rule_point_weight``):
   what is chosen is how many words make one point weigh 1.

``--check`` prints the cross-validated figures and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from classify_eval import INVENTED, REAL, read_labels
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from mail.message import parse_mail
from mail.quotes import own_text
from mail.text import clean_subject, is_reply_subject
from relay.config import load_config
from rules import load_rules
from rules.context import Readings, word_count
from rules.engine import Classifier
from rules.model import (
    MODEL_FILE,
    Features,
    LinearModel,
    features_of,
    weigh_category,
    weigh_urgency,
    with_category,
)

# Per question: the regularisation (C) and how many features are kept.
SETTINGS = {"category": (30.0, 20000), "urgency": (30.0, 2000)}
MIN_MESSAGES = 2  # a feature seen in fewer messages is noise
# How many words of text make a rule point weigh 1 log-probability (rules.model.rule_point_weight).
CATEGORY_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
URGENCY_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # log-probability for the rules' urgency
SURE = (0.0, 0.3, 0.4, 0.5, 0.6)  # how sure the model must be to name a category where the rules found none
POINTS_CAP = 20.0
# Cross-validated counts closer than this share of the examples (two in a thousand) are a tie: a few
# messages more or fewer is what another shuffle of the folds moves.
TIE = 0.002
WEIGHT_DECIMALS = 4


@dataclass
class Example:
    file: str
    counts: Features
    category: str
    urgency: str
    points: dict[str, float]  # the rules' points per category
    ruled: str  # the rules' category
    readings: Readings
    subject_factor: float
    words: int  # the subject's and body's words (rules.context.word_count)


def rules_only(config_path: Path) -> Classifier:
    """The corpus town's classifier without the model (which need not exist yet)."""
    config = load_config(config_path)
    with tempfile.TemporaryDirectory() as folder:
        without_model = Path(folder) / "rules.toml"
        without_model.write_text("[model]\nenabled = false\n", encoding="utf-8")
        return Classifier(config.directory(), load_rules(without_model))


def examples(corpus: Path, part: str | None, classifier: Classifier) -> list[Example]:
    found = []
    for label in read_labels(corpus / "labels.jsonl"):
        if label["kind"] != "report" or (part is not None and label.get("part") != part):
            continue
        mail = parse_mail((corpus / "eml" / label["file"]).read_bytes())
        subject = clean_subject(mail.subject)
        text = own_text(mail.text, mail.subject, classifier.rules.disclaimer_starts)
        factor = 1.0 if is_reply_subject(mail.subject) else 2.0
        readings = classifier.read(subject, text)
        points = classifier.category_points(readings, factor, []).points
        ruled, _urgency = classifier.judge(subject, text, factor, [])
        found.append(Example(label["file"], features_of(readings, factor), label["category"], label["urgency"],
                             points, ruled, readings, factor, word_count(readings)))
    return found


# ---------------------------------------------------------------- fitting


def fit(rows: Sequence[Features], targets: Sequence[str], question: str) -> LinearModel:
    regularisation, keep = SETTINGS[question]
    seen: dict[str, int] = {}
    for row in rows:
        for name in row:
            seen[name] = seen.get(name, 0) + 1
    frequent = {name for name, count in seen.items() if count >= MIN_MESSAGES}
    vectoriser, tfidf, model = _fit(rows, targets, frequent, regularisation)
    strength = np.abs(model.coef_).max(axis=0)
    names = vectoriser.get_feature_names_out()
    strongest = {str(names[i]) for i in np.argsort(-strength)[:keep]}
    vectoriser, tfidf, model = _fit(rows, targets, strongest, regularisation)
    return _as_linear_model(vectoriser, tfidf, model)


def _fit(rows: Sequence[Features], targets: Sequence[str], vocabulary: set[str],
         regularisation: float) -> tuple[DictVectorizer, TfidfTransformer, LogisticRegression]:
    vectoriser = DictVectorizer()
    tfidf = TfidfTransformer(sublinear_tf=True)
    kept = [{name: value for name, value in row.items() if name in vocabulary} for row in rows]
    matrix = tfidf.fit_transform(vectoriser.fit_transform(kept))
    model = LogisticRegression(C=regularisation, max_iter=5000).fit(matrix, list(targets))
    return vectoriser, tfidf, model


def _as_linear_model(vectoriser: DictVectorizer, tfidf: TfidfTransformer, model: LogisticRegression) -> LinearModel:
    return LinearModel(_export(vectoriser, tfidf, model))


def _export(vectoriser: DictVectorizer, tfidf: TfidfTransformer, model: LogisticRegression) -> dict[str, Any]:
    """The JSON form rules.model reads: labels, intercepts, per feature its IDF and non-zero weights."""
    labels = [str(label) for label in model.classes_]
    coefficients = model.coef_
    intercepts = model.intercept_
    if len(labels) == 2:  # a binary model has one row: the second label's
        coefficients = np.vstack([-coefficients[0] / 2, coefficients[0] / 2])
        intercepts = np.array([-intercepts[0] / 2, intercepts[0] / 2])
    table: dict[str, Any] = {}
    for column, name in enumerate(vectoriser.get_feature_names_out()):
        weights = {str(index): round(float(coefficients[index, column]), WEIGHT_DECIMALS)
                   for index in range(len(labels)) if round(float(coefficients[index, column]), WEIGHT_DECIMALS)}
        if weights:
            table[str(name)] = [round(float(tfidf.idf_[column]), WEIGHT_DECIMALS), weights]
    return {"labels": labels, "intercepts": [round(float(x), WEIGHT_DECIMALS) for x in intercepts], "features": table}


def export(model: LinearModel) -> dict[str, Any]:
    return {"labels": model.labels, "intercepts": model.intercepts,
            "features": {name: [idf, {str(k): w for k, w in enumerate(weights) if w}]
                         for name, (idf, weights) in model.feature_weights().items()}}


# ---------------------------------------------------------------- the weight of the rules


def blended_category(model: LinearModel, example: Example, words: float, sure: float = 0.0) -> str:
    """As rules.engine weighs them (rules.model.weigh_category), with these weights."""
    blend = {"category_words": words, "category_sure": sure, "points_cap": POINTS_CAP}
    return weigh_category(model, example.counts, example.points, ruled=example.ruled, words=example.words,
                          blend=blend).label


def blended_urgency(model: LinearModel, counts: Features, ruled: str, bonus: float, default: str | None) -> str:
    """As rules.engine weighs them; a category that is low by definition (information) stays low."""
    return ruled if default == "low" else weigh_urgency(model, counts, ruled, bonus).label


def cross_validate(tune: list[Example], invented: list[Example], classifier: Classifier,
                   folds: int) -> dict[str, dict[str, dict[float, float]]]:
    """Accuracy per question, corpus and rule weight, each message judged by models trained without it.

    The folds run over both corpora: the real texts are long news-like messages, the invented ones
    short residents' notes, and the weights must suit both. Urgency is measured after the category
    found with the chosen category weight, as it runs.
    """
    everything = tune + invented
    corpus_of = ["real"] * len(tune) + ["invented"] * len(invented)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    held: list[tuple[LinearModel, LinearModel, list[int]]] = []
    for train_index, test_index in splitter.split(everything, [e.category for e in everything]):
        train = [everything[i] for i in train_index]
        category_model = fit([e.counts for e in train], [e.category for e in train], "category")
        urgency_model = fit([with_category(e.counts, e.category) for e in train], [e.urgency for e in train],
                            "urgency")
        held.append((category_model, urgency_model, list(test_index)))
    category_right = {corpus: dict.fromkeys(CATEGORY_WEIGHTS, 0) for corpus in ("real", "invented")}
    for model, _urgency_model, tests in held:
        for i in tests:
            for weight in CATEGORY_WEIGHTS:
                category_right[corpus_of[i]][weight] += blended_category(model, everything[i], weight) == \
                    everything[i].category
    chosen = best({w: category_right["real"][w] + category_right["invented"][w] for w in CATEGORY_WEIGHTS},
                  len(everything))
    sure_right = {corpus: dict.fromkeys(SURE, 0) for corpus in ("real", "invented")}
    for model, _urgency_model, tests in held:
        for i in tests:
            for sure in SURE:
                sure_right[corpus_of[i]][sure] += blended_category(model, everything[i], chosen, sure) == \
                    everything[i].category
    sure_chosen = best({s: sure_right["real"][s] + sure_right["invented"][s] for s in SURE}, len(everything))
    urgency_right = {corpus: dict.fromkeys(URGENCY_WEIGHTS, 0) for corpus in ("real", "invented")}
    for category_model, urgency_model, tests in held:
        for i in tests:
            example = everything[i]
            category = blended_category(category_model, example, chosen, sure_chosen)
            ruled = classifier.rule_urgency(category, example.readings, [])
            counts = with_category(example.counts, category)
            for bonus in URGENCY_WEIGHTS:
                urgency_right[corpus_of[i]][bonus] += blended_urgency(
                    urgency_model, counts, ruled, bonus, classifier.rules.urgency_defaults.get(category)) == \
                    example.urgency
    sizes = {"real": len(tune), "invented": len(invented)}
    return {question: {corpus: {w: right / sizes[corpus] for w, right in table[corpus].items()} for corpus in table}
            for question, table in (("category", category_right), ("category_sure", sure_right),
                                    ("urgency", urgency_right))}


def best(right: dict[float, int], examples: int) -> float:
    """The largest weight of the rules (or the most caution) whose count of right answers is within
    ``TIE`` of the best: where the data cannot tell them apart, the rules (which an operator can read
    and change) keep their say, and the model names no category on a weak guess."""
    top = max(right.values())
    tolerance = max(1, round(examples * TIE))
    return max(weight for weight, count in right.items() if count >= top - tolerance)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="cross-validate only; write nothing")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    classifier = rules_only(INVENTED / "config.toml")
    tune = examples(REAL, "tune", classifier)
    invented = examples(INVENTED, None, classifier)
    print(f"training on {len(tune)} real-text tuning reports and {len(invented)} invented ones "
          f"(the held-out part is not read)")
    accuracy = cross_validate(tune, invented, classifier, args.folds)
    sizes = {"real": len(tune), "invented": len(invented)}
    blend: dict[str, float] = {"points_cap": POINTS_CAP}
    for question, key in (("category", "category_words"), ("category_sure", "category_sure"),
                          ("urgency", "urgency_rules")):
        for corpus, table in accuracy[question].items():
            shown = "  ".join(f"{weight:g}: {value:.1%}" for weight, value in table.items())
            by = {"category_sure": "how sure the model must be where the rules found nothing",
                  "category_words": "words that make a rule point weigh 1"}.get(key, "rule weight")
            print(f"{args.folds}-fold {question} accuracy, {corpus} ({sizes[corpus]}), by {by}: {shown}")
        blend[key] = best({w: round(sum(accuracy[question][c][w] * sizes[c] for c in sizes))
                           for w in accuracy[question]["real"]}, sum(sizes.values()))
    print(f"chosen: {blend}")
    if args.check:
        return 0
    train = tune + invented
    category_model = fit([e.counts for e in train], [e.category for e in train], "category")
    urgency_model = fit([with_category(e.counts, e.category) for e in train], [e.urgency for e in train], "urgency")
    document = {
        "about": "Trained by bench/train_model.py on the real-text corpus's tuning part and the invented corpus; "
                 "read by rules.model.",
        "trained_on": {"real_tune_reports": len(tune), "invented_reports": len(invented)},
        "cross_validated": {question: {corpus: round(table[blend[key]], 4) for corpus, table in
                                       accuracy[question].items()}
                            for question, key in (("category", "category_words"), ("category_sure", "category_sure"),
                                                  ("urgency", "urgency_rules"))},
        "blend": blend,
        "category": export(category_model),
        "urgency": export(urgency_model),
    }
    MODEL_FILE.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n",
                          encoding="utf-8")
    print(f"wrote {MODEL_FILE.relative_to(ROOT)} ({MODEL_FILE.stat().st_size // 1024} KiB, "
          f"{len(category_model.names)} + {len(urgency_model.names)} features)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
