"""Reading the command in a coordinator's answer to an approval request.

Pure text: ``mail.quotes.new_text`` finds what the coordinator newly wrote,
``parse_reply`` reads the command in it; the ward names it names are resolved
by ``rules.places``.

The rule for safety: approving must be unambiguous. A close typo of a command
word ("AKOORD", "Oké"), two different decisions, an approval with a condition
("Akkoord, maar ...") or a command below other text is reported as a problem
(in the language of the words the coordinator used), so the approvals layer
asks again instead of guessing.

Corrections of the rules' judgement (``SPOED``/``NIET SPOED``, ``CATEGORIE naam``)
are lines of their own, like ``WIJK``: they are read with any decision, and
alone they are a correction without a decision (the approvals layer notes it
and keeps the item pending). The category name is kept as written; the rule
set resolves it (``category_problem`` words the answer when it cannot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mail.quotes import new_text, strip_edges
from mail.text import fold, split_names
from rules.loader import RuleSet

# What the first word of an answer asks for (the approvals layer turns it into a Decision).
Verb = Literal["approve", "reject", "edit"]
# What a SPOED / NIET SPOED line sets the urgency to.
Urgency = Literal["urgent", "normal"]

# Command words (accent- and case-folded) and the decision each stands for.
DECISION_WORDS: dict[str, Verb] = {
    "akkoord": "approve", "ok": "approve", "ja": "approve", "approve": "approve", "yes": "approve",
    "afwijzen": "reject", "nee": "reject", "reject": "reject", "no": "reject",
    "wijzig": "edit", "edit": "edit",
}
WARD_WORDS = frozenset({"wijk", "wijken", "ward", "wards"})
PARTNER_WORDS = {"politie": "police", "police": "police", "gemeente": "municipality", "municipality": "municipality"}
URGENCY_WORDS = frozenset({"spoed", "urgent"})
URGENCY_NEGATIONS = frozenset({"niet", "geen", "not", "non"})
CATEGORY_WORDS = frozenset({"categorie", "category"})
CORRECTION_WORDS = URGENCY_WORDS | CATEGORY_WORDS
ENGLISH_WORDS = frozenset({"approve", "yes", "reject", "no", "edit", "ward", "wards", "police", "municipality",
                           "urgent", "not", "non", "category"})
ALL_COMMAND_WORDS = frozenset(DECISION_WORDS) | WARD_WORDS | frozenset(PARTNER_WORDS) | CORRECTION_WORDS
# A sign-off is looked for this many lines up from the end of an edited text (closing + name + contact lines).
SIGN_OFF_LINES = 8
LIST_JOINERS = frozenset({"en", "and", "&", "+"})

# ---------------------------------------------------------------- reading the command


@dataclass
class ReplyCommand:
    decision: Verb | None = None
    reason: str | None = None
    edited_text: str | None = None
    wards: list[str] = field(default_factory=list)
    partners: list[str] = field(default_factory=list)
    urgency: Urgency | None = None  # SPOED -> "urgent", NIET SPOED -> "normal"
    category: str | None = None  # the CATEGORIE name as written ("fraude"), resolved by the rule set
    problems: list[str] = field(default_factory=list)

    @property
    def corrects(self) -> bool:
        """Whether the answer corrects the rules' judgement (urgency or category)."""
        return self.urgency is not None or self.category is not None


_SALUTATION = re.compile(
    r"^\s*(?:hoi|hallo|hai|hey|hi|hello|dag|beste|lieve|dear|goedemorgen|goedemiddag|goedenavond|morning)"
    r"(?:\s+[^\s,!.:]+){0,3}\s*[,!.:]?\s*$",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"^\s*(?:(?:(?:met\s+)?(?:vriendelijke|hartelijke|beste|warme|zonnige)?\s*groet(?:en|jes)?|mvg|m\.v\.g\.?|gr\.?"
    r"|grt\.?|(?:kind|best|warm)\s+regards|regards|cheers)(?:[\s,]+[^\s,]+){0,2}"
    r"|best|thanks|bedankt|dank\s+je(?:\s+wel)?)\s*[,.!]?\s*$",
    re.IGNORECASE,
)



