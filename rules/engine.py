"""The classifier: who sent it, what kind of message, what about, where, how urgent.

Every decision carries its explanation (which rule matched which words), so
the coordinator and the operator can see why and change the rule files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mail.message import ParsedMail
from mail.quotes import new_text, own_text
from mail.text import clean_subject, fold, is_reply_subject
from rules.addresses import Tag, find_tag
from rules.automatic import loop_reason, set_aside_reason
from rules.bounces import detect_bounce
from rules.commands import CommandReader, first_line
from rules.context import Readings, Scope, not_now, read, word_count
from rules.directory import Directory
from rules.loader import RuleSet, Term
from rules.matcher import Hit, TermMatcher, word_around
from rules.model import (
    Features,
    TextModel,
    explain,
    features_of,
    weigh_category,
    weigh_urgency,
    with_category,
)
from rules.places import Places
from rules.sender import Assurance, SenderIdentity, identify
from rules.vocabulary import PARTNERS, Source

MemberLookup = Callable[[str], str | None]

# Who may close a sent alert with AFGEROND (a partner's closing goes through the coordinators).
AUTHORITATIVE_SOURCES = (*PARTNERS, Source.COORDINATOR)


@dataclass(frozen=True)
class Classification:
    source: str
    kind: str
    category: str | None
    wards: list[str]
    urgency: str | None
    explanation: list[str]
    sender: str | None = None
    partner: str | None = None
    command: str | None = None
    argument: str | None = None
    token: str | None = None
    identity: SenderIdentity | None = None
    # What an unbelieved sender claimed to be ("police", "coordinator", ...): the request warns about it.
    claimed: str | None = None

    def as_json(self, file: str) -> dict[str, Any]:
        return {
            "file": file,
            "source": self.source,
            "kind": self.kind,
            "category": self.category,
            "wards": list(self.wards),
            "urgency": self.urgency,
            "explanation": list(self.explanation),
        }


# Log-probability per point of a term the operator's rule file added: the operator's word outweighs the model.
OPERATOR_POINT = 1.0


@dataclass
class CategoryScores:
    points: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    operator: dict[str, float] = field(default_factory=dict)  # the part of the points from the operator's terms

    def add(self, category: str, points: float, reason: str, by_operator: bool = False) -> None:
        self.points[category] = self.points.get(category, 0.0) + points
        self.reasons.setdefault(category, []).append(reason)
        if by_operator:
            self.operator[category] = self.operator.get(category, 0.0) + points


@dataclass(frozen=True)
class _CueHit:
    kind: str  # "urgent" | "calm" | "outcome" | "low"
    term: Term


class Classifier:
    """Built once per configuration and rule set; ``classify`` is pure."""

    def __init__(self, directory: Directory, rules: RuleSet) -> None:
        self.directory = directory
        self.rules = rules
        self.network = directory.address.lower()
        self.places = Places(directory, rules)
        self.commands = CommandReader(rules)
        self._categories = self._category_matcher()
        self._neutral: TermMatcher[Term] = TermMatcher()
        for term in rules.neutral:
            self._neutral.add(term.text, term.whole_word, term)
        self._neutral.finish()
        self._purpose: TermMatcher[Term] = TermMatcher()
        for term in rules.purpose:
            self._purpose.add(term.text, term.whole_word, term)
        self._purpose.finish()
        self._cues = self._cue_matcher()

    # -- building -------------------------------------------------------------
    def _category_matcher(self) -> TermMatcher[tuple[str, Term, bool]]:
        matcher: TermMatcher[tuple[str, Term, bool]] = TermMatcher()
        for category in self.rules.categories.values():
            for term in category.terms:
                matcher.add(term.text, term.whole_word, (category.id, term, False))
            for term in category.against:
                matcher.add(term.text, term.whole_word, (category.id, term, True))
        return matcher.finish()

    def _cue_matcher(self) -> TermMatcher[_CueHit]:
        matcher: TermMatcher[_CueHit] = TermMatcher()
        for kind, terms in (("urgent", self.rules.urgent_cues), ("calm", self.rules.calm_cues),
                            ("outcome", self.rules.outcome_cues),
                            ("low", self.rules.low_cues)):
            for term in terms:
                matcher.add(term.text, term.whole_word, _CueHit(kind, term))
        return matcher.finish()

    # -- classify -------------------------------------------------------------
    def classify(self, mail: ParsedMail, members: MemberLookup) -> Classification:
        explanation: list[str] = []
        identity = identify(mail, self.directory.trust)
        sender = identity.address
        source, partner, claimed = self._source(identity, members, explanation)
        tag = find_tag(mail, self.network)
        kind, command, argument = self._kind(mail, source, tag, explanation)
        token = tag.token if tag is not None else None
        if kind != "report":
            return Classification(source, kind, None, [], None, explanation, sender, partner,
                                  command, argument, token, identity, claimed)
        subject = clean_subject(mail.subject)
        text = own_text(mail.text, mail.subject, self.rules.disclaimer_starts)
        # A reply's subject is the earlier message's: it counts less than its new text.
        subject_factor = 1.0 if is_reply_subject(mail.subject) else 2.0
        category, urgency = self.judge(subject, text, subject_factor, explanation)
        wards = self._wards(subject, text, source, sender, members, explanation)
        return Classification(source, "report", category, wards, urgency, explanation, sender,
                              partner, None, None, token, identity, claimed)

    # -- who ------------------------------------------------------------------
    def _source(self, identity: SenderIdentity, members: MemberLookup,
                explanation: list[str]) -> tuple[str, str | None, str | None]:
        """(source, partner name, what an unbelieved sender claimed to be). Roles, never addresses."""
        sender = identity.address
        how = f" ({identity.assurance}: {identity.reasons[0]})" if identity.reasons else f" ({identity.assurance})"
        if sender is None:
            explanation.append(f"source unknown: {identity.reasons[0] if identity.reasons else 'no sender'}")
            return Source.UNKNOWN, None, None
        claim, partner, why = self._claim(sender, members)
        believed = identity.assurance != Assurance.FAILED and not (
            partner is not None and identity.assurance == Assurance.UNAUTHENTICATED
            and not self.directory.partner_without_verdict)
        if claim == Source.UNKNOWN:
            explanation.append(f"source unknown: {why}{how}")
            return Source.UNKNOWN, None, None
        if not believed:
            explanation.append(f"source unknown: {why}, but the sender could not be verified{how}")
            return Source.UNKNOWN, None, str(claim)
        explanation.append(f"source {claim}: {why}{how}")
        return claim, partner, None

    def _claim(self, sender: str, members: MemberLookup) -> tuple[Source, str | None, str]:
        """Who the address says it is: (source, partner name, why) from the configuration and members."""
        domain = sender.rsplit("@", 1)[-1]
        for partner in self.directory.partners:
            if sender in partner.addresses:
                return Source(partner.kind), partner.name, f"an address of partner '{partner.name}'"
            for partner_domain in partner.domains:
                if domain == partner_domain or domain.endswith("." + partner_domain):
                    return (Source(partner.kind), partner.name,
                            f"sender domain {domain} matches partner '{partner.name}' ({partner_domain})")
        wards = self.directory.coordinator_wards(sender)
        if sender in self.directory.coordinators:
            return Source.COORDINATOR, None, "a network-wide coordinator"
        if wards:
            return Source.COORDINATOR, None, f"a coordinator of {', '.join(map(self.directory.ward_name, wards))}"
        ward = members(sender) if sender != self.network else None
        if ward:
            return Source.MEMBER, None, f"a member of {self.directory.ward_name(ward)}"
        return Source.UNKNOWN, None, "no partner, coordinator or member"

    # -- what kind --------------------------------------------------------------
    def _kind(self, mail: ParsedMail, source: str, tag: Tag | None,
              explanation: list[str]) -> tuple[str, str | None, str | None]:
        loop = loop_reason(mail, self.network)
        if loop:
            explanation.append(f"kind loop: {loop}")
            return "loop", None, None
        if tag is not None and tag.kind == "bounce":
            explanation.append(f"kind bounce: sent to our return path ({tag.where})")
            return "bounce", None, None
        bounce = detect_bounce(mail, self.network)
        if bounce is not None:
            failed = ", ".join(bounce.recipients) or "unknown recipient"
            explanation.append(f"kind bounce: delivery failure notice for {failed}")
            return "bounce", None, None
        automatic = self._auto_reply(mail, source)
        if automatic:
            explanation.append(f"kind auto_reply: {automatic}")
            return "auto_reply", None, None
        return self._command_or_report(mail, source, tag, explanation)

    def _auto_reply(self, mail: ParsedMail, source: str) -> str | None:
        reason = set_aside_reason(mail, known_sender=source != Source.UNKNOWN)
        if reason:
            return reason
        subject = fold(clean_subject(mail.subject)).strip(" [](){}#:")
        for cue in self.rules.auto_reply_subjects:
            if subject.startswith(cue):
                return f"subject starts with '{cue}'"
        return None

    def _command_or_report(self, mail: ParsedMail, source: str, tag: Tag | None,
                           explanation: list[str]) -> tuple[str, str | None, str | None]:
        if tag is not None and tag.kind in ("approval", "confirm", "unsubscribe"):
            command = {"approval": "decision", "confirm": "confirm", "unsubscribe": "unsubscribe"}[tag.kind]
            explanation.append(f"kind command: {command} ({tag.where})")
            return "command", command, None
        resolved = self.commands.resolved(first_line(new_text(mail.text or "")))
        if resolved is not None and tag is not None and tag.kind == "followup":
            explanation.append(f"kind command: resolved ('{resolved[0]}' in reply to a coordinator's copy)")
            return "command", "resolved", resolved[1] or None
        if tag is not None and tag.kind == "alert":
            if resolved is not None and source == Source.COORDINATOR:
                # Authority lies in the coordinator's own copy, not in this member copy: the handler says so.
                explanation.append(f"kind command: resolved ('{resolved[0]}' in reply to a member's copy)")
                return "command", "resolved", resolved[1] or None
            explanation.append(f"kind report: a reply to a forwarded alert ({tag.where})")
            return "report", None, None
        if resolved is not None and source in AUTHORITATIVE_SOURCES and (mail.in_reply_to or mail.references):
            explanation.append(f"kind command: resolved ('{resolved[0]}' in reply to an earlier message)")
            return "command", "resolved", resolved[1] or None
        found = self.commands.read(mail)
        if found is not None:
            explanation.append(f"kind command: {found.command} ({found.where} '{found.word}')")
            return "command", found.command, found.argument
        return "report", None, None

    # -- what about -------------------------------------------------------------
    # -- what about and how urgent -----------------------------------------------
    def judge(self, subject: str, text: str, subject_factor: float, explanation: list[str]) -> tuple[str, str]:
        """(category, urgency): the rules' points, and the trained model's weighing beside them when there is one."""
        readings = self.read(subject, text)
        scores = self.category_points(readings, subject_factor, explanation)
        ruled = self._decide_category(scores, explanation)
        model = self.rules.model
        if model is None:
            return ruled, self.rule_urgency(ruled, readings, explanation)
        counts = features_of(readings, subject_factor, self.rules.removed_words)
        category = self._blend_category(model, counts, scores, ruled, word_count(readings), explanation)
        ruled_urgency = self.rule_urgency(category, readings, explanation)
        if self.rules.urgency_defaults.get(category) == "low":
            return category, ruled_urgency  # low by definition (information): the rules' reading stands
        return category, self._blend_urgency(model, with_category(counts, category), ruled_urgency, explanation)

    def _blend_category(self, model: TextModel, counts: Features, scores: CategoryScores, ruled: str,
                        words: int, explanation: list[str]) -> str:
        """The model's log-probability plus the rules' points, weighed as training found best."""
        weighed = weigh_category(model.category, counts, scores.points, ruled=ruled, words=words, blend=model.blend,
                                 operator=scores.operator, operator_point=OPERATOR_POINT)
        named = max(weighed.probabilities, key=lambda label: weighed.probabilities[label]) if weighed.unsure \
            else weighed.label
        line = explain("category", named, weighed.probabilities[named], model.category.evidence(weighed.vector, named))
        if weighed.unsure:
            sure = model.blend.get("category_sure", 0.0)
            explanation.append(f"{line}; not sure enough (below {sure:.0%}) where the rules found nothing: other")
        else:
            explanation.append(f"{line}; {'the rules agree' if named == ruled else f'the rules said {ruled}'}"
                               f" (a rule point weighs {weighed.point_weight:.2f} in {words} words)")
        return weighed.label

    def _blend_urgency(self, model: TextModel, counts: Features, ruled: str, explanation: list[str]) -> str:
        weighed = weigh_urgency(model.urgency, counts, ruled, model.blend.get("urgency_rules", 0.0))
        best = weighed.label
        agree = "the rules agree" if best == ruled else f"the rules said {ruled}"
        explanation.append(f"{explain('urgency', best, weighed.probabilities[best], model.urgency.evidence(weighed.vector, best))}"
                           f"; {agree}")
        return best

    def read(self, subject: str, text: str) -> Readings:
        """Subject and body folded and read into clauses, once for every question below."""
        return read(subject, text, self.rules.context)

    def category_points(self, readings: Readings, subject_factor: float, explanation: list[str]) -> CategoryScores:
        """Each category's points from its terms, without negated terms and police routine."""
        scores = CategoryScores()
        negated: list[str] = []
        routine: list[str] = []
        for zone, factor, context in (("subject", subject_factor, readings.subject), ("body", 1.0, readings.body)):
            folded = context.text
            neutral = [(hit.start, hit.end) for hit in self._neutral.find(folded)]
            seen: set[tuple[str, str]] = set()
            for hit in _longest_per_category(list(self._categories.find(folded))):
                category, term, against = hit.payload
                if (category, term.text) in seen:
                    continue
                inside = next(((a, b) for a, b in neutral if a <= hit.start and hit.end <= b), None)
                if inside is not None:
                    routine.append(f"'{folded[inside[0]:inside[1]]}'")
                    continue
                word = word_around(folded, hit.start, hit.end)
                if any(blocked in word for blocked in self.rules.categories[category].not_in):
                    continue
                negator = context.negation_before(hit.start) if not against else None
                if negator is not None:
                    negated.append(f"'{negator} {folded[hit.start:hit.end]}'")
                    continue
                seen.add((category, term.text))
                points = -term.weight * factor if against else term.weight * factor
                scores.add(category, points, f"{zone} '{folded[hit.start:hit.end]}' ({points:+g})",
                           by_operator=(category, term.text) in self.rules.operator_terms)
        if negated:
            explanation.append(f"negated, not counted: {', '.join(dict.fromkeys(negated))}")
        if routine:
            explanation.append(f"police routine, not counted: {', '.join(dict.fromkeys(routine))}")
        self._weigh_purpose(readings, scores)
        return scores

    def _weigh_purpose(self, readings: Readings, scores: CategoryScores) -> None:
        """A text written to prevent, inform, invite or look back is information, above the incident it names."""
        in_subject, in_text = self._purpose_words(readings.subject.text), self._purpose_words(readings.body.text)
        if not in_subject and len(in_text) < 2:
            return
        topic = max((points for category, points in scores.points.items() if category != "info"), default=0.0)
        needed = max(topic, self.rules.threshold) + 1 - scores.points.get("info", 0.0)
        if needed > 0:
            words = ", ".join(f"'{word}'" for word in sorted(in_subject | in_text)[:3])
            scores.add("info", needed, f"purpose {words} outranks the topic ({needed:+g})")

    def _purpose_words(self, folded: str) -> set[str]:
        return {folded[hit.start:hit.end] for hit in self._purpose.find(folded)}

    def _decide_category(self, scores: CategoryScores, explanation: list[str]) -> str:
        ranked = sorted(
            ((cid, points) for cid, points in scores.points.items() if points >= self._minimum(cid)),
            key=lambda item: (-item[1], self._priority(item[0])),
        )
        if not ranked or ranked[0][1] < self.rules.threshold:
            best = f" (best: {ranked[0][0]} {ranked[0][1]:g})" if ranked else ""
            explanation.append(f"category other: no category reached {self.rules.threshold:g} points{best}")
            return "other"
        best, points = ranked[0]
        reasons = ", ".join(scores.reasons[best][:6])
        runner = f"; next {ranked[1][0]} {ranked[1][1]:g}" if len(ranked) > 1 else ""
        explanation.append(f"category {best} ({points:g} points): {reasons}{runner}")
        return best

    def _minimum(self, category: str) -> float:
        minimum = self.rules.categories[category].min_points
        return minimum if minimum is not None else self.rules.threshold

    def _priority(self, category: str) -> int:
        order = self.rules.priority
        return order.index(category) if category in order else len(order)

    # -- where --------------------------------------------------------------------
    def _wards(self, subject: str, text: str, source: str, sender: str | None,
               members: MemberLookup, explanation: list[str]) -> list[str]:
        found = self.places.find(subject, text)
        if found.wards:
            explanation.extend(found.explanation)
            return found.wards
        if source == "municipality":
            explanation.append("every ward: the municipality names no place, so it speaks to the whole city")
            return list(self.places.all_wards)
        home = self._home_ward(source, sender, members)
        if home is not None:
            explanation.append(f"ward {home}: the text names no place; the sender's own ward")
            return [home]
        explanation.append("wards: none named, sender has no ward")
        return []

    def _home_ward(self, source: str, sender: str | None, members: MemberLookup) -> str | None:
        if sender is None:
            return None
        if source == "member":
            return members(sender)
        if source == "coordinator":
            wards = self.directory.coordinator_wards(sender)
            if len(wards) == 1:
                return wards[0]
            return members(sender)
        return None

    def rule_urgency(self, category: str, readings: Readings, explanation: list[str]) -> str:
        """The rules' urgency: the category's default, revised by cues about now and by how it ended."""
        cues = _UrgencyCues()
        out_of_scope: list[str] = []
        for context in readings:
            folded = context.text
            for hit in self._cues.find(folded):
                words = folded[hit.start : hit.end]
                if context.negation_before(hit.start) is not None:
                    continue  # "nog steeds niet gevonden" is not found, "niet meer gaande" not going on
                if hit.payload.kind == "urgent":
                    scope = not_now(context.scopes_at(hit.start))
                    if scope is not None:
                        out_of_scope.append(f"'{words}' ({NOT_NOW_REASONS[scope]})")
                        continue
                    cues.points += hit.payload.term.weight
                cues.words[hit.payload.kind].append(words)
        if out_of_scope:
            explanation.append(f"urgency cues not about now: {', '.join(dict.fromkeys(out_of_scope))}")
        return self._decide_urgency(self.rules.urgency_defaults.get(category, "normal"), category, cues,
                                    explanation)

    def _decide_urgency(self, base: str, category: str, cues: _UrgencyCues, explanation: list[str]) -> str:
        threshold = self.rules.urgent_threshold
        now = cues.points >= threshold
        low, outcome = cues.words["low"], cues.words["outcome"]
        # Time words calm a fire told afterwards, never a missing person ("laatst gezien gisteravond").
        calm = [] if category == "missing_person" else cues.words["calm"]
        announcement = len(set(low)) >= 2 and category not in ("missing_person", "fire")
        if base == "low" or (not now and (announcement or (category in ("other", "info") and low))):
            explanation.append(f"urgency low: category {category}" + (f", '{low[0]}'" if low else ""))
            return "low"
        if outcome and not now:
            explanation.append(f"urgency normal: {category}, it ended: '{outcome[0]}'")
            return "normal"
        if base == "urgent":
            if calm and not now:
                explanation.append(f"urgency normal: {category}, but '{calm[0]}'")
                return "normal"
            explanation.append(f"urgency urgent: category {category}")
            return "urgent"
        if now and len(calm) < 2:
            shown = "', '".join(dict.fromkeys(cues.words["urgent"]))
            explanation.append(f"urgency urgent: '{shown}' ({cues.points:g} points)")
            return "urgent"
        explanation.append("urgency normal: something that happened")
        return "normal"


@dataclass
class _UrgencyCues:
    points: float = 0.0  # urgent cues about now
    words: dict[str, list[str]] = field(
        default_factory=lambda: {"urgent": [], "calm": [], "outcome": [], "low": []})


NOT_NOW_REASONS = {Scope.QUOTED: "quoted", Scope.CONDITIONAL: "advice for if it happens",
                   Scope.INSTRUCTION: "advice", Scope.PAST: "told afterwards"}


def _longest_per_category(hits: list[Hit[tuple[str, Term, bool]]]) -> list[Hit[tuple[str, Term, bool]]]:
    """One word counts once: 'ingebroken' is not also 'ingebro', 'geforceerd' not also 'forceerd'.

    Per category, a hit inside a longer one is dropped (a sort and one sweep:
    linear enough for a megabyte of repeated keywords)."""
    kept = []
    ordered = sorted(hits, key=lambda h: (h.payload[0], h.payload[2], h.start, -h.end))
    group: tuple[str, bool] | None = None
    reach = -1
    for hit in ordered:
        key = (hit.payload[0], hit.payload[2])
        if key != group:
            group, reach = key, -1
        if hit.end > reach:
            kept.append(hit)
            reach = hit.end
    return kept
