"""Safeguards on written examples in Dutch and English: what is flagged and what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import load_rules
from rules.safeguards import AttachmentInfo, Safeguards

STREETS = ["Marathonloop", "Olympiaplein", "Van Broeckhovenlaan", "Hinthamerstraat"]


@pytest.fixture(scope="module")
def guard() -> Safeguards:
    return Safeguards(load_rules().safeguards, streets=STREETS)


def kinds(guard: Safeguards, text: str, source: str = "member") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in guard.check(text, source):
        found.setdefault(finding.kind, []).append(finding.evidence)
    return found


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("Er liep een getinte man met een capuchon langs de achterdeuren", "getinte man"),
        ("twee donker getinte jongens op een scooter", "donker getinte"),
        ("Ik zag een man met een buitenlands uiterlijk bij de auto's", "buitenlands uiterlijk"),
        ("Marokkaanse jongens hangen elke avond bij het winkelcentrum", "Marokkaanse jongens"),
        ("Een vrouw van Oost-Europees type belde aan voor een collecte", "Oost-Europees type"),
        ("zigeuners met een busje bij de garages", "zigeuners"),
        ("A dark-skinned man was trying car doors", "dark-skinned"),
        ("two Middle Eastern men knocking on doors", "Middle Eastern men"),
        ("a foreign-looking guy took photos of the houses", "foreign-looking"),
        ("The suspect is a person of colour in a grey hoodie", "of colour"),
    ],
)
def test_appearance_descriptions_are_flagged(guard: Safeguards, text: str, evidence: str) -> None:
    assert evidence in kinds(guard, text).get("appearance", [])


@pytest.mark.parametrize(
    "text",
    [
        "Man met zwarte jas en donkere broek liep aan autodeuren te trekken",
        "Een zwarte auto reed drie keer langzaam door de straat",
        "Jongen op een witte scooter gooide een steen door de ruit",
        "Blanke vla en bruine bonen in de container gedumpt, wat een troep",
        "A man in a black jacket was checking car doors at 3 am",
        "Turks fruit draait vanavond in het buurthuis",
        "Poolse schroevendraaier gestolen uit de schuur",  # origin of a thing, not a person
    ],
)
def test_behaviour_and_clothing_are_not_flagged(guard: Safeguards, text: str) -> None:
    assert "appearance" not in kinds(guard, text)


@pytest.mark.parametrize(
    ("text", "plate"),
    [
        ("De auto had kenteken 12-ABC-3 en reed weg", "12-ABC-3"),
        ("grijze Golf, XX-123-X, richting A2", "XX-123-X"),
        ("kenteken gh-12-kl genoteerd", "GH-12-KL"),
        ("plate GH 12 KL, silver van", "GH 12 KL"),
        ("bestelbus 1-ABC-23 stond er de hele dag", "1-ABC-23"),
    ],
)
def test_dutch_licence_plates_are_flagged(guard: Safeguards, text: str, plate: str) -> None:
    assert kinds(guard, text).get("licence_plate") == [plate]


@pytest.mark.parametrize(
    "text",
    [
        "Op 1-okt-26 is er een bewonersavond",
        "Het gebeurde om 3 uur 20 vannacht",
        "postcode 5221 AB, huisnummer 12",
        "tussen 22-23 uur, 2 auto's",
    ],
)
def test_dates_times_and_postcodes_are_not_plates(guard: Safeguards, text: str) -> None:
    assert "licence_plate" not in kinds(guard, text)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Bel de eigenaar: 06-12345678", "06-12345678"),
        ("zijn nummer is 06 1234 5678", "06 1234 5678"),
        ("call +31 6 12345678 if you see him", "+31 6 12345678"),
        ("buurvrouw bereikbaar op 073-6123456", "073-6123456"),
    ],
)
def test_third_party_phone_numbers_are_flagged(guard: Safeguards, text: str, number: str) -> None:
    assert kinds(guard, text).get("phone_number") == [number]


@pytest.mark.parametrize(
    "text",
    [
        "Bel bij spoed 112, anders 0900-8844",
        "Meld Misdaad Anoniem: 0800-7000",
        "De politie is bereikbaar op 0900 8844",
        "bedrijfsnummer 088-1234567 van de gemeente",
        "Het gebeurde in 2026 om 14:30, ongeveer 200 meter verderop",
    ],
)
def test_service_numbers_and_other_figures_are_not_phones(guard: Safeguards, text: str) -> None:
    assert "phone_number" not in kinds(guard, text)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Ingebroken bij Marathonloop 12 vannacht", "Marathonloop 12"),
        ("de bewoner van Van Broeckhovenlaan 120a was op vakantie", "Van Broeckhovenlaan 120"),
        ("verdachte man bij Kerkstraat 4", "Kerkstraat 4"),
        ("graffiti op de gevel van Hinthamerstraat 88", "Hinthamerstraat 88"),
    ],
)
def test_home_addresses_are_flagged(guard: Safeguards, text: str, address: str) -> None:
    assert kinds(guard, text).get("home_address") == [address]


@pytest.mark.parametrize(
    "text",
    [
        "Inbraak in de Marathonloop vannacht",
        "Er staan 3 auto's verkeerd geparkeerd op het Olympiaplein",
        "bijeenkomst om 20 uur in het wijkcentrum",
        "de Hinthamerstraat is van 9 tot 17 uur afgesloten",
    ],
)
def test_streets_without_house_numbers_are_not_addresses(guard: Safeguards, text: str) -> None:
    assert "home_address" not in kinds(guard, text)


def test_photos_in_residents_reports_are_flagged(guard: Safeguards) -> None:
    attachments = [AttachmentInfo("IMG_2031.jpg", "image/jpeg"), AttachmentInfo("melding.pdf", "application/pdf")]
    findings = guard.check("zie foto", "member", attachments)
    assert [(f.kind, f.evidence) for f in findings] == [("photo", "IMG_2031.jpg")]


def test_partner_messages_are_not_second_guessed(guard: Safeguards) -> None:
    text = "Signalement: getinte man, kenteken 12-ABC-3, getuigen bellen 06-12345678, Marathonloop 12"
    photo = [AttachmentInfo("signalement.jpg", "image/jpeg")]
    assert guard.check(text, "police", photo) == []
    assert guard.check(text, "municipality", photo) == []
    assert {f.kind for f in guard.check(text, "unknown", photo)} == {
        "appearance", "licence_plate", "phone_number", "home_address", "photo",
    }


def test_operator_terms_extend_the_defaults(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('[safeguards.appearance]\nnl = ["vreemde snuiter"]\n', encoding="utf-8")
    guard = Safeguards(load_rules(mine).safeguards)
    assert kinds(guard, "een vreemde snuiter bij de school").get("appearance") == ["vreemde snuiter"]
    assert "appearance" in kinds(guard, "een getinte man")  # the shipped terms stay


def test_each_finding_is_reported_once(guard: Safeguards) -> None:
    text = "getinte man, weer die getinte man, Getinte man"
    assert kinds(guard, text)["appearance"] == ["getinte man"]