_LEADING_WORD = re.compile(r"^[\s*_\"'“”‘’„«»(\[]*([^\W\d_]+)(.*)$", re.DOTALL)


def _split_command(line: str) -> tuple[str, str, str]:
    """(folded first word, the word as written, rest of the line without leading punctuation)."""
    match = _LEADING_WORD.match(line)
    if match is None:
        return "", "", line.strip()
    rest = match.group(2).lstrip(" \t*_\"'“”‘’»)]:;,.!?-–—").strip()
    return fold(match.group(1)), match.group(1), rest


def _only_punctuation(text: str) -> bool:
    return not any(char.isalnum() for char in text)


# A whole line of SPOED, URGENT, NIET SPOED, GEEN SPOED, NOT URGENT, "non-urgent" (folded), with stray markup.
_URGENCY_LINE = re.compile(
    r"^[\s*_\"'“”‘’„«»(\[]*(?:(niet|geen|not|non)[\s-]+)?(spoed|urgent)[\s*_\"'“”‘’»)\].!:]*$")


def _urgency_line(line: str) -> Urgency | None:
    """ "urgent" for a SPOED/URGENT line, "normal" for NIET SPOED/NOT URGENT, None for any other line."""
    match = _URGENCY_LINE.match(fold(line))
    if match is None:
        return None
    return "normal" if match.group(1) else "urgent"


def _partner_line(line: str) -> list[str] | None:
    """["police", ...] for a line of partner words only ("POLITIE", "Politie en gemeente."), else None."""
    words = [fold(word) for word in re.split(r"[\s,;/.!:]+", line) if word]
    if not words or not any(word in PARTNER_WORDS for word in words):
        return None
    if not all(word in PARTNER_WORDS or word in LIST_JOINERS for word in words):
        return None
    return [PARTNER_WORDS[word] for word in words if word in PARTNER_WORDS]




@dataclass
class _Line:
    """One line of the reply, as the parser sees it."""

    text: str
    word: str = ""
    written: str = ""
    rest: str = ""

    @classmethod
    def of(cls, text: str) -> _Line:
        word, written, rest = _split_command(text)
        return cls(text, word, written, rest)

    @property
    def blank(self) -> bool:
        return not self.text.strip()

    @property
    def decision(self) -> Verb | None:
        return DECISION_WORDS.get(self.word)

    @property
    def is_ward(self) -> bool:
        return self.word in WARD_WORDS

    @property
    def partners(self) -> list[str] | None:
        return _partner_line(self.text)

    @property
    def urgency(self) -> Urgency | None:
        return _urgency_line(self.text)

    @property
    def is_category(self) -> bool:
        return self.word in CATEGORY_WORDS

    @property
    def is_instruction(self) -> bool:
        """A WIJK, partner or correction line: it adds to the decision, never to a reason or new text."""
        return self.is_ward or self.is_category or self.urgency is not None or self.partners is not None

    @property
    def label(self) -> str:
        """The command as problems name it: "WIJK", "NIET SPOED"."""
        match = _URGENCY_LINE.match(fold(self.text))
        if match is not None:
            return " ".join(word for word in match.groups() if word).upper()
        return self.written.upper()

    @property
    def only_decision(self) -> bool:
        return self.decision is not None and _only_punctuation(self.rest)


# "No problem", "Nee, geen bezwaar": a no-word that agrees.
_AGREEING_NO = re.compile(
    r"^(?:(?:geen|no|not\s+a|niet\s+echt\s+een)\s+)?(?:probleem|problem|problemo|bezwaar|bezwaren|objections?"
    r"|worries|issue|issues|punt|prob)\b", re.IGNORECASE)
# Words around a partner name that do not change what it says ("Nee, alleen naar de politie").
_FILLER = frozenset({"alleen", "wel", "naar", "de", "het", "maar", "enkel", "only", "to", "the", "but", "just"})

