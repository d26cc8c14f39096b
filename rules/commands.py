"""Member commands and closing words, read the same way for every path that needs them.

The classifier asks whether a message is a member command at all; the
membership use cases ask which command, with which argument, in which
language. Both call ``CommandReader``, built from the one list of command
words in ``rules/defaults/commands.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mail.message import ParsedMail
from mail.quotes import new_text
from mail.text import clean_subject, fold
from rules.loader import RuleSet

# A command line is short; a longer first line is a report that happens to start with a command word.
MAX_COMMAND_LINE = 60
MAX_ARGUMENT_WORDS = 6
# The member's settings: each its own command word, all of them the "preferences" command.
SETTINGS = ("urgent_only", "categories", "digest", "everything")


@dataclass(frozen=True)
class MemberCommand:
    """A member command as written: which one, its word, what followed it, the word's language."""

    name: str  # subscribe | unsubscribe | help | urgent_only | categories | digest | everything
    word: str  # folded, e.g. "alleen spoed"
    argument: str | None
    language: str | None  # None when the word reads the same in both languages (HELP, STOP)
    where: str = "subject"  # "subject" | "first line"

    @property
    def command(self) -> str:
        """The classification's command: a setting is the ``preferences`` command."""
        return "preferences" if self.name in SETTINGS else self.name


class CommandReader:
    def __init__(self, rules: RuleSet) -> None:
        words = [(word, name, language) for name, spec in rules.member_commands.items()
                 for language, listed in spec.words.items() for word in listed]
        self._words = sorted(words, key=lambda entry: len(entry[0]), reverse=True)
        self._alone = {name for name, spec in rules.member_commands.items() if spec.alone}
        self._resolved = rules.resolved_words

    def parse_line(self, line: str, where: str = "subject") -> MemberCommand | None:
        """The command a single line starts with, if it is a command line."""
        text = " ".join(line.split())
        folded = fold(text)
        start = len(folded) - len(folded.lstrip(" .!?:*"))
        folded = folded[start:].rstrip(" .!?:")
        if not folded or len(folded) > MAX_COMMAND_LINE:
            return None
        for word, name, language in self._words:
            if folded == word:
                return MemberCommand(name, word, None, language, where)
            if folded.startswith((word + " ", word + ":")) and name not in self._alone:
                argument = text[start + len(word):].strip(" :.-!?") or None
                if argument is None or len(argument.split()) <= MAX_ARGUMENT_WORDS:
                    return MemberCommand(name, word, argument, language, where)
        return None

    def read(self, mail: ParsedMail) -> MemberCommand | None:
        """The command in the Subject (after Re:/Antw:), else on the first line of the new text.

        A bare command in the Subject ("Subscribe") takes its argument from the
        first line when that repeats the command with one ("subscribe 5235 AB").
        """
        in_subject = self.parse_line(clean_subject(mail.subject or ""), "subject")
        in_body = self.parse_line(first_line(new_text(mail.text or "")), "first line")
        if in_subject is None:
            return in_body
        if in_subject.argument is None and in_body is not None and in_body.name == in_subject.name \
                and in_body.argument:
            return in_body
        return in_subject

    def resolved(self, text: str) -> tuple[str, str] | None:
        """(the closing word as written, the text after it) when ``text`` starts with AFGEROND/RESOLVED."""
        stripped = text.strip()
        folded = fold(stripped)
        for word in self._resolved:
            if folded.startswith(word) and (len(folded) == len(word) or not folded[len(word)].isalnum()):
                return stripped[: len(word)], stripped[len(word):].lstrip(" :-.!\t")
        return None


def first_line(text: str) -> str:
    """The first non-empty line that is not quoted."""
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(">"):
            return stripped
    return ""
