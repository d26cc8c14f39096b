"""Classification: what is this message, from whom, about what, where, how urgent."""

from rules.engine import Classification, Classifier, MemberLookup
from rules.loader import RuleFileError, RuleSet, load_rules

__all__ = ["Classification", "Classifier", "MemberLookup", "RuleFileError", "RuleSet", "load_rules"]
