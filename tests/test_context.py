"""Rules that read context, one mechanism at a time, on written examples.

Each mechanism is tested with the rules alone (``[model] enabled = false``),
so a test shows the rule and its explanation line, and beside it the same
kind of text where the mechanism must not fire. The trained model is tested
at the end: it is shipped, weighed beside the rules and explains itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mail.message import parse_mail
from mail.text import fold
from relay.config import parse_config
from rules import Classification, Classifier, RuleFileError, load_rules
from rules.context import Context, Scope
from rules.model import MODEL_FILE, TextModel, features
from tests.mailgen import message
from tests.test_rules import MEMBERS, NETWORK, classify, config_data


@pytest.fixture(scope="module")
def rules_alone() -> Classifier:
    return Classifier(parse_config(config_data()).directory(), replace(load_rules(), model=None))


@pytest.fixture(scope="module")
def with_model() -> Classifier:
    return Classifier(parse_config(config_data()).directory(), load_rules())


def said(result: Classification, start: str) -> list[str]:
    return [line for line in result.explanation if line.startswith(start)]


def scopes(text: str, word: str) -> frozenset[Scope]:
    folded = fold(text)
    return Context(folded, load_rules().context).scopes_at(folded.index(word))


# -- scope: advice, conditions, the past, quotes ---------------------------------

@pytest.mark.parametrize(
    ("text", "word", "scope"),
    [
        ("Is er spoed, bel dan 112.", "112", Scope.CONDITIONAL),
        ("Ziet u iets verdachts? Bel direct 112.", "112", Scope.INSTRUCTION),
        ("De buurman belde direct 112 en de politie kwam.", "112", Scope.PAST),
        ('Het bericht luidt: "Uw rekening wordt vandaag nog geblokkeerd, klik direct op de link".', "direct",
         Scope.QUOTED),
        ("Er zijn nu twee mannen bezig bij de achterdeur.", "bezig", Scope.NOW),
    ],
)
def test_each_sentence_gets_its_scope(text: str, word: str, scope: Scope) -> None:
    assert scope in scopes(text, word)


def test_advice_to_call_112_does_not_make_a_report_urgent(rules_alone: Classifier) -> None:
    advice = classify(rules_alone, "Inbraak Marathonloop",
                      "Vorige week is ingebroken aan de Marathonloop. Is er spoed, bel dan direct 112.")
    assert advice.urgency == "normal"
    assert said(advice, "urgency cues not about now")
    going_on = classify(rules_alone, "Inbraak Marathonloop",
                        "Op dit moment wordt ingebroken aan de Marathonloop, de mannen zijn nog bezig!")
    assert going_on.urgency == "urgent"


def test_narrated_past_is_not_going_on_now(rules_alone: Classifier) -> None:
    told = classify(rules_alone, "Inbraak", "De buurman zag twee mannen en belde direct 112. Ze vluchtten weg.")
    assert told.urgency == "normal"


def test_words_of_a_quoted_scam_text_do_not_count(rules_alone: Classifier) -> None:
    body = ("Bewoners van Empel krijgen een sms van een nepbank. Het bericht luidt: \"Uw pas verloopt, "
            "klik nu direct op de link om spoed te voorkomen\". Klik niet op de link.")
    result = classify(rules_alone, "Phishing sms", body)
    assert result.category == "fraud"
    assert result.urgency == "normal"


# -- negation ----------------------------------------------------------------------

def test_a_denied_burglary_is_no_burglary(rules_alone: Classifier) -> None:
    denied = classify(rules_alone, "Schade aan de achterdeur",
                      "Er is gelukkig niet ingebroken, maar de achterdeur is vernield en beklad.")
    assert denied.category == "vandalism"
    assert said(denied, "negated, not counted")
    happened = classify(rules_alone, "Schade aan de achterdeur", "Er is ingebroken via de achterdeur.")
    assert happened.category == "burglary"


def test_a_negation_ends_at_the_comma(rules_alone: Classifier) -> None:
    result = classify(rules_alone, "Auto", "Niet ingebroken, wel vernield: de spiegel afgetrapt.")
    assert "vernield" not in " ".join(said(result, "negated"))


def test_bridge_words_keep_a_negation_going() -> None:
    folded = fold("Er is geen enkele link met de oplichting")
    assert Context(folded, load_rules().context).negation_before(folded.index("link")) == "geen"


# -- outcome ------------------------------------------------------------------------

def test_a_fire_under_control_is_no_longer_urgent(rules_alone: Classifier) -> None:
    ended = classify(rules_alone, "Brand in schuur", "De brand in de schuur was snel onder controle.")
    assert (ended.category, ended.urgency) == ("fire", "normal")
    assert said(ended, "urgency normal: fire, it ended")
    burning = classify(rules_alone, "Brand in schuur", "Er woedt een brand in een schuur aan de Kerkstraat.")
    assert (burning.category, burning.urgency) == ("fire", "urgent")


def test_still_not_found_stays_urgent(rules_alone: Classifier) -> None:
    missing = classify(rules_alone, "Vermist: Henk (82)", "Henk is nog steeds niet gevonden. Laatst gezien "
                       "gisteravond bij de Marathonloop.")
    assert (missing.category, missing.urgency) == ("missing_person", "urgent")
    found = classify(rules_alone, "Vermist: Henk (82)", "Henk is gevonden en weer thuis. Dank voor het uitkijken.")
    assert found.urgency == "normal"


def test_when_a_missing_person_was_last_seen_does_not_calm(rules_alone: Classifier) -> None:
    result = classify(rules_alone, "Vermiste vrouw", "Mevrouw wordt vermist, laatst gezien gisteravond in Empel.")
    assert result.urgency == "urgent"


# -- purpose outranks topic -------------------------------------------------------------

def test_an_information_evening_about_a_crime_is_information(rules_alone: Classifier) -> None:
    evening = classify(rules_alone, "Informatieavond over nepagenten en babbeltrucs",
                       "Oplichters doen zich voor als agent. Op de informatieavond vertelt de wijkagent hoe "
                       "u oplichting herkent. U bent welkom in het wijkcentrum.")
    assert evening.category == "info"
    assert any("purpose" in line for line in evening.explanation)
    scam = classify(rules_alone, "Nepagenten aan de deur",
                    "Twee mannen deden zich voor als agent en namen de pinpas van een bewoner mee.")
    assert scam.category == "fraud"


def test_one_purpose_word_in_the_text_alone_is_not_enough(rules_alone: Classifier) -> None:
    result = classify(rules_alone, "Inbraak Kerkstraat", "Vannacht is ingebroken aan de Kerkstraat. "
                      "Meer over preventie leest u op de site.")
    assert result.category == "burglary"


# -- police routine stays neutral --------------------------------------------------------

def test_witness_appeal_words_add_no_suspicious_points(rules_alone: Classifier) -> None:
    result = classify(rules_alone, "Getuigen gezocht woninginbraak",
                      "De politie zoekt getuigen. De verdachten zijn gevlucht. Ingebroken aan de Kerkstraat.",
                      sender="Politie <wijkagent@politie.nl>")
    assert result.category == "burglary"
    assert said(result, "police routine, not counted")


# -- Dutch compounds ------------------------------------------------------------------------

def test_a_stem_inside_a_compound_counts(rules_alone: Classifier) -> None:
    result = classify(rules_alone, "Melding", "Gisteren een woninginbraak bij de buren aan de Kerkstraat.")
    assert result.category == "burglary"


def test_compounds_share_the_models_letter_groups() -> None:
    vocabulary = load_rules().context
    compound = features("", "hennepkwekerij opgerold", vocabulary)
    part = features("", "een kwekerij", vocabulary)
    shared = {name for name in compound if name.startswith("#")} & {name for name in part if name.startswith("#")}
    assert "#kwek" in shared and "#erij>" in shared


def test_negated_and_scoped_words_are_features_of_their_own() -> None:
    vocabulary = load_rules().context
    assert "niet_ingebroken" in features("", "Er is niet ingebroken.", vocabulary)
    assert "if:spoed" in features("", "Is er spoed, bel dan 112.", vocabulary)


# -- the trained model beside the rules -----------------------------------------------------

def test_the_model_is_shipped_and_explains_with_its_strongest_features(with_model: Classifier) -> None:
    result = classify(with_model, "Inbraak Kerkstraat", "Vannacht is ingebroken aan de Kerkstraat via de achterdeur.")
    assert result.category == "burglary"
    lines = said(result, "model: category burglary")
    assert lines and "'" in lines[0]
    assert said(result, "model: urgency")


def test_an_operator_can_switch_the_model_off(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.toml"
    rule_file.write_text("[model]\nenabled = false\n", encoding="utf-8")
    classifier = Classifier(parse_config(config_data()).directory(), load_rules(rule_file))
    result = classifier.classify(parse_mail(message("Inbraak", "Ingebroken aan de Kerkstraat.", sender="jan@bewoner.nl",
                                                    to=NETWORK)), MEMBERS.get)
    assert result.category == "burglary"
    assert not said(result, "model:")


def test_a_wrong_model_switch_names_the_file_and_key(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.toml"
    rule_file.write_text('[model]\nenabled = "yes"\n', encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"rules\.toml: model\.enabled: must be true or false"):
        load_rules(rule_file)


def test_the_shipped_model_reads_back_as_trained() -> None:
    model = TextModel.load(MODEL_FILE)
    assert set(model.category.labels) >= {"burglary", "fraud", "info", "other"}
    assert set(model.urgency.labels) == {"urgent", "normal", "low"}
    probabilities = model.category.probabilities(features("Oplichting", "Een nepbank belt over uw pas", load_rules().context))
    assert abs(sum(probabilities.values()) - 1.0) < 1e-9
