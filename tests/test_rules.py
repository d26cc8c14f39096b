"""The classification engine on written examples: who, what kind, what about, where, how urgent, why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mail.message import parse_mail
from relay.config import parse_config
from rules import Classification, Classifier, RuleFileError, load_rules
from rules.addresses import parse_plus_address
from tests.mailgen import message

NETWORK = "bin@bin-test.nl"
MEMBERS = {"jan@bewoner.nl": "maaspoort", "els@bewoner.nl": "empel"}


def config_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "network": {"name": "BIN 's-Hertogenbosch", "address": NETWORK, "coordinators": ["kees@bin-test.nl"]},
        "smtp": {"host": "127.0.0.1"},
        "maildir": {"path": "/tmp/unused"},
        "wards": [
            {"slug": "maaspoort", "name": "Maaspoort", "aliases": ["Rietvelden", "De Haren"],
             "postcodes": ["5221", "5222"], "streets": ["Marathonloop", "Van Broeckhovenlaan", "Kerkstraat"],
             "coordinators": ["anna@coord.nl"]},
            {"slug": "empel", "name": "Empel", "aliases": ["Meerwijk"], "postcodes": ["5235"],
             "streets": ["Empelseweg"], "coordinators": ["bert@coord.nl"]},
            {"slug": "west", "name": "West", "aliases": ["Kruiskamp"], "postcodes": ["5223"],
             "streets": ["Schaapsdijk"], "coordinators": []},
        ],
        "partners": [
            {"kind": "police", "name": "Politie Oost-Brabant", "domains": ["politie.nl"], "addresses": []},
            {"kind": "municipality", "name": "Gemeente 's-Hertogenbosch", "domains": ["s-hertogenbosch.nl"],
             "addresses": ["handhaving@extern.nl"]},
        ],
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(parse_config(config_data()).directory(), load_rules())


def classify(classifier: Classifier, subject: str, body: str, sender: str = "Jan <jan@bewoner.nl>",
             **headers: str) -> Classification:
    raw = message(subject, body, sender=sender, to=NETWORK, headers=headers or None)
    return classifier.classify(parse_mail(raw), MEMBERS.get)


# -- source --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sender", "source"),
    [
        ("Wijkagent <m.jansen@politie.nl>", "police"),
        ("Meldkamer <meldkamer@oost-brabant.politie.nl>", "police"),  # subdomain
        ("Politie Oost-Brabant <politie.oostbrabant@gmail.com>", "unknown"),  # display name only
        ("Politie <info@politie.nl.evil.example>", "unknown"),  # lookalike
        ("Handhaving <handhaving@extern.nl>", "municipality"),  # by address
        ("Kees <kees@bin-test.nl>", "coordinator"),
        ("Anna <anna@coord.nl>", "coordinator"),
        ("Jan <jan@bewoner.nl>", "member"),
        ("Iemand <iemand@example.com>", "unknown"),
    ],
)
def test_source_comes_from_the_address_never_the_display_name(
    classifier: Classifier, sender: str, source: str
) -> None:
    assert classify(classifier, "Melding", "Er is iets gebeurd.", sender=sender).source == source


# -- category ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "body", "category"),
    [
        ("Woninginbraak", "Bij de buren is vannacht ingebroken.", "burglary"),
        ("schuurinbraak", "iemand heeft de schuur opengebroken", "burglary"),
        ("Inbraakpoging", "Ze hebben geprobeerd de deur te forceren.", "burglary"),
        ("Autokraak", "Ruit ingeslagen en de tas weg.", "burglary"),
        ("Fietsendiefstal bij het station", "Weer een fiets gestolen.", "theft"),
        ("Pakketje weg", "Pakketdiefstal: het pakket is van de stoep gepikt.", "theft"),
        ("Bushokje vernield", "Alle ruiten zijn vernield.", "vandalism"),
        ("Graffiti", "De muur is bekladderd.", "vandalism"),
        ("Afvaldumping", "Er is weer grofvuil gedumpt bij de container.", "nuisance"),
        ("Babbeltruc", "Een man deed zich voor als monteur en is binnengekomen.", "fraud"),
        ("Verdachte man", "Een man liep aan deurklinken te voelen.", "suspicious"),
        ("Vermist", "Onze buurman (84, dementie) wordt vermist.", "missing_person"),
        ("Brand", "De container staat in brand.", "fire"),
        ("Aanrijding", "Fietser aangereden op de kruising.", "traffic"),
        ("Uitnodiging bewonersavond", "Iedereen is welkom in het wijkcentrum.", "info"),
        ("Hallo", "Weet iemand wanneer de bibliotheek opengaat?", "other"),
    ],
)
def test_categories_with_compounds_and_inflections(
    classifier: Classifier, subject: str, body: str, category: str
) -> None:
    assert classify(classifier, subject, body).category == category


def test_a_disclaimer_full_of_crime_words_does_not_decide(classifier: Classifier) -> None:
    body = (
        "Morgen is er een bewonersavond over veiligheid in het wijkcentrum.\n\n"
        "Dit bericht is uitsluitend bestemd voor de geadresseerde. Onrechtmatig gebruik is strafbaar. "
        "De politie is niet aansprakelijk voor diefstal, inbraak of vernieling van gegevens."
    )
    result = classify(classifier, "Bewonersavond", body, sender="Politie <a@politie.nl>")
    assert result.category == "info"
    assert result.urgency == "low"


def test_quoted_text_of_a_reply_does_not_decide(classifier: Classifier) -> None:
    body = "Mijn fiets is ook gestolen, bij de Marathonloop.\n\nOp 3 nov. 2026 schreef BIN:\n> Brand in de schuur, de brandweer is er.\n"
    assert classify(classifier, "Re: Brand", body).category == "theft"


def test_negation_does_not_count(classifier: Classifier) -> None:
    body = "Bij drie auto's zijn de spiegels afgetrapt, niks gestolen, alleen vernield."
    assert classify(classifier, "auto's", body).category == "vandalism"


# -- wards ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "body", "wards"),
    [
        ("Inbraak", "Ingebroken aan de Marathonloop 12.", ["maaspoort"]),
        ("Inbraak", "Ingebroken aan de van broeckhovenlaan 3a.", ["maaspoort"]),
        ("Inbraak", "Ingebroken bij Kerkstr. 4.", ["maaspoort"]),
        ("Inbraak", "Ingebroken in 5221 AB.", ["maaspoort"]),
        ("Inbraak", "Ingebroken in 5221AB.", ["maaspoort"]),
        ("Inbraak", "Ingebroken, postcode 5235.", ["empel"]),
        ("[Empel] Inbraak", "Ingebroken.", ["empel"]),
        ("Inbraak", "Ingebroken in Rietvelden en in Meerwijk.", ["empel", "maaspoort"]),
        ("Waarschuwing", "Oplichters actief in heel 's-Hertogenbosch.", ["empel", "maaspoort", "west"]),
        ("Waarschuwing", "In alle wijken gaan nepagenten langs.", ["empel", "maaspoort", "west"]),
        ("Inbraak", "Ingebroken, schade 5221 euro.", ["maaspoort"]),  # not a postcode: the member's ward
        ("Inbraak", "Ze liepen richting west.", ["maaspoort"]),  # 'west' is a direction here
        ("Inbraak", "Ingebroken in Kruiskamp, bij West.", ["west"]),
        # a ward's name hyphenated into another name is that other name: a police unit, a region, a canal
        ("Inbraak", "Politie Zeeland-West-Brabant meldt een inbraak.", ["maaspoort"]),
        ("Inbraak", "Ingebroken bij een bedrijf in West-Brabant.", ["maaspoort"]),
    ],
)
def test_wards_from_names_streets_postcodes_tags_and_city_wide(
    classifier: Classifier, subject: str, body: str, wards: list[str]
) -> None:
    assert classify(classifier, subject, body).wards == wards


def test_a_stranger_naming_no_place_has_no_ward(classifier: Classifier) -> None:
    assert classify(classifier, "Inbraak", "Ingebroken.", sender="x@example.com").wards == []


def test_five_thousand_streets_in_one_pass() -> None:
    streets = [f"Teststraat{n}" for n in range(5000)]
    data = config_data()
    data["wards"][2]["streets"] = ["Schaapsdijk", *streets]
    classifier = Classifier(parse_config(data).directory(), load_rules())
    body = "Inbraak aan de Teststraat4321 nummer 5. " * 20
    result = classify(classifier, "Inbraak", body)
    assert result.wards == ["west"]
    assert any("Teststraat4321" in line for line in result.explanation)


# -- kind and commands --------------------------------------------------------

def test_kinds(classifier: Classifier) -> None:
    assert classify(classifier, "Afwezig", "Ik ben er niet", **{"Auto-Submitted": "auto-replied"}).kind == "auto_reply"
    assert classify(classifier, "Automatisch antwoord: melding", "Ik ben er niet").kind == "auto_reply"
    assert classify(classifier, "[Maaspoort] Inbraak", "terug", **{"X-Loop": NETWORK}).kind == "loop"
    newsletter = classify(classifier, "Nieuwsbrief", "Tips tegen inbraak", sender="a@politie.nl",
                          Precedence="bulk")
    assert newsletter.kind == "report"  # a partner's newsletter is not an auto-reply
    list_post = classify(classifier, "Inbraak Kastanjelaan", "Vannacht is bij ons ingebroken.",
                         sender="iemand@example.net", Precedence="bulk", **{"List-Id": "Wijklijst <w.example.net>"})
    assert list_post.kind == "report"  # a mailing list's post is someone's words, not a responder's
    vacation = classify(classifier, "Away from my mail", "I am away until Monday.", sender="iemand@example.net",
                        Precedence="bulk")
    assert vacation.kind == "auto_reply"


@pytest.mark.parametrize(
    ("subject", "body", "command", "argument"),
    [
        ("AANMELDEN Maaspoort", "", "subscribe", "Maaspoort"),
        ("aanmelden 5221 AB", "", "subscribe", "5221 AB"),
        ("Subscribe Empel", "", "subscribe", "Empel"),
        ("", "AFMELDEN", "unsubscribe", None),
        ("unsubscribe", "", "unsubscribe", None),
        ("HELP", "", "help", None),
        ("Hulp", "", "help", None),
        ("ALLEEN SPOED", "", "preferences", None),
        ("CATEGORIEEN inbraak, vermissing", "", "preferences", "inbraak, vermissing"),
    ],
)
def test_member_commands(classifier: Classifier, subject: str, body: str, command: str, argument: str | None) -> None:
    result = classify(classifier, subject, body)
    assert (result.kind, result.command, result.argument) == ("command", command, argument)


def test_a_cry_for_help_is_a_report(classifier: Classifier) -> None:
    assert classify(classifier, "Help! er is ingebroken", "Bij ons in de schuur.").kind == "report"


def test_approval_replies_and_plus_addresses(classifier: Classifier) -> None:
    by_subject = classify(classifier, "Re: [BIN-abcdefghijklmnop] Inbraak", "AKKOORD", sender="anna@coord.nl")
    assert (by_subject.command, by_subject.token) == ("decision", "abcdefghijklmnop")
    raw = message("Re: Inbraak", "ok", sender="anna@coord.nl", to="bin+qrstuvwxyz234567@bin-test.nl")
    by_address = classifier.classify(parse_mail(raw), MEMBERS.get)
    assert (by_address.command, by_address.token) == ("decision", "qrstuvwxyz234567")
    assert parse_plus_address("BIN+c-abc@BIN-TEST.NL", NETWORK) == ("confirm", "abc")
    assert parse_plus_address("bin+a-tag@bin-test.nl", NETWORK) == ("alert", "tag")
    assert parse_plus_address("bin+bounce-42@bin-test.nl", NETWORK) == ("bounce", "42")
    assert parse_plus_address("bin+x@elders.nl", NETWORK) is None


def test_resolved_only_from_coordinators_and_partners(classifier: Classifier) -> None:
    to_alert = "bin+a-abcdefghijklmnop@bin-test.nl"
    raw = message("Re: Vermist", "AFGEROND hij is gevonden", sender="anna@coord.nl", to=to_alert)
    assert classifier.classify(parse_mail(raw), MEMBERS.get).command == "resolved"
    raw = message("Re: Vermist", "AFGEROND hij is gevonden", sender="jan@bewoner.nl", to=to_alert)
    member = classifier.classify(parse_mail(raw), MEMBERS.get)
    assert (member.kind, member.token) == ("report", "abcdefghijklmnop")


# -- urgency and explanation ----------------------------------------------------

@pytest.mark.parametrize(
    ("subject", "body", "urgency"),
    [
        ("Vermist", "Op dit moment wordt een meisje van 6 vermist.", "urgent"),
        ("Brand", "De schuur staat nu in brand!", "urgent"),
        ("Inbrekers", "Zojuist twee mannen op de vlucht na een inbraak.", "urgent"),
        ("Inbraak", "Vorige week is bij ons ingebroken.", "normal"),
        ("Bewonersavond", "Uitnodiging voor de bewonersavond.", "low"),
    ],
)
def test_urgency(classifier: Classifier, subject: str, body: str, urgency: str) -> None:
    assert classify(classifier, subject, body).urgency == urgency


def test_every_decision_is_explained(classifier: Classifier) -> None:
    result = classify(classifier, "Woninginbraak", "Ingebroken aan de Marathonloop.",
                      sender="Politie <a@politie.nl>")
    text = "\n".join(result.explanation)
    assert "source police" in text and "politie.nl" in text
    assert "category burglary" in text and "inbraak" in text
    assert "ward maaspoort" in text and "Marathonloop" in text
    assert "urgency normal" in text
    assert result.as_json("x.eml") == {
        "file": "x.eml", "source": "police", "kind": "report", "category": "burglary",
        "wards": ["maaspoort"], "urgency": "normal", "explanation": result.explanation,
    }


# -- rule files ------------------------------------------------------------------

def test_an_operator_file_extends_and_removes(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[category.vandalism]\nstrong = ["omgekieperd"]\nremove = ["graffiti"]\n')
    classifier = Classifier(parse_config(config_data()).directory(), load_rules(rules_file))
    assert classify(classifier, "Tuin", "Alle kabouters omgekieperd.").category == "vandalism"
    removed = classify(classifier, "Melding", "Er is graffiti gespoten.")  # neither rules nor model see it
    assert removed.category != "vandalism"
    assert not any("graffiti" in line for line in removed.explanation)


@pytest.mark.parametrize(
    ("content", "rule", "problem"),
    [
        ("[category.burglary\n", "(syntax)", "Expected"),
        ('[category.diefstal]\nstrong = ["x"]\n', "category.diefstal", "unknown category"),
        ('[category.theft]\nstrong = "gestolen"\n', "category.theft.strong", "list of non-empty strings"),
        ('[category.theft]\nstrong = [""]\n', "category.theft.strong", "list of non-empty strings"),
        ('[category.theft]\nsterk = ["x"]\n', "category.theft.sterk", "unknown key"),
        ('[member_comands.subscribe]\nnl = ["aanmelden"]\n', "member_comands", "unknown key"),
        ('[member_commands.subscibe]\nnl = ["x"]\n', "member_commands.subscibe", "unknown command"),
        ('[member_commands.help]\nalone = "ja"\n', "member_commands.help.alone", "true or false"),
        ('dislaimer_starts = ["x"]\n', "dislaimer_starts", "unknown key"),
        ('[cues]\nurgnt = ["nu"]\n', "cues.urgnt", "unknown key"),
        ('[safeguards.appearance]\nfr = ["x"]\n', "safeguards.appearance.fr", "unknown key"),
        ("threshold = -1\n", "threshold", "positive number"),
        ('[category_default]\nfire = "meteen"\n', "category_default.fire", "must be one of"),
    ],
)
def test_a_broken_rule_file_names_file_rule_and_problem(tmp_path: Path, content: str, rule: str, problem: str) -> None:
    rules_file = tmp_path / "mine.toml"
    rules_file.write_text(content)
    with pytest.raises(RuleFileError) as caught:
        load_rules(rules_file)
    message_text = str(caught.value)
    assert message_text.startswith(f"{rules_file}: {rule}: ")
    assert problem in message_text
    assert "\n" not in message_text


def test_a_missing_rule_file(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_category_labels_exist_in_both_languages() -> None:
    rules = load_rules()
    for category in rules.categories:
        assert rules.label(category, "nl") and rules.label(category, "en")


# -- one reading of a person's own words (mail.quotes) ----------------------------------


def test_a_bottom_posted_command_is_read_below_the_quote(classifier: Classifier) -> None:
    """The classifier and the membership use case read the same words: the new text, not the quote above it."""
    body = (
        "Op ma 5 okt. 2026 om 07:12 schreef BIN 's-Hertogenbosch <bin@bin-denbosch.nl>:\n"
        "> Welkom bij het BIN van Maaspoort.\n"
        "> Wilt u geen berichten meer? Stuur AFMELDEN.\n\n"
        "AFMELDEN\n"
    )
    result = classify(classifier, "Re: Welkom bij het BIN", body)
    assert (result.kind, result.command) == ("command", "unsubscribe"), result.explanation


def test_a_reply_whose_attribution_wraps_is_classified_on_its_own_words(classifier: Classifier) -> None:
    """Gmail wraps a long attribution over two lines; the quoted alert below it must not count."""
    body = (
        "Er loopt nu een man met een capuchon langs alle voordeuren en hij voelt aan de klinken.\n\n"
        "Op ma 5 okt. 2026 om 07:12 schreef BIN 's-Hertogenbosch Maaspoort <\n"
        "bin+a-k7m2q4x9a3b5c6d7@bin-denbosch.nl>:\n\n"
        "> Vannacht is ingebroken in een woning aan de Marathonloop. De inbrekers\n"
        "> forceerden de achterdeur; er is ingebroken en sieraden zijn gestolen.\n"
    )
    result = classify(classifier, "Re: Inbraak Marathonloop", body)
    assert result.category == "suspicious", result.explanation
