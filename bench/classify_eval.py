"""Evaluate the classifier on the labelled corpora.

    .venv/bin/python bench/classify_eval.py [--corpus DIR] [--verbose] [--as-of REV ...]

Without ``--corpus`` both corpora are measured: the invented one
(``tests/corpus``) and the real-text one (``tests/corpus/real``), the latter
in its two parts: ``tune`` (what the rules may be tuned on) and ``heldout``
(never looked at while tuning). A corpus folder holds ``labels.jsonl`` (one
object per message: file, source, kind, category, wards, urgency, and for the
real corpus url and part) and ``eml/``; ``config.toml`` (the city) and
``members.csv`` (who counts as a member) are read from the folder or its
parent. Prints the accuracy per field, the category/wards/urgency accuracy over
the reports, a confusion table, the time per message, and with ``--verbose``
every mismatch of the invented corpus and the tuning part (held-out mismatches
only with ``--show-heldout``, once the tuning is done). Always exits 0: this
measures, it does not judge.

The shipped text model (``rules/defaults/model.json``) was trained on the
invented corpus and the tuning part, so their figures here are in-sample; the
honest figures for them are ``bench/train_model.py``'s cross-validated ones,
and for new text the held-out part's. Beside each corpus's figures, the same
messages with the rules alone ("the rules alone (no model)"); for the held-out
part also its figures without the messages whose page also backs a tuning
message (the stricter figure: those share facts and words with the training).
``--as-of REV ...`` adds the held-out figures on the reports the corpus already
had at those git revisions: the held-out part grows with the corpus, and these
follow the same messages from one round of new material to the next.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mail.message import parse_mail
from mail.quotes import own_text
from relay.config import load_config
from relay.service.runtime import make_classifier
from rules import Classifier, load_rules
from rules.safeguards import RESIDENT_SOURCES, AttachmentInfo, Safeguards

FIELDS = ("source", "kind", "category", "wards", "urgency")
REPORT_FIELDS = ("category", "wards", "urgency")
CATEGORIES = ("burglary", "suspicious", "theft", "vandalism", "nuisance", "fraud",
              "missing_person", "fire", "traffic", "info", "other")


@dataclass
class Outcome:
    file: str
    expected: dict[str, Any]
    got: dict[str, Any]

    def mismatches(self) -> list[str]:
        return [name for name in FIELDS if normalise(self.expected.get(name)) != normalise(self.got.get(name))]


@dataclass
class Evaluation:
    outcomes: list[Outcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    with_model: bool = False  # the classifier weighed the trained model beside the rules

    def accuracy(self, name: str, *, reports_only: bool = False) -> tuple[int, int]:
        chosen = [o for o in self.outcomes if not reports_only or o.expected["kind"] == "report"]
        right = sum(1 for o in chosen if name not in o.mismatches())
        return right, len(chosen)


def normalise(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) else value


def read_members(path: Path) -> Callable[[str], str | None]:
    """members.csv -> the MemberLookup the classifier expects (address -> ward)."""
    wards: dict[str, str] = {}
    if path.exists():
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                wards[row["email"].strip().lower()] = row["ward"].strip()
    return lambda address: wards.get(address.strip().lower())


def read_labels(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def beside(corpus: Path, name: str) -> Path:
    """``name`` in the corpus folder, else in its parent (the real corpus shares the town)."""
    return corpus / name if (corpus / name).exists() else corpus.parent / name


def evaluate(corpus: Path, part: str | None = None, rules_only: bool = False) -> Evaluation:
    """Classify every labelled message of ``corpus`` (of one ``part``); ``rules_only``: without the model."""
    config = load_config(beside(corpus, "config.toml"))
    classifier = make_classifier(config)
    if rules_only:
        classifier = Classifier(classifier.directory, replace(classifier.rules, model=None))
    members = read_members(beside(corpus, "members.csv"))
    evaluation = Evaluation(with_model=classifier.rules.model is not None)
    for label in read_labels(corpus / "labels.jsonl"):
        if part is not None and label.get("part") != part:
            continue
        path = corpus / "eml" / label["file"]
        if not path.exists():
            evaluation.missing.append(label["file"])
            continue
        raw = path.read_bytes()
        started = time.perf_counter()
        result = classifier.classify(parse_mail(raw, config.limits.max_message_bytes), members)
        evaluation.seconds += time.perf_counter() - started
        evaluation.outcomes.append(Outcome(label["file"], label, result.as_json(label["file"])))
    return evaluation


def percent(right: int, total: int) -> str:
    return f"{100.0 * right / total:5.1f}% ({right}/{total})" if total else "   n/a"


def print_accuracy(evaluation: Evaluation) -> None:
    print(f"messages: {len(evaluation.outcomes)}"
          f" (reports {sum(o.expected['kind'] == 'report' for o in evaluation.outcomes)})")
    print("\naccuracy over all messages:")
    for name in FIELDS:
        print(f"  {name:<9} {percent(*evaluation.accuracy(name))}")
    print("accuracy over reports:")
    for name in REPORT_FIELDS:
        print(f"  {name:<9} {percent(*evaluation.accuracy(name, reports_only=True))}")
    exact = sum(1 for o in evaluation.outcomes if not o.mismatches())
    print(f"  all fields right: {percent(exact, len(evaluation.outcomes))}")
    if evaluation.outcomes:
        per_message = 1000.0 * evaluation.seconds / len(evaluation.outcomes)
        print(f"\nclassify time: {per_message:.2f} ms per message (parse excluded)")


def print_rules_alone(evaluation: Evaluation) -> None:
    """The same messages without the trained model: what the rules alone get right, side by side."""
    shown = "  ".join(f"{name} {percent(*evaluation.accuracy(name, reports_only=True))}" for name in REPORT_FIELDS)
    print(f"the rules alone (no model), over reports: {shown}")


def print_unshared(evaluation: Evaluation, corpus: Path) -> None:
    """The held-out figures again without the messages whose page also backs a tuning message (a police
    alert and a resident's retelling of one news item, a missing person and the same person found): those
    share facts and words with what the model was trained on, so the rest is the stricter figure."""
    tuning_pages = {_page(row["url"]) for row in read_labels(corpus / "labels.jsonl") if row.get("part") == "tune"}
    unshared = Evaluation(outcomes=[o for o in evaluation.outcomes if _page(o.expected["url"]) not in tuning_pages])
    shared = len(evaluation.outcomes) - len(unshared.outcomes)
    shown = "  ".join(f"{name} {percent(*unshared.accuracy(name, reports_only=True))}" for name in REPORT_FIELDS)
    print(f"without the {shared} messages whose page also backs a tuning message, over reports: {shown}")


def _page(url: str) -> str:
    return url.split("://", 1)[-1].removeprefix("www.").rstrip("/")


def print_as_of(evaluation: Evaluation, corpus: Path, revisions: list[str]) -> None:
    """The same figures on the held-out reports the corpus already had at each git revision: as the
    corpus grows its held-out part grows too, and these follow the same messages from round to round."""
    for revision in revisions:
        shown = subprocess.run(["git", "show", f"{revision}:{(corpus / 'labels.jsonl').relative_to(ROOT)}"],
                               capture_output=True, text=True, cwd=ROOT, check=False)
        if shown.returncode != 0:
            print(f"as of {revision}: no labels there ({shown.stderr.strip()})")
            continue
        then = {json.loads(line)["file"] for line in shown.stdout.splitlines() if line.strip()}
        chosen = [o for o in evaluation.outcomes if o.file in then and o.expected["kind"] == "report"]
        figures = "  ".join(f"{name} {percent(sum(name not in o.mismatches() for o in chosen), len(chosen))}"
                            for name in REPORT_FIELDS)
        print(f"held-out reports already labelled at {revision} ({len(chosen)}): {figures}")


def print_confusion(evaluation: Evaluation) -> None:
    """Rows: the label; columns: what the classifier said (reports only)."""
    pairs = Counter(
        (o.expected.get("category"), o.got.get("category"))
        for o in evaluation.outcomes if o.expected["kind"] == "report"
    )
    got_names = sorted({str(got) for _, got in pairs}, key=_category_order)
    short = {name: name[:7] for name in got_names}
    print("\ncategory confusion (rows: label, columns: classifier):")
    print(" " * 17 + "".join(f"{short[name]:>8}" for name in got_names))
    for expected in CATEGORIES:
        row = [pairs.get((expected, None if name == "None" else name), 0) for name in got_names]
        if any(row):
            print(f"  {expected:<15}" + "".join(f"{count or '.':>8}" for count in row))


def _category_order(name: str) -> int:
    return CATEGORIES.index(name) if name in CATEGORIES else len(CATEGORIES)


def print_mismatches(evaluation: Evaluation) -> None:
    print("\nmismatches (file, field, expected, got):")
    for outcome in evaluation.outcomes:
        for name in outcome.mismatches():
            print(f"  {outcome.file}  {name}  expected={json.dumps(outcome.expected.get(name))}"
                  f"  got={json.dumps(outcome.got.get(name))}")


def print_safeguards(corpus: Path) -> None:
    """Safeguard warnings on residents' reports: how often a clean report is flagged.

    ``safeguards.jsonl`` lists the reports that really contain an address, a
    plate, a phone number, a photo or an appearance description; every other
    resident's report is clean and should raise no warning (target: at most 2%).
    """
    config = load_config(corpus / "config.toml")
    rules = load_rules(config.rules.path)
    guard = Safeguards(rules.safeguards, streets=[street for ward in config.wards for street in ward.streets])
    expected = {row["file"]: set(row["safeguards"]) for row in read_labels(corpus / "safeguards.jsonl")}
    clean = flagged_clean = labelled = found = 0
    false_alarms: list[str] = []
    for label in read_labels(corpus / "labels.jsonl"):
        if label["kind"] != "report" or label["source"] not in RESIDENT_SOURCES:
            continue
        mail = parse_mail((corpus / "eml" / label["file"]).read_bytes(), config.limits.max_message_bytes)
        text = f"{mail.subject}\n{own_text(mail.text, mail.subject, rules.disclaimer_starts)}"
        attachments = [AttachmentInfo(a.filename, a.content_type) for a in mail.attachments]
        kinds = {finding.kind for finding in guard.check(text, label["source"], attachments)}
        wanted = expected.get(label["file"], set())
        if wanted:
            labelled += 1
            found += wanted <= kinds
        else:
            clean += 1
            if kinds:
                flagged_clean += 1
                false_alarms.append(f"{label['file']} ({', '.join(sorted(kinds))})")
    print("\nsafeguards on residents' reports:")
    print(f"  clean reports flagged: {percent(flagged_clean, clean)}  (target: at most 2%)")
    print(f"  reports with sensitive content caught: {percent(found, labelled)}")
    for line in false_alarms:
        print(f"    false alarm: {line}")


INVENTED = ROOT / "tests" / "corpus"
REAL = INVENTED / "real"


def report(title: str, corpus: Path, part: str | None, verbose: bool, as_of: list[str] | None = None) -> Evaluation:
    evaluation = evaluate(corpus, part)
    print(f"\n=== {title}: {corpus.relative_to(ROOT) if corpus.is_relative_to(ROOT) else corpus}"
          + (f", part {part}" if part else ""))
    if evaluation.missing:
        print(f"labelled but missing: {', '.join(evaluation.missing)}")
    print_accuracy(evaluation)
    if evaluation.with_model:
        print_rules_alone(evaluate(corpus, part, rules_only=True))
    if part == "heldout":
        print_unshared(evaluation, corpus)
        print_as_of(evaluation, corpus, as_of or [])
    print_confusion(evaluation)
    if (corpus / "safeguards.jsonl").exists() and part is None:
        print_safeguards(corpus)
    if verbose:
        print_mismatches(evaluation)
    return evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="one corpus folder (default: both corpora)")
    parser.add_argument("--verbose", action="store_true", help="list every mismatch (not the held-out part's)")
    parser.add_argument("--show-heldout", action="store_true",
                        help="with --verbose, list the held-out part's mismatches too (only after tuning)")
    parser.add_argument("--as-of", nargs="+", default=[], metavar="REV",
                        help="also the held-out reports the real-text corpus had at these git revisions")
    parser.add_argument("--tuning", action="store_true",
                        help="while tuning: the invented corpus and the tuning part only, no held-out figures")
    args = parser.parse_args(argv)
    if args.corpus is not None:
        named = sorted({str(row["part"]) for row in read_labels(args.corpus / "labels.jsonl") if row.get("part")})
        parts: list[str | None] = [*named] if named else [None]
        for part in parts:
            show = args.verbose and (part != "heldout" or args.show_heldout)
            report("corpus", args.corpus, part, show)
        return 0
    report("invented corpus (our own examples; the model trained on it)", INVENTED, None, args.verbose)
    report("real-text corpus, tuning part (the model trained on it)", REAL, "tune", args.verbose)
    if not args.tuning:
        report("real-text corpus, held-out part (never tuned on)", REAL, "heldout",
               args.verbose and args.show_heldout, args.as_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