# Words that make "OK" an acknowledgement rather than a decision ("Ok, ik kijk er morgen naar").
_DEFERRAL = re.compile(
    r"\b(?:kijk|kijken|bekijk|bekijken|nakijken|uitzoeken|later|morgen|straks|vanavond|navragen|overleg|overleggen"
    r"|check|checking|look|looking|tomorrow|tonight|get\s+back|will\s+see|let\s+you\s+know)\b",
    re.IGNORECASE,
)
# Words that turn an approval into a conditional one ("Akkoord, maar zonder het huisnummer").
_CONDITION = re.compile(r"\b(?:maar|behalve|zonder|alleen|mits|tenzij|but|except|without|only|unless|if)\b",
                        re.IGNORECASE)


_ENGLISH_HINTS = frozenset({"i", "ill", "im", "the", "you", "will", "please", "thanks", "thank", "check", "tomorrow",
                            "ahead", "but", "only", "this", "that", "with", "for", "just", "later", "first"})


def _folded_words(text: str) -> list[str]:
    return [fold(word) for word in re.findall(r"[^\W\d_]+", text.replace("'", "").replace("’", ""))]


def _english(text: str) -> bool:
    return any(word in _ENGLISH_HINTS for word in _folded_words(text))


def _dutch(word: str) -> bool:
    return word not in ENGLISH_WORDS


def _message(word: str, dutch: str, english: str) -> str:
    return dutch if _dutch(word) else english


