"""``binrelay classify``: the JSON lines and the readable summary, on corpus messages.

Runs the real command line (in-process ``relay.cli.main`` and once as a
subprocess) against the labelled corpus in ``tests/corpus``; the expected
values come from ``labels.jsonl`` (what a coordinator decided).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relay.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
CONFIG = CORPUS / "config.toml"
KEYS = {"file", "source", "kind", "category", "wards", "urgency", "explanation"}

# Clear-cut messages whose source, kind, category, wards and urgency do not
# depend on the member table.
CLEAR_CUT = [
    "p01_woninginbraak_marathonloop.eml",     # police, HTML, disclaimer
    "p06_vermiste_man_dementie.eml",          # police, urgent missing person
    "x16_police_subdomain.eml",               # mail.politie.nl is the police too
    "u01_politie_displayname_gmail.eml",      # "Politie" on gmail.com is unknown
    "g01_afvaldumping_boschveld.eml",         # municipality, dumping
    "a05_police_ooo.eml",                     # auto-reply (a partner: no member table needed)
    "b01_postfix_dsn_verp.eml",               # bounce
    "l01_own_alert_back.eml",                 # loop
    "s01_aanmelden_maaspoort_subject.eml",    # command
]


def labels() -> dict[str, dict[str, object]]:
    with (CORPUS / "labels.jsonl").open(encoding="utf-8") as handle:
        return {row["file"]: row for row in map(json.loads, handle)}


def corpus_file(name: str) -> str:
    return str(CORPUS / "eml" / name)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_matches_label(result: dict[str, object], name: str, *, source: bool = True) -> None:
    expected = labels()[name]
    fields = ["kind", "category", "wards", "urgency"] + (["source"] if source else [])
    got = {field: result[field] for field in fields}
    assert got == {field: expected[field] for field in fields}, name


def test_json_prints_one_spec_object_per_file_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    files = [corpus_file(name) for name in CLEAR_CUT]
    status = main(["--config", str(CONFIG), "classify", "--json", *files])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    results = json_lines(captured.out)
    assert [result["file"] for result in results] == files
    slugs = {"binnenstad", "boschveld", "west", "zuid", "graafsepoort", "muntel-vliert-orthen",
             "maaspoort", "empel", "rosmalen-noord", "rosmalen-zuid"}
    for result in results:
        assert set(result) == KEYS
        assert result["wards"] == sorted(result["wards"]) and set(result["wards"]) <= slugs
        explanation = result["explanation"]
        assert isinstance(explanation, list) and explanation
        assert all(isinstance(line, str) and line for line in explanation)
    for name, result in zip(CLEAR_CUT, results, strict=True):
        assert_matches_label(result, name)


def test_explanation_names_the_partner(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--config", str(CONFIG), "classify", "--json", corpus_file("p01_woninginbraak_marathonloop.eml")])
    [result] = json_lines(capsys.readouterr().out)
    assert any("Politie Oost-Brabant" in line or "politie.nl" in line for line in result["explanation"])


def test_readable_summary_shows_decision_and_explanation(capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus_file("p03_heterdaad_inbraak_vluchtend.eml")
    status = main(["--config", str(CONFIG), "classify", path])
    out = capsys.readouterr().out
    assert status == 0
    first, *rest = out.splitlines()
    assert first.startswith(f"{path}: police report")
    assert "category burglary" in first and "urgency urgent" in first and "rosmalen-zuid" in first
    assert rest and all(line.startswith("    ") for line in rest)
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_unreadable_file_is_an_error_line_but_others_are_classified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.eml"
    files = [corpus_file(CLEAR_CUT[0]), str(missing), corpus_file(CLEAR_CUT[1])]
    status = main(["--config", str(CONFIG), "classify", "--json", *files])
    captured = capsys.readouterr()
    assert status == 1
    assert [result["file"] for result in json_lines(captured.out)] == [files[0], files[2]]
    [error] = captured.err.strip().splitlines()
    assert str(missing) in error


def test_a_broken_message_is_still_classified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\xff\xfe not a mail at all \x00\x01\r\n\r\n\r\n")
    status = main(["--config", str(CONFIG), "classify", "--json", str(junk)])
    [result] = json_lines(capsys.readouterr().out)
    assert status == 0
    assert set(result) == KEYS and result["source"] == "unknown"


def member_database_config(tmp_path: Path) -> Path:
    """The corpus config with a database holding the corpus members."""
    from storage.db import make_engine, migrate, session_factory
    from storage.models import Member

    url = f"sqlite:///{tmp_path / 'members.db'}"
    engine = make_engine(url)
    migrate(engine)
    now = datetime(2026, 10, 1, tzinfo=UTC)
    with session_factory(engine)() as session, (CORPUS / "members.csv").open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            session.add(Member(email=row["email"], name=row["name"], ward=row["ward"],
                               unsubscribe_token=f"token-{number}", joined_at=now))
        session.commit()
    engine.dispose()
    text = CONFIG.read_text(encoding="utf-8").replace(
        'url = "sqlite:///corpus-does-not-exist.db"', f'url = "{url}"'
    )
    config = tmp_path / "binrelay.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_member_table_gives_source_and_own_ward(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = member_database_config(tmp_path)
    names = ["m03_autokraak_zonder_plaats.eml", "m01_ingebroken_schuur_geen_punt.eml"]
    status = main(["--config", str(config), "classify", "--json", *map(corpus_file, names)])
    results = json_lines(capsys.readouterr().out)
    assert status == 0
    for name, result in zip(names, results, strict=True):
        assert_matches_label(result, name)


def test_subprocess_json(tmp_path: Path) -> None:
    names = ["p14_brand_schuur_nu.eml", "d01_akkoord_iphone_quote.eml"]
    completed = subprocess.run(
        [sys.executable, "-m", "relay.cli.main", "--config", str(CONFIG), "classify", "--json",
         *map(corpus_file, names)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json_lines(completed.stdout)
    assert len(results) == 2
    for name, result in zip(names, results, strict=True):
        assert set(result) == KEYS
        assert_matches_label(result, name)
