"""Question types and what kind of content a sentence holds, so an answer of the right kind is preferred.

"Hur många kontaktsjuksköterskor finns i Örebro?" wants an amount; "När infördes ...?" a date; "Vem ansvarar
...?" a person or organisation; "Vad är ...?" a definition; "Varför ...?" a reason; "Får jag ...?" a rule. A
sentence is read for the same kinds (numbers with units, dates and years, names and organisations, definitional
wording, reasons, rules, places, procedures). The ranker and the answerability model use whether they match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag.text import fold_accents

QTYPES = ("money", "count", "amount", "duration", "date", "who", "place", "definition", "reason", "rule", "procedure",
          "which", "other")

_Q = [  # matched against the folded, lower-cased question; first match wins
    ("money", r"\bhur mycket (pengar|kronor|kr|medel|kostar|ska|far|betala|ersattning|bidrag)\b|\bvad kostar\b|"
              r"\bkostar\b|\bvilket belopp\b|\bhur stor (summa|ersattning|avgift)\b|\bvad ar avgiften\b"),
    ("count", r"\bhur manga (?!procent|dagar|veckor|manader|ar\b|timmar|ganger)\w+"),
    ("amount", r"\bhur (mycket|manga|mkt|stor(a|t)? (andel|del|summa|belopp)|hog|mycke)\b|"
               r"\bhur manga procent\b|\bhur stor\b|\bantal\b|\bhur gammal\b"),
    ("duration", r"\bhur (lange|lang tid|ofta|snabbt|tidigt)\b|\binom hur\b|\bhur manga (dagar|veckor|manader|ar)\b"),
    ("date", r"\bnar\b|\bvilket (ar|datum)\b|\bvilken (manad|dag|tid)\b|\bsedan nar\b|\bfran (och med )?nar\b"),
    ("who", r"\bvem\b|\bvilka (ar|ansvarar|betalar|far|kan|ska|har)\b|\bvilken (myndighet|organisation|region|aktor)\b|"
            r"\bvem (ansvarar|betalar|bestammer|star)\b|\bvilka aktorer\b|"
            r"\bvilka (yrkesgrupper|professioner|yrken|personalgrupper|specialister)\b|\bvilken (yrkesgrupp|profession)\b"),
    ("place", r"\bvar (kan|finns|far|ska|hittar|vander|soker|ligger|bokar|ar)\b|\bvart\b|\bi vilken (region|stad|lan)\b"),
    ("definition", r"^\W*(vad (ar|betyder|innebar|menas|star .* for)|vad ar (en|ett))\b|\bvad (betyder|innebar)\b"),
    ("reason", r"\bvarfor\b|\bav vilken anledning\b|\bvad beror\b|\bvad ar syftet\b|\bvad ar anledningen\b"),
    ("rule", r"\b(far|kan|maste|ska|bor|behover) (jag|man|vi|min|mitt|mina|han|hon|barnet)\b|\bhar (jag|man) ratt\b|"
             r"\bar det (tillatet|gratis|obligatoriskt)\b|\bgaller (det|detta)\b"),
    ("procedure", r"\bhur (gor|gar|kan|ska|fungerar|funkar|far|bokar|ansoker|soker|hittar|kommer)\b"),
    ("which", r"\bvilka\b|\bvilket\b|\bvilken\b|\bvad (finns|gor|erbjuds|ingar)\b"),
]
_Q = [(name, re.compile(rx)) for name, rx in _Q]


def question_type(question: str) -> str:
    """The kind of answer a question wants (one of QTYPES)."""
    q = fold_accents(question.lower())
    for name, rx in _Q:
        if rx.search(q):
            return name
    return "other"


_UNIT = (r"(kr|kronor|kronorna|sek|miljon(er)?|miljard(er)?|mnkr|mkr|tkr|procent|%|st|stycken|personer|patienter|"
         r"barn|platser|regioner|timmar|dagar|veckor|månader|år|gånger|mg|ml|gram)")
_S = {
    "number": r"\d|\b(en|ett|två|tre|fyra|fem|sex|sju|åtta|nio|tio|elva|tolv|tjugo|trettio|hundra|tusen|hälften|"
              r"dubbelt|miljoner|miljarder)\b",
    "amount": rf"\d[\d\s,.]*\s*{_UNIT}\b|\b(en|ett|två|tre|fyra|fem|sex|sju|åtta|nio|tio|hundra|tusen)\s+{_UNIT}\b|"
              r"\b(avgiftsfri|gratis|kostnadsfri|högkostnadsskydd|avgift|belopp|andel)\w*",
    "duration": r"\b(\d+|en|ett|två|tre|fyra|fem|sex|sju|åtta|nio|tio|några)\s+(minuter|timmar|dagar|dygn|veckor|"
                r"månader|år|arbetsdagar)\b|\binom\b|\bsenast\b|\bvarje (dag|vecka|månad|år)\b|\bgånger (per|i)\b",
    "date": r"\b(19|20)\d\d\b|\b(januari|februari|mars|april|maj|juni|juli|augusti|september|oktober|november|"
            r"december)\b|\b(sedan|från och med|fr\.o\.m\.|till och med|år)\s+\d|\b(våren|hösten|sommaren|vintern)\b",
    "who": r"\b(regeringen|socialstyrelsen|skr|regionerna?|kommunerna?|rcc|regionala cancercentrum|myndighet\w*|"
           r"försäkringskassan|läkaren?|sjuksköterskan?|kontaktsjuksköterskan?|vårdcentralen|patienten?|närstående|"
           r"tandläkaren?|barnmorskan?|kuratorn?|ministern?|departementet|inspektionen|ansvarar|ansvarig\w*|"
           r"läkare|sjuksköterskor|kuratorer|psykolog\w*|fysioterapeut\w*|arbetsterapeut\w*|dietist\w*|"
           r"specialist\w*|professioner|yrkesgrupper|personal(en)?)\b",
    "place": r"\b(på|i|vid|hos)\s+(vårdcentralen|sjukhuset|kliniken|mottagningen|apoteket|hemmet|hemma|region\w*|"
             r"kommunen|[A-ZÅÄÖ]\w+)\b|\b1177\.se\b|\bwww\.",
    "definition": r"^[^.!?]{0,80}?\b(är|innebär|betyder|avser|kallas|definieras som)\s+(en|ett|att|när|den|det|de|"
                  r"ett samlingsnamn)\b|\bkallas\b|\binnebär att\b",
    "reason": r"\b(eftersom|därför|för att|på grund av|beror på|syftet|syfte|anledning\w*|orsak\w*|leder till)\b",
    "rule": r"\b(får|ska|skall|måste|har rätt|rätt till|kan|behöver|bör|är skyldig|inte tillåtet|krävs|gäller)\b",
    "procedure": r"\b(genom att|först|sedan|kontakta|ansök\w*|boka\w*|ring\w*|logga in|fyll\w* i|skicka\w*|gå till|"
                 r"via|hos)\b",
}
_S = {name: re.compile(rx, re.IGNORECASE) for name, rx in _S.items()}
_MONEY = re.compile(r"\b(kr|kronor|kronorna|sek|mnkr|mkr|tkr|miljon(er)?\s+kronor|miljard(er)?\s+kronor|avgift\w*|"
                    r"belopp|kostnad\w*|kostar|gratis|avgiftsfri\w*|kostnadsfri\w*|ersättning\w*)\b", re.I)
_COUNT_WORD = re.compile(r"\bhur manga\s+(\w+)", re.I)  # on accent-folded text
_FREE = re.compile(r"\b(gratis|avgiftsfri\w*|kostnadsfri\w*|ingen avgift|samma avgift|högkostnadsskydd\w*)\b", re.I)
_COUNT_NUMBER = re.compile(r"\d|\b(två|tre|fyra|fem|sex|sju|åtta|nio|tio|elva|tolv|tjugo|trettio|hundra|tusen|"
                           r"hälften|dubbelt|flera hundra|tusentals|procent)\b", re.I)
_MATCH = {
    "amount": ("amount",), "duration": ("duration",), "date": ("date",), "who": ("who",), "place": ("place",),
    "definition": ("definition",), "reason": ("reason",), "rule": ("rule",), "procedure": ("procedure", "rule"),
}


@dataclass(frozen=True)
class SentenceKinds:
    """Which kinds of content a sentence holds."""

    number: bool
    amount: bool
    duration: bool
    date: bool
    who: bool
    place: bool
    definition: bool
    reason: bool
    rule: bool
    procedure: bool


@lru_cache(maxsize=200_000)
def sentence_kinds(sentence: str) -> SentenceKinds:
    """Content kinds of a sentence (cached: the same sentences come back for many questions)."""
    return SentenceKinds(**{name: bool(rx.search(sentence)) for name, rx in _S.items()})


def counted_word(question: str) -> str:
    """What a "hur många X" question counts (X, lower case), or ""."""
    folded = fold_accents(question)  # "hur manga" as often as "hur många"
    m = _COUNT_WORD.search(folded)
    if not m:
        return ""
    return (question if len(folded) == len(question) else folded)[m.start(1):m.end(1)].lower()


def type_match(qtype: str, kinds: SentenceKinds, sentence: str = "", counted: str = "") -> float:
    """1 when the sentence holds the kind of content the question wants, 0 when it does not, 0.5 for questions
    that want no particular kind ("which", "other"). A money question wants an amount of money; "hur många X" wants a
    number of X (the sentence names X near a number, and a list of kronor is not an answer)."""
    if qtype == "money":
        return 1.0 if (kinds.number and _MONEY.search(sentence)) or _FREE.search(sentence) else 0.0
    if qtype == "count":
        if not _COUNT_NUMBER.search(sentence):  # "en kontaktsjuksköterska" is not a count
            return 0.0
        stem = fold_accents(counted)[: max(4, min(len(counted), 7))]
        named = bool(stem) and stem in fold_accents(sentence.lower())
        return 1.0 if named and not (_MONEY.search(sentence) and not re.search(r"\d\s+(st|personer|patienter)\b",
                                                                                   sentence)) else 0.0
    wanted = _MATCH.get(qtype)
    if not wanted:
        return 0.5
    return 1.0 if any(getattr(kinds, w) for w in wanted) else 0.0