def _damerau(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance, stopping early above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            cost = char_a != char_b
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _squeezed(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", word)


# Spellings of the short words that are not the word itself: asked about, never taken as it.
_SHORT_VARIANTS = {
    "oke": "ok", "okay": "ok", "okey": "ok", "okee": "ok", "okido": "ok", "oki": "ok",
    "yep": "yes", "yeah": "yes", "yup": "yes", "jep": "ja", "nope": "no", "nah": "no",
}


def near_command(word: str) -> str | None:
    """The command word that ``word`` looks like a slip of ("AKOORD" -> "akkoord"), if any."""
    if not word or word in ALL_COMMAND_WORDS:
        return None
    if word in _SHORT_VARIANTS:
        return _SHORT_VARIANTS[word]
    for command in sorted(ALL_COMMAND_WORDS, key=len, reverse=True):
        if len(command) <= 3:
            # Only stretched forms ("jaaa", "okk"), so ordinary words ("op", "na", "nou") are not commands.
            if _squeezed(word) == _squeezed(command):
                return command
            continue
        if len(word) < len(command) - (2 if len(command) >= 7 else 1 if len(command) >= 6 else 0):
            continue  # "wij" is a word, not a slip of "wijk"
        limit = 2 if len(command) >= 7 else 1
        if (word.startswith(command) and len(word) <= len(command) + 3) or _damerau(word, command, limit) <= limit:
            return command
    return None


class _Parser:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.result = ReplyCommand()
        self.first_word = ""

    def problem(self, word: str, dutch: str, english: str) -> None:
        text = _message(word, dutch, english)
        if text not in self.result.problems:
            self.result.problems.append(text)

    def instruction(self, line: _Line) -> None:
        if line.is_ward:
            names = split_names(line.rest)
            if not names:
                self.problem(line.word, f"{line.written.upper()} zonder naam van een wijk",
                             f"{line.written.upper()} without a ward name")
            self.result.wards += [name for name in names if name not in self.result.wards]
        elif line.urgency is not None:
            self._urgency(line, line.urgency)
        elif line.is_category:
            self._category(line)
        else:
            for partner in line.partners or []:
                if partner not in self.result.partners:
                    self.result.partners.append(partner)

    def _urgency(self, line: _Line, urgency: Urgency) -> None:
        if self.result.urgency not in (None, urgency):
            self.problem(line.word, "twee verschillende urgenties: SPOED of NIET SPOED?",
                         "two urgencies: URGENT or NOT URGENT?")
        self.result.urgency = urgency

    def _category(self, line: _Line) -> None:
        name = line.rest.strip(" \t.!?:\"“”*")
        if not name:
            self.problem(line.word, f"{line.label} zonder naam van een categorie",
                         f"{line.label} without a category name")
        elif self.result.category is not None and fold(self.result.category) != fold(name):
            self.problem(line.word, f"twee verschillende categorieën: {self.result.category} of {name}?",
                         f"two categories: {self.result.category} or {name}?")
        else:
            self.result.category = name

    def _slip_of_correction(self, line: _Line) -> None:
        """ "SPOEDD", "NIET SPOEED", "CATEGRIE fraude" under a decision: asked about, never silently ignored."""
        words = re.findall(r"[^\W\d_]+", line.text)
        if not 1 <= len(words) <= 4:
            return
        negated = fold(words[0]) in URGENCY_NEGATIONS and len(words) >= 2
        written = words[1] if negated else words[0]
        if fold(written) in URGENCY_WORDS:  # "Spoed graag": the urgency word with more words
            named = " ".join(words[: 2 if negated else 1]).upper()
            said = line.text.strip()[:80]
            self.problem(fold(written), f"'{said}': zet {named} alleen op een eigen regel",
                         f"'{said}': put {named} alone on a line of its own")
            return
        near = near_command(fold(written))
        if near in CORRECTION_WORDS:
            self.problem(near, f"onbekend woord '{written}' (bedoelt u {near.upper()}?)",
                         f"unknown word '{written}' (did you mean {near.upper()}?)")

    def parse(self) -> ReplyCommand:
        start = self._first_meaningful()
        index = start
        # WIJK/POLITIE lines may come before the decision line.
        while index < len(self.lines) and (self.lines[index].blank or self.lines[index].is_instruction):
            if not self.lines[index].blank:
                self.instruction(self.lines[index])
            index += 1
        if index >= len(self.lines):
            return self.result
        head = self.lines[index]
        if head.decision is None:
            self._no_decision(head, self.lines[index + 1 :])
            return self.result
        self.result.decision = head.decision
        # The first word sets the language of the problems; "OK" is both, so its line decides.
        self.first_word = "yes" if head.word == "ok" and _english(head.rest) else head.word
        body = self.lines[index + 1 :]
        if head.decision == "approve":
            self._approve_line(head)
            self._after_approve(body)
        elif head.decision == "reject":
            self._conflict(_Line.of(head.rest))  # "Nee, akkoord" says two things
            self._idiom(head)
            self._reject_to_partner(head)
            self._after_reject(head, body)
        else:
            self._after_edit(head, body)
        return self.result

    def _first_meaningful(self) -> int:
        """Index of the first line that is not blank and not a salutation ("Hoi Kees,")."""
        for index, line in enumerate(self.lines):
            if line.blank:
                continue
            if _SALUTATION.match(line.text) and line.decision is None and not line.is_instruction:
                continue
            return index
        return len(self.lines)

    def _no_decision(self, head: _Line, rest: list[_Line]) -> None:
        near = near_command(head.word)
        if near is not None:
            self.problem(near, f"onbekend woord '{head.written}' (bedoelt u {near.upper()}?)",
                         f"unknown word '{head.written}' (did you mean {near.upper()}?)")
            return
        # A command below other text is not obeyed (the SPEC reads the first line), but named.
        later = next((line for line in rest if line.only_decision or line.is_instruction), None)
        if later is not None:
            self.problem(later.word, f"{later.label} moet op de eerste regel staan",
                         f"{later.label} must be on the first line")

    def _conflict(self, line: _Line) -> None:
        if line.decision is not None and line.decision != self.result.decision:
            self.problem(self.first_word, "twee verschillende besluiten", "two decisions")

    def _approve_line(self, head: _Line) -> None:
        """ "Ja, prima" approves; "Ja, nee", "Akkoord, maar zonder huisnummer" or "OK en politie" is asked about."""
        self._conflict(_Line.of(head.rest))
        if not self._instruction_on_decision_line(head):
            self._condition(head.text)

    def _instruction_on_decision_line(self, head: _Line) -> bool:
        """WIJK/POLITIE/SPOED/CATEGORIE must be on a line of their own; on the decision line they are asked
        about, not guessed."""
        named = _instruction_named(_folded_words(head.rest))
        if named is None:
            return False
        self.problem(self.first_word, f"zet {named} op een eigen regel onder {head.written.upper()}",
                     f"put {named} on a line of its own below {head.written.upper()}")
        return True

    def _reject_to_partner(self, head: _Line) -> None:
        """ "Nee, alleen politie" may mean "not the ward, but the police": asked about, not guessed."""
        words = _folded_words(head.rest)
        partners = [word for word in words if word in PARTNER_WORDS]
        if partners and all(word in PARTNER_WORDS or word in LIST_JOINERS or word in _FILLER for word in words):
            self.problem(self.first_word,
                         f"bedoelt u {partners[0].upper()} zonder de wijk? Zet dan {head.written.upper()} "
                         f"en {partners[0].upper()} elk op een eigen regel",
                         f"do you mean {partners[0].upper()} but not the ward? Then put {head.written.upper()} "
                         f"and {partners[0].upper()} each on a line of its own")

    def _idiom(self, head: _Line) -> None:
        """ "No problem", "Nee, geen bezwaar" start with a no-word but agree: asked about, never a rejection."""
        if _AGREEING_NO.match(head.rest):
            said = head.text.strip()[:80]
            self.problem(self.first_word, f"'{said}' is niet duidelijk: AKKOORD of AFWIJZEN?",
                         f"'{said}' is unclear: APPROVE or REJECT?")

    def _condition(self, said: str) -> None:
        if _DEFERRAL.search(said):
            said = said.strip()[:80]
            self.problem(self.first_word, f"'{said}' is nog geen besluit: AKKOORD of AFWIJZEN?",
                         f"'{said}' is not a decision yet: APPROVE or REJECT?")
        elif _CONDITION.search(said):
            said = said.strip()[:80]
            self.problem(self.first_word, f"'{said}' is akkoord met een voorwaarde; stuur WIJZIG met de nieuwe tekst",
                         f"'{said}' approves with a condition; send EDIT with the new text")

    def _after_approve(self, body: list[_Line]) -> None:
        first_paragraph = True
        for line in body:
            if line.is_instruction:
                self.instruction(line)
                continue
            self._slip_of_correction(line)
            first_paragraph = first_paragraph and not line.blank
            if first_paragraph:
                self._condition(line.text)  # "AKKOORD\nmaar zonder het huisnummer"
            # Approving must be unambiguous: any later line starting with another decision is a conflict.
            self._conflict(line)

    def _after_reject(self, head: _Line, body: list[_Line]) -> None:
        reason: list[str] = [head.rest] if head.rest else []
        in_reason = True
        for line in body:
            if line.is_instruction:
                self.instruction(line)
                continue
            if line.only_decision:
                self._conflict(line)
                continue
            if line.blank:
                in_reason = not reason  # the reason is the first paragraph that has text
                continue
            if in_reason and not _CLOSING.match(line.text):
                reason.append(line.text.strip())
            else:
                in_reason = False
        self.result.reason = " ".join(reason).strip() or None

    def _after_edit(self, head: _Line, body: list[_Line]) -> None:
        same_line = _Line.of(head.rest)
        if same_line.is_instruction:
            # "WIJZIG WIJK Empel" changes the wards, not the text: never publish "WIJK Empel" as the alert.
            self.instruction(same_line)
            self.problem(head.word, f"{head.written.upper()} is voor een nieuwe tekst; zet "
                                    f"{same_line.label} op een eigen regel onder AKKOORD",
                         f"{head.written.upper()} is for a new text; put {same_line.label} "
                         "on a line of its own below APPROVE")
            return
        kept = [head.rest] if head.rest else []
        for line in body:
            if line.is_instruction:
                self.instruction(line)
            else:
                kept.append(line.text)
        kept = _without_contact_block(_without_closing(strip_edges(kept)))
        self.result.edited_text = "\n".join(kept) if kept else None
        if self.result.edited_text is None:
            self.problem(head.word, f"{head.written.upper()} zonder nieuwe tekst",
                         f"{head.written.upper()} without new text")


def _instruction_named(words: list[str]) -> str | None:
    """The first instruction word among ``words``, as a problem names it ("WIJK", "NIET SPOED")."""
    for index, word in enumerate(words):
        if word in WARD_WORDS or word in PARTNER_WORDS or word in CATEGORY_WORDS:
            return word.upper()
        if word in URGENCY_WORDS:
            negated = index > 0 and words[index - 1] in URGENCY_NEGATIONS
            return f"{words[index - 1]} {word}".upper() if negated else word.upper()
    return None


def _without_closing(lines: list[str]) -> list[str]:
    """Without a sign-off ("Met groet,\\nAnna\\nCoördinator\\n06-...") in the last paragraph.

    The lines under the sign-off (name, role, phone, address) would otherwise be published with the alert.
    """
    for index in range(len(lines) - 1, max(-1, len(lines) - SIGN_OFF_LINES - 1), -1):
        if not lines[index].strip():
            break
        if _CLOSING.match(lines[index]):
            return strip_edges(lines[:index])
    return lines


_NAME_LINE = re.compile(r"^\s*[^\W\d_][^\W\d_.'’-]*(?:[\s.'’-]+[^\W\d_]+){0,3}\.?\s*$")
_CONTACT_LINE = re.compile(
    r"^\s*(?:(?:tel|telefoon|phone|mobiel|mobile|m|t|e|e-?mail)\.?\s*:?\s*)?"
    r"(?:\+?[\d][\d\s()./-]{7,}\d|[^\s@]+@[^\s@]+\.[a-z]{2,})\s*$",
    re.IGNORECASE,
)


def _without_contact_block(lines: list[str]) -> list[str]:
    """Without a last paragraph that is a signature without sign-off ("Anna de Vries\\n06-12345678").

    Only a short paragraph that starts with a name and holds a bare phone number or address is taken for
    one: the coordinator's contact details must not reach every member.
    """
    blank = max((index for index, line in enumerate(lines) if not line.strip()), default=-1)
    block = lines[blank + 1 :]
    if blank < 1 or not block or len(block) > SIGN_OFF_LINES:
        return lines
    if _NAME_LINE.match(block[0]) and any(_CONTACT_LINE.match(line) for line in block[1:]):
        return strip_edges(lines[:blank])
    return lines


def parse_reply(text: str) -> ReplyCommand:
    """The command in a reply's new text (quotes and signatures are cut here too); never raises."""
    lines = [_Line.of(line) for line in new_text(text).split("\n")]
    return _Parser(lines).parse()


# ---------------------------------------------------------------- category names


def category_problem(rules: RuleSet, written: str, language: str) -> str | None:
    """What to answer when no category is called ``written`` (None when one is): the names that do work,
    and the one it looks like a slip of."""
    if rules.category_named(written) is not None:
        return None
    names = [rules.name(category, language) for category in rules.categories]
    near = _nearest_name(rules, written)
    if language == "nl":
        hint = f" (bedoelt u {near}?)" if near else ""
        return f"onbekende categorie '{written}'{hint}; bekende categorieën: {', '.join(names)}"
    hint = f" (did you mean {near}?)" if near else ""
    return f"unknown category '{written}'{hint}; known categories: {', '.join(names)}"


def _nearest_name(rules: RuleSet, written: str) -> str | None:
    """The Dutch or English category name ``written`` is one or two typing slips from, if any."""
    key = fold(written).strip()
    for category in rules.categories.values():
        for name in (*category.names_nl, *category.names_en):
            limit = 2 if len(name) >= 7 else 1
            if len(name) >= 4 and _damerau(key, fold(name), limit) <= limit:
                return name
    return None
