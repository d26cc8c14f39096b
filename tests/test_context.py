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
from rules.model import MODEL_FILE, TextModel, features, rule_point_weight
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


def test_measures_against_a_nuisance_are_low(rules_alone: Classifier) -> None:
    measures = classify(rules_alone, "Cameratoezicht Olympiaplein",
                        "Na klachten over overlast door jongeren neemt de gemeente maatregelen: er komt "
                        "cameratoezicht.")
    assert (measures.category, measures.urgency) == ("nuisance", "low")
    nuisance = classify(rules_alone, "Overlast jongeren", "Weer overlast door een groep jongeren bij de speeltuin.")
    assert (nuisance.category, nuisance.urgency) == ("nuisance", "normal")


def test_a_weather_code_alone_is_a_warning_not_an_emergency(rules_alone: Classifier) -> None:
    warning = classify(rules_alone, "Code oranje", "Morgen code oranje voor storm. Zet losse spullen vast.")
    assert warning.urgency != "urgent"
    storm = classify(rules_alone, "Storm", "Het stormt nu hard, code oranje: blijf binnen.")
    assert storm.urgency == "urgent"


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


def test_what_to_do_and_tips_in_the_subject_are_information(rules_alone: Classifier) -> None:
    advice = classify(rules_alone, "Phishing: wat te doen als u erin bent getrapt",
                      "Oplichters sturen valse mails uit naam van de bank. Bel uw bank en doe aangifte.")
    assert advice.category == "info"
    tips = classify(rules_alone, "Tips tegen zakkenrollers op de kerstmarkt",
                    "Zakkenrollers slaan toe in de drukte. Draag uw tas voor u.")
    assert tips.category == "info"
    appeal = classify(rules_alone, "Zakkenroller op de markt", "Bij een vrouw is de portemonnee gerold op de markt. "
                      "Tips zijn welkom via 0900-8844.")
    assert appeal.category == "theft"  # "tips" as leads for the police is no purpose


# -- what "other" is about ---------------------------------------------------------------

def test_a_lost_pet_is_other_not_a_missing_person(rules_alone: Classifier) -> None:
    cat = classify(rules_alone, "Kater vermist", "Onze kater Tijger is sinds gisteren vermist in de Kerkstraat.")
    assert cat.category == "other"
    tortoise = classify(rules_alone, "Schildpad weg", "Wie heeft onze schildpad gezien? Hij is uit de tuin.")
    assert tortoise.category == "other"
    person = classify(rules_alone, "Vermist", "Onze buurvrouw (80) is sinds gisteren vermist.")
    assert person.category == "missing_person"


def test_a_power_cut_or_loose_animals_are_other(rules_alone: Classifier) -> None:
    assert classify(rules_alone, "Stroomstoring", "Sinds vanochtend zit de straat zonder stroom.").category == "other"
    assert classify(rules_alone, "Koeien op de dijk", "Er lopen loslopende koeien op de dijk.").category == "other"


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


@pytest.mark.parametrize(
    ("subject", "body", "category"),
    [
        ("Ramkraak", "Vannacht een ramkraak op de fotozaak aan het plein.", "burglary"),
        ("Plofkraak", "De pinautomaat is opgeblazen bij een plofkraak.", "burglary"),
        ("Werkbus", "Mijn werkbus is opengereten en het gereedschap is weg.", "burglary"),
        ("Kettingrukker actief", "Een kettingrukker op een scooter heeft toegeslagen.", "theft"),
        ("Ketting afgepakt", "De ketting werd van haar hals gerukt.", "theft"),
        # entering through an open door without force: police call it insluiping, a theft
        ("Insluiper", "Een insluiper is door de open achterdeur binnengelopen en pakte een tas.", "theft"),
    ],
)
def test_the_crimes_own_compounds(rules_alone: Classifier, subject: str, body: str, category: str) -> None:
    assert classify(rules_alone, subject, body).category == category


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


def test_a_rule_point_weighs_less_in_a_longer_text(with_model: Classifier) -> None:
    blend = {"category_words": 20.0}
    assert rule_point_weight(blend, 10) == 1.0  # a two-line note: the rules' words decide
    assert rule_point_weight(blend, 200) == pytest.approx(0.1)  # a news text: the model's reading of the whole
    short = classify(with_model, "Inbraak", "Vannacht ingebroken aan de Kerkstraat.")
    story = classify(with_model, "Inbraak", "Vannacht ingebroken aan de Kerkstraat. " + "De buurt is geschrokken. " * 60)
    weights = [float(line.split("a rule point weighs ")[1].split()[0])
               for result in (short, story) for line in said(result, "model: category")]
    assert len(weights) == 2 and weights[0] > weights[1]


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
