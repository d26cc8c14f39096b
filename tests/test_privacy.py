"""docs/privacy.md says exactly where personal data is (storage/privacy.py), and nothing is left unsaid."""

from __future__ import annotations

import re
from pathlib import Path

from storage.privacy import NOT_PERSONAL, PERSONAL_DATA, columns

DOC = Path(__file__).resolve().parent.parent / "docs" / "privacy.md"


def test_every_text_or_binary_column_is_classified() -> None:
    unclassified = [name for name, _column in columns() if name not in PERSONAL_DATA and name not in NOT_PERSONAL]
    assert unclassified == []
    assert not set(PERSONAL_DATA) & NOT_PERSONAL


def test_the_document_lists_exactly_the_personal_columns_and_how_long_they_stay() -> None:
    table = [line for line in DOC.read_text(encoding="utf-8").splitlines() if re.match(r"^\| `\w+\.\w+` \|", line)]
    documented = {re.match(r"^\| `(\w+\.\w+)`", line).group(1): line for line in table}  # type: ignore[union-attr]
    assert set(documented) == set(PERSONAL_DATA)
    for name, (what, kept) in PERSONAL_DATA.items():
        assert what in documented[name] and kept in documented[name], name
