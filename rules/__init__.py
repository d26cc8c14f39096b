"""Classification: what is this message, from whom, about what, where, how urgent.

Built on ``mail/`` only: the configuration reaches the rules as a plain
``Directory``, and nothing here knows of the database or the protocols.
"""

from rules.directory import Directory, Partner, Ward
from rules.engine import Classification, Classifier, MemberLookup
from rules.loader import RuleFileError, RuleSet, load_rules

__all__ = [
    "Classification", "Classifier", "Directory", "MemberLookup", "Partner", "RuleFileError", "RuleSet", "Ward",
    "load_rules",
]
