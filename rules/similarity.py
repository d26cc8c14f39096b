"""How alike two reports are, for merging duplicates of one incident.

Five neighbours who saw the same thing write five different sentences:
"verdachte man trekt aan autodeuren Marathonloop" and "Er loopt een vreemde
vent aan de portieren van auto's te voelen op de marathonloop". Word overlap
misses most of that (compounds, inflections, typos), so the measure is the
cosine similarity of character-trigram counts over the normalised text, with
the most common function words removed:

- trigrams inside words match "autodeuren"/"auto's deuren", "ingebroken"/
  "inbraak" partly, and survive typos, without a Dutch stemmer;
- cosine on counts is independent of length, so a two-line report and a long
  one about the same event can still match;
- it is cheap (a few microseconds per pair) and needs no model or corpus.

Merging is gated first by ward, category and a time window (configured), so
the text only has to separate incidents of the same kind in the same ward in
the same hours; a threshold of 0.38 does that on our examples (see
tests/test_similarity.py), and nothing is lost when it errs:
every report stays visible inside the merged item.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from typing import Any

DEFAULT_THRESHOLD = 0.38
STOPWORDS = frozenset(
    """de het een en van in op te bij is er aan met voor dat die niet om
    ook nog maar wat was zijn zij hij ze we wij ik je u dit deze naar uit
    the a an and of in on at to is are was were it this that there with for""".split()
)
# Words every report of its kind uses: they say nothing about *which* incident.
REPORT_WORDS = frozenset(
    """verdacht verdachte verdachten man mannen vrouw persoon personen iemand
    gezien zag zie zojuist net vannacht vanavond vanmorgen vandaag gisteren
    let politie melding gemeld buurt wijk straat graag bericht hallo groet
    suspicious man men woman person someone seen saw just tonight today
    yesterday police report street please""".split()
)
_WORD = re.compile(r"[a-z]+")


def normalise(text: str) -> str:
    """Lower case, accents off, only letters, function words out."""
    folded = unicodedata.normalize("NFKD", text.lower())
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(w for w in _WORD.findall(ascii_only) if w not in STOPWORDS and w not in REPORT_WORDS)


def trigrams(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for word in normalise(text).split():
        padded = f" {word} "
        counts.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return counts


def cosine(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    dot = sum(count * large.get(gram, 0) for gram, count in small.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm


def similarity(first: str, second: str) -> float:
    """0.0 (nothing in common) to 1.0 (the same words)."""
    return cosine(trigrams(first), trigrams(second))


# What a report is compared by, stored once: {"grams": trigram counts, "norm": their length}.
Signature = dict[str, Any]


def signature(text: str) -> Signature:
    """What ``similarity`` compares, to store once per report (JSON-ready); empty for a text without words."""
    grams = trigrams(text)
    if not grams:
        return {}
    return {"grams": dict(grams), "norm": math.sqrt(sum(c * c for c in grams.values()))}


def alike(first: Signature, second: Signature) -> float:
    """``similarity`` of two stored signatures: one pass over the smaller one."""
    if not first or not second:
        return 0.0
    a, b = first["grams"], second["grams"]
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    dot = sum(count * large.get(gram, 0) for gram, count in small.items())
    return float(dot / (first["norm"] * second["norm"]))
