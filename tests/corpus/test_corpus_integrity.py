"""The labelled corpus is whole: every message labelled, labels valid, the build reproducible.

These checks keep the corpus honest when someone edits it; they say nothing
about the classifier (``bench/classify_eval.py`` measures that).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from mail.message import parse_mail
from relay.config import load_config

CORPUS = Path(__file__).resolve().parent
REAL = CORPUS / "real"  # the real-text corpus: the same town, messages after published texts
BOTH = pytest.mark.parametrize("corpus", [CORPUS, REAL], ids=["invented", "real"])
LABEL_KEYS = {"file", "source", "kind", "category", "wards", "urgency"}
SOURCES = {"police", "municipality", "coordinator", "member", "unknown"}
KINDS = {"report", "command", "auto_reply", "bounce", "loop"}
CATEGORIES = {"burglary", "suspicious", "theft", "vandalism", "nuisance", "fraud",
              "missing_person", "fire", "traffic", "info", "other"}
URGENCIES = {"urgent", "normal", "low"}


def labels(corpus: Path = CORPUS) -> list[dict[str, object]]:
    with (corpus / "labels.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@BOTH
def test_every_message_has_exactly_one_valid_label(corpus: Path) -> None:
    rows = labels(corpus)
    files = sorted(path.name for path in (corpus / "eml").glob("*.eml"))
    assert sorted(str(row["file"]) for row in rows) == files
    slugs = set(load_config(CORPUS / "config.toml").ward_slugs)
    for row in rows:
        keys = LABEL_KEYS | ({"url", "part"} if corpus == REAL else set())
        assert set(row) == keys, row
        assert row["source"] in SOURCES and row["kind"] in KINDS, row
        wards = row["wards"]
        assert isinstance(wards, list) and wards == sorted(set(wards)) and set(wards) <= slugs, row
        if row["kind"] == "report":
            assert row["category"] in CATEGORIES and row["urgency"] in URGENCIES, row
        else:
            assert row["category"] is None and row["urgency"] is None and wards == [], row


def test_the_corpus_covers_what_it_promises() -> None:
    rows = labels()
    kinds = Counter(row["kind"] for row in rows)
    categories = Counter(row["category"] for row in rows if row["kind"] == "report")
    assert len(rows) >= 240 and kinds["report"] >= 180 and len(rows) - kinds["report"] >= 60
    assert set(categories) == CATEGORIES and min(categories.values()) >= 8
    assert set(kinds) == KINDS
    assert {row["source"] for row in rows} == SOURCES


def test_the_real_corpus_keeps_its_provenance_and_a_held_out_part() -> None:
    rows = labels(REAL)
    assert len(rows) >= 400 and all(str(row["url"]).startswith(("https://", "http://")) for row in rows)
    parts = Counter(row["part"] for row in rows)
    assert set(parts) == {"tune", "heldout"} and parts["heldout"] >= 120
    categories = Counter(row["category"] for row in rows if row["part"] == "heldout" and row["kind"] == "report")
    assert set(categories) == CATEGORIES  # every category is measured where nobody tuned


@BOTH
def test_every_message_parses_without_losing_its_text(corpus: Path) -> None:
    for path in sorted((corpus / "eml").glob("*.eml")):
        mail = parse_mail(path.read_bytes())
        assert mail.from_addresses, path.name
        assert mail.subject or mail.text.strip(), path.name
        # No replacement characters: every charset, including the mislabelled ones, decodes.
        assert "\ufffd" not in mail.text and "\ufffd" not in mail.subject, path.name


def test_members_belong_to_known_wards() -> None:
    slugs = set(load_config(CORPUS / "config.toml").ward_slugs)
    with (CORPUS / "members.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["ward"] in slugs and "@" in row["email"] for row in rows)


@BOTH
def test_the_build_reproduces_the_committed_files(tmp_path: Path, corpus: Path) -> None:
    spec = importlib.util.spec_from_file_location("corpus_build", CORPUS / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    module.build(tmp_path, corpus / "src")
    assert (tmp_path / "labels.jsonl").read_bytes() == (corpus / "labels.jsonl").read_bytes()
    built = sorted(path.name for path in (tmp_path / "eml").glob("*.eml"))
    assert built == sorted(path.name for path in (corpus / "eml").glob("*.eml"))
    for name in built:
        assert (tmp_path / "eml" / name).read_bytes() == (corpus / "eml" / name).read_bytes(), name
