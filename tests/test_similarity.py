"""The duplicate measure separates reports of one incident from other incidents."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from rules.similarity import DEFAULT_THRESHOLD, alike, normalise, signature, similarity

# Five neighbours about one person trying car doors, each in their own words.
SAME_INCIDENT = [
    "Verdachte man trekt aan autodeuren in de Marathonloop, grijze hoodie",
    "Er loopt een vreemde vent aan de portieren van auto's te voelen op de marathonloop",
    "Let op: iemand probeert autodeuren te openen Marathonloop hoek Olympiaplein",
    "man in grijze hoodie controleert of auto's open zijn, marathonloop",
    "Zojuist man gezien die aan de deuren van geparkeerde auto's trekt (Marathonloop)",
]
# Other incidents in the same ward on the same evening.
OTHER_INCIDENTS = [
    "Vannacht is er ingebroken in de schuur aan de Olympiaplein, fietsen weg",
    "Grofvuil gedumpt naast de container bij het winkelcentrum",
    "Morgen bewonersavond over veiligheid in het wijkcentrum",
    "Verdachte man belt aan bij ouderen en zegt dat hij van de energie is",
    "Verdachte man kijkt door ramen van woningen in de Olympiaplein",
]


def test_reports_of_one_incident_reach_the_threshold() -> None:
    for first, second in combinations(SAME_INCIDENT, 2):
        assert similarity(first, second) >= DEFAULT_THRESHOLD, (first, second)


def test_other_incidents_stay_below_the_threshold() -> None:
    for report in SAME_INCIDENT:
        for other in OTHER_INCIDENTS:
            assert similarity(report, other) < DEFAULT_THRESHOLD, (report, other)


def test_generic_report_words_do_not_make_reports_alike() -> None:
    assert similarity("Verdachte man gezien vannacht", "verdachte man gezien vanavond") == 0.0


def test_accents_case_and_punctuation_do_not_matter() -> None:
    assert similarity("Café Één, BRAND!", "cafe een brand") == 1.0
    assert normalise("Het café") == "cafe"


@given(st.text(), st.text())
def test_symmetric_and_bounded(first: str, second: str) -> None:
    value = similarity(first, second)
    assert 0.0 <= value <= 1.0 + 1e-9
    assert abs(value - similarity(second, first)) < 1e-9


@given(st.text(), st.text())
def test_stored_signatures_compare_as_the_texts_do(first: str, second: str) -> None:
    assert abs(alike(signature(first), signature(second)) - similarity(first, second)) < 1e-9
