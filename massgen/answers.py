"""Final answers out of model prose, and whether they are right or agree.

Four kinds of answer, each with its extractor (the rules are in their docstrings):

- ``number``: :func:`extract_number`, a GSM8K-style numeral (``#### 42``, "the answer is
  1,234.5", else the last number);
- ``choice``: :func:`extract_choice`, a multiple-choice letter A-J ("Answer: (C)");
- ``boxed``: :func:`extract_boxed`, the content of MATH's last ``\\boxed{...}``;
- ``text``: :func:`extract_text`, a short span, normalised as SQuAD does.

:func:`extract` gives any kind's answer as a canonical string (equal strings, same answer:
what grouping answers needs). :func:`grade` says whether a prediction is right against a
gold answer, with those four kinds plus ``exact``, ``regex`` and a ``module:function`` of
your own; :func:`same_answer` whether two predictions agree. A prediction with no answer
in it is wrong, and agrees with nothing, not even another prediction with no answer.
A gold answer that cannot be read is the data's mistake: :class:`~massgen.errors.ConfigError`.
"""

from __future__ import annotations

import importlib
import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from massgen.errors import ConfigError

KINDS = ("number", "choice", "boxed", "text")
"""The kinds of answer :func:`extract` and :func:`same_answer` know."""
GRADERS = (*KINDS, "exact", "regex")
"""What :func:`grade` knows, besides a ``module:function`` of yours."""
LETTERS = "ABCDEFGHIJ"
MAX_EXPONENT = 400
"""A numeral's exponent beyond this is not read (``1e999999999`` would take all memory)."""
REL_TOL = 1e-6
"""Default relative tolerance of numbers: 1,000,000 and 1,000,001 are the same, 0.3333 and
1/3 are not."""

# -- numbers -------------------------------------------------------------------------------

_NUMERAL = re.compile(
    r"(?<![\w.,/])"  # not the inside of a word or of another number
    r"(?P<sign>[-−–+])?(?:[$€£¥]\s?)?(?P<sign2>[-−])?"
    r"(?P<body>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d.,]\d))?"
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*([\d.,]+)\s*\}")
_ANSWER_PHRASE = re.compile(
    r"\banswers?\s*(?:(?:is|are|was|would be|will be)\b\s*:?|[:=])", re.IGNORECASE
)
"""Where an answer is stated: "answer is", "final answer:", "answers are", "answer =", ..."""
_SPAN_END = re.compile(r"\n|[.!?]+(?=\s|$)|[;,](?=\s)|\s\(")
"""Where a stated answer ends: a line break, a sentence end, ", ", "; ", or " ("."""


def _latex_plain(text: str) -> str:
    """LaTeX numerals as plain ones: ``\\frac{3}{4}`` as 3/4, ``1{,}000`` as 1,000, ``\\$``."""
    text = _FRAC.sub(r"\1/\2", text)
    for latex, plain in (("{,}", ","), ("\\$", "$"), ("\\%", "%"), ("\\!", ""), ("\\,", "")):
        text = text.replace(latex, plain)
    return text.replace("\\left", "").replace("\\right", "")


def _number_of(m: re.Match[str]) -> Fraction | None:
    if m["exp"] and abs(int(m["exp"])) > MAX_EXPONENT:
        return None
    body = m["body"].replace(",", "")
    value = Fraction(body) * (Fraction(10) ** int(m["exp"]) if m["exp"] else 1)
    if m["den"]:
        if int(m["den"]) == 0 or "." in body or m["exp"]:
            return None
        value /= int(m["den"])
    sign = m["sign2"] or m["sign"]
    return -value if sign in ("-", "−", "–") else value


def _numbers(text: str) -> list[Fraction]:
    return [v for m in _NUMERAL.finditer(_latex_plain(text)) if (v := _number_of(m)) is not None]


def parse_number(text: str) -> Fraction | None:
    """The number ``text`` is, if it is one numeral (units and currency around it allowed):
    " $1,234.50 " is 1234.5, "3/4" is 3/4, "12 km" is 12, "twelve" and "1 or 2" are None."""
    found = _numbers(text)
    return found[0] if len(found) == 1 else None


def extract_number(text: str) -> Fraction | None:
    """The final numeric answer of ``text``, exactly (a ``Fraction``), or None.

    Where it is looked for, first place that has a number wins:

    1. after the last ``####`` (GSM8K), the first number;
    2. in the last ``\\boxed{...}``, the first number;
    3. after the last answer statement ("answer is", "answer:", "final answer:", "answers
       are", "answer would be", "answer ="), up to where it ends (a line break, a sentence
       end, ", ", "; " or " ("), and after its last ``=`` if it has one ("The answer is
       12 * 5 = 60." is 60), the first number;
    4. anywhere: the last number.

    A number is a numeral: a sign (``-``, ``−``, ``–``, ``+``) right before it or before a
    currency sign (``$ € £ ¥``, ignored), digits with thousands commas only in groups of
    three (1,234; "1,23" is 1 and 23), a decimal part, an exponent (``1.5e3``; beyond
    ``MAX_EXPONENT`` not read), or a simple fraction of integers (``3/4``,
    ``\\frac{3}{4}``). What follows it (``%``, ``km``, "apples") is ignored: "25%" is 25.
    "10 - 3" is 10 and 3 (a sign is not apart from its digits). Digits inside a word
    ("gpt4", "H2O") are not numbers; number words ("twelve") are not read.
    """
    if "####" in text:
        found = _numbers(text.rsplit("####", 1)[1])
        if found:
            return found[0]
    boxed = extract_boxed(text)
    if boxed is not None and (found := _numbers(boxed)):
        return found[0]
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if phrases:
        stated = text[phrases[-1].end() :].lstrip()
        end = _SPAN_END.search(stated)
        stated = (stated[: end.start()] if end else stated).rsplit("=", 1)[-1]
        if found := _numbers(stated):
            return found[0]
    found = _numbers(text)
    return found[-1] if found else None


def _close(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    """|a - b| <= max(rel_tol·max(|a|, |b|), abs_tol), in exact arithmetic."""
    bound = max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol))
    return abs(a - b) <= bound


def _canonical_number(value: Fraction) -> str:
    """42, -3.5, 1/3: an integer, else a decimal if it ends, else a fraction."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:
        return format(value.numerator / value.denominator, "f").rstrip("0")
    return str(value)


# -- boxed ---------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)\s*(?:\{|(?P<bare>[^\s{}$]+))")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) of ``text``, stripped,
    braces inside kept (``\\boxed{\\frac{1}{2}}`` is ``\\frac{1}{2}``). ``\\boxed 5`` is 5. A
    box whose braces do not close, or an empty one, does not count; no box gives None."""
    closing: dict[int, int] = {}  # each "{" that closes: where (one pass, not one per box)
    opened: list[int] = []
    for i, c in enumerate(text):
        if c == "{":
            opened.append(i)
        elif c == "}" and opened:
            closing[opened.pop()] = i
    last: str | None = None
    for m in _BOX.finditer(text):
        if m["bare"] is not None:
            last = m["bare"]
        elif (end := closing.get(m.end() - 1)) is not None and text[m.end() : end].strip():
            last = text[m.end() : end].strip()
    return last


_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")


def normalize_latex(answer: str) -> str:
    """A boxed answer as compared: ``\\text{...}`` unwrapped, ``\\dfrac``/``\\tfrac`` as
    ``\\frac``, ``\\frac12`` as ``\\frac{1}{2}``; degrees, ``$``, ``\\$``, ``\\%``,
    ``\\left``/``\\right``, spacing commands,
    all whitespace and a final period removed. Not a computer algebra system:
    ``\\frac{2}{4}`` and ``\\frac{1}{2}`` differ unless both are plain numbers."""
    s = _TEXT_CMD.sub(r"\1", answer)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\^\s*\{?\\circ\}?", "", s)
    for noise in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\$", "\\%", "$"):
        s = s.replace(noise, "")
    return re.sub(r"\s+", "", s).rstrip(".")


def _boxed_number(answer: str) -> Fraction | None:
    """The number a boxed answer is, if it is nothing but a numeral (``12\\pi`` is not)."""
    plain = _latex_plain(normalize_latex(answer)).removesuffix("%")
    m = _NUMERAL.fullmatch(plain)
    return None if m is None else _number_of(m)


def _boxed_key(answer: str) -> str:
    """A boxed answer's canonical string: its number if it is only a numeral, else its LaTeX."""
    value = _boxed_number(answer)
    return _canonical_number(value) if value is not None else normalize_latex(answer)


# -- choices -------------------------------------------------------------------------------

_STATED = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:|=|would be|will be)\s*:?\s*"
    r"|(?:choose|pick|select|go with)\s+(?:option\s+|choice\s+)?",
    re.IGNORECASE,
)
_LETTER_AFTER = re.compile(
    r"\s*(?:[Oo]ption\s+|[Cc]hoice\s+)?(?:\((?P<p>[A-Ja-j])\)|(?P<p2>[a-j])[.)]?[^\S\n]*$"
    r"|(?P<l>[A-HJ](?![\w'])|I(?![\w']|\s+[a-z])))",
    re.MULTILINE,
)
_LETTER_BEFORE = re.compile(
    r"(?:\((?P<p>[A-Ja-j])\)|\b(?P<l>[A-J]))\)?\s+is\s+(?:the\s+)?(?:correct|right|best)\b"
)
_LONE = re.compile(r"^[^\w\n]*\(?(?P<l>[A-Ja-j])\)?[.:]?[^\w\n]*$", re.MULTILINE)


def normalize_text(text: str) -> str:
    """SQuAD's normalisation, a little extended: "it's"/"that's"... become "it is"...,
    lower case, punctuation (any Unicode punctuation) removed, the words "a", "an" and "the"
    removed, whitespace collapsed."""
    text = re.sub(
        r"\b(it|that|this|there|here|what|which|who)['’]s\b", r"\1 is", text, flags=re.IGNORECASE
    )
    text = "".join(
        " " if unicodedata.category(c).startswith("P") or c in string.punctuation else c
        for c in text.lower()
    )
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _valid(letter: str, choices: Sequence[str] | None) -> str | None:
    letter = letter.upper()
    count = len(choices) if choices else len(LETTERS)
    return letter if letter in LETTERS[:count] else None


def _choice_named(span: str, choices: Sequence[str]) -> str | None:
    """The letter of the one choice whose text ``span`` holds (whole words, normalised). A
    choice whose text is part of another's named too ("Paris" in "Paris, Texas") is not
    counted; more than one left is no answer."""
    said = f" {normalize_text(span)} "
    texts = [normalize_text(c) for c in choices]
    named = [i for i, t in enumerate(texts) if t and f" {t} " in said]
    named = [
        i for i in named if not any(f" {texts[i]} " in f" {texts[j]} " for j in named if j != i)
    ]
    return LETTERS[named[0]] if len(named) == 1 else None


def extract_choice(text: str, choices: Sequence[str] | None = None) -> str | None:
    """The multiple-choice letter ``text`` answers, upper case, or None.

    Letters are A-J, or only the first ``len(choices)`` of them when ``choices`` (their
    texts, in order) are given. Markdown ``*`` and backticks are ignored. First rule that
    finds one wins:

    1. the last ``\\boxed{...}`` holding a letter;
    2. the last statement: "answer/option/choice is" (or ":"/"="), or "choose/pick/select/go
       with", then optionally "option"/"choice", followed by ``(C)``, ``(c)``, a capital ``C``
       standing alone (not the "I" of "I think"), or a small ``c`` ending the line; or ``C`` /
       ``(C)`` followed by "is the correct/right/best";
    3. with ``choices``: the text after the last answer statement, up to the end of its
       line, naming one choice's text (normalised, whole words; of nested ones the longest);
    4. the last line that is only a letter (``C``, ``(C)``, ``**C.**``);
    5. with ``choices``: the whole reply naming one choice's text, as in 3.
    """
    text = text.replace("*", "").replace("`", "")
    boxed = extract_boxed(text)
    if boxed is not None:
        m = re.fullmatch(r"\W*(?:\\text\{)?\(?([A-Ja-j])\)?\}?\W*", boxed)
        if m and (letter := _valid(m[1], choices)):
            return letter
    found: list[tuple[int, str]] = []
    for stated in _STATED.finditer(text):
        m = _LETTER_AFTER.match(text, stated.end())
        if m and (letter := _valid(m["p"] or m["p2"] or m["l"], choices)):
            found.append((stated.start(), letter))
    for m in _LETTER_BEFORE.finditer(text):
        if letter := _valid(m["p"] or m["l"], choices):
            found.append((m.start(), letter))
    if found:
        return max(found)[1]
    if choices:
        statements = list(_STATED.finditer(text))
        if statements:
            line = text[statements[-1].end() :].split("\n", 1)[0]
            if letter := _choice_named(line, choices):
                return letter
    lone = [v for m in _LONE.finditer(text) if (v := _valid(m["l"], choices))]
    if lone:
        return lone[-1]
    return _choice_named(text, choices) if choices else None


def gold_choice(gold: object, choices: Sequence[str] | None) -> str:
    """A gold answer as a letter: a letter ("C", "(c)"), a 0-based index, or a choice's text."""
    if isinstance(gold, int) and not isinstance(gold, bool):
        letter = LETTERS[gold] if 0 <= gold < len(LETTERS) else None
    elif isinstance(gold, str) and (m := re.fullmatch(r"\s*\(?([A-Ja-j])\)?\s*", gold)):
        letter = m[1].upper()
    elif isinstance(gold, str) and choices:
        said = normalize_text(gold)
        hits = [LETTERS[i] for i, c in enumerate(choices) if normalize_text(c) == said]
        letter = hits[0] if len(hits) == 1 else None
    else:
        letter = None
    if letter is None or (choices and _valid(letter, choices) is None):
        raise ConfigError(
            f"the gold answer {gold!r} is not a choice",
            key="answer",
            hint="give a letter (A-J), a 0-based index, or the text of one of the choices",
        )
    return letter


# -- short text spans ----------------------------------------------------------------------

_FILLER = re.compile(
    r"^(?:so|therefore|thus|hence|in (?:conclusion|summary|short)|overall)\b[\s,:]*", re.I
)
_COPULA = re.compile(r"\b(?:is|are|was|were)\b")
_SENTENCE_END = re.compile(r"\n|[.!?]+(?=\s|$)")
_CLAUSE = re.compile(r"[,;:]\s|\s[-–—]\s|\s\(|\s(?:but|though|although|however|whereas)\s", re.I)
_HEDGE = re.compile(
    r"^(?:(?:i|we) (?:think|believe|guess|suppose|would say|d say)|i m (?:fairly |pretty |quite )?"
    r"(?:sure|certain|confident)|(?:most |very |quite )?(?:probably|likely)|maybe|perhaps|possibly"
    r"|definitely|certainly|surely|clearly|obviously|well|ok|okay|hmm+|so|therefore|thus|hence|"
    r"in (?:conclusion|summary|short)|overall|that)\b ?|(?: |^)(?:i (?:think|believe|guess)|maybe)$"
)
_NEGATION = {"not", "no", "never", "neither", "nor", "cannot", "t"}  # "isn't": "isn t"
_YES_NO = {"is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would"}
_NOT_ANSWER = {"it", "this", "that", "answer", "final", "correct", "right", "one", "my", "our"}


def answer_span(text: str, *, end: re.Pattern[str] = _SPAN_END) -> str | None:
    """The raw short answer of ``text``, before normalisation, or None.

    The span starts after the last answer statement ("answer is", "answer:", "final answer:",
    "answers are", ...) if a span follows it, else it is the last ``\\boxed{...}``, else the
    last sentence of the last non-empty line. It ends at ``end``: by default the first line
    break, sentence end (``.``/``!``/``?`` then a space), ``,``/``;`` then a space, or `` (``.
    Markdown ``*``, backticks and quotes around it, and a leading "so"/"therefore"/"thus"/
    "hence"/"in conclusion"/"overall" go. A span without a letter or a digit is none."""
    text = text.replace("*", "").replace("`", "")
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if phrases and (span := _span(text[phrases[-1].end() :], end)):
        return span
    boxed = extract_boxed(text)
    if boxed is not None:
        return _span(_TEXT_CMD.sub(r"\1", boxed), end)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", lines[-1].strip()) if s.strip()]
    return _span(sentences[-1] if sentences else lines[-1], end)


def _span(rest: str, end_at: re.Pattern[str]) -> str | None:
    rest = _FILLER.sub("", rest.lstrip())
    end = end_at.search(rest)
    span = (rest[: end.start()] if end else rest).strip(" \t\"'“”‘’:")
    return span if any(c.isalnum() for c in span) else None


def extract_text(text: str, question: str | None = None) -> str | None:
    """The short answer of ``text``, normalised (:func:`normalize_text`), or None.

    Its sentence is found as :func:`answer_span` finds the span (not cut at commas), then cut
    into clauses (at ``,``, ``;``, ``:``, a dash, `` (``, "but", "though", "however"...).
    The answer is the first clause not negated ("not", "no", "never", "n't": "It isn't Lyon,
    it's Paris" and "Paris, not Lyon" are "paris"; "Not Paris." and "I don't know" are None),
    hedges dropped ("Probably Paris, I think" is "paris"). "<x> is/are/was/were <y>"
    answers ``y``, or ``x`` if ``y`` says nothing: with ``question``, its words at either
    end say nothing (asked "What is the capital of France?", "Paris is the capital of
    France" is "paris"; with no question, "capital of france"), nor do "it", "this", "the
    answer"... Failing that, a bare "yes"/"no"; else, unless the question asks yes or no,
    a clause of only its words ("The sun is larger", asked "Which is larger, the sun or the
    moon?", is "sun")."""
    span = answer_span(text, end=_SENTENCE_END)
    if span is None:
        return None
    asked = normalize_text(question or "").split()
    fallback = echo = None  # a bare yes/no; the question's own words (a choice it lists)
    for clause in _CLAUSE.split(span):
        words = normalize_text(clause)
        while (hedged := _HEDGE.sub("", words, count=1).strip()) != words:
            words = hedged
        if words in ("yes", "no"):
            fallback = fallback or words
        elif words and not _NEGATION.intersection(words.split()):
            verb = list(_COPULA.finditer(words))[-1:]
            sides = [words[verb[0].end() :], words[: verb[0].start()]] if verb else [words]
            for side in sides:
                if answer := _trim(side.split(), {*asked, *_NOT_ANSWER}):
                    return answer
            if asked and asked[0] not in _YES_NO:
                echo = echo or _trim(sides[-1].split(), _NOT_ANSWER) or None
    return fallback or echo


def _trim(words: list[str], drop: set[str]) -> str:
    kept = [i for i, w in enumerate(words) if w not in drop]
    return " ".join(words[kept[0] : kept[-1] + 1]) if kept else ""


# -- one entry point per question ----------------------------------------------------------


def _kind(kind: str, known: Sequence[str]) -> None:
    if kind not in known:
        raise ConfigError(
            f"unknown answer kind {kind!r}",
            key="grader",
            hint=f"one of {', '.join(known)}, or a module:function of yours",
        )


def extract(
    kind: str, text: str, *, choices: Sequence[str] | None = None, question: str | None = None
) -> str | None:
    """The answer of ``text`` of ``kind`` as a canonical string, or None if there is none.

    Equal strings are the same answer: ``number`` is exact (42, -3.5, 1/3: "42.0" and
    "#### 42" are both "42"), ``choice`` a letter, ``boxed`` its number or normalised LaTeX
    (:func:`normalize_latex`), ``text`` the normalised short span (``question`` helps:
    :func:`extract_text`). Group answers by it; :func:`same_answer` allows numbers a tolerance.
    """
    _kind(kind, KINDS)
    if kind == "number":
        value = extract_number(text)
        return None if value is None else _canonical_number(value)
    if kind == "choice":
        return extract_choice(text, choices)
    if kind == "boxed":
        boxed = extract_boxed(text)
        return None if boxed is None else (_boxed_key(boxed) or None)
    return extract_text(text, question)


def same_answer(
    a: str,
    b: str,
    kind: str,
    *,
    choices: Sequence[str] | None = None,
    rel_tol: float = REL_TOL,
    abs_tol: float = 0.0,
) -> bool:
    """Whether predictions ``a`` and ``b`` give the same answer of ``kind``: their
    :func:`extract` strings are equal, or for ``number`` the two are within the tolerance.
    A prediction with no answer agrees with nothing, not even another one without."""
    if kind == "number":
        x, y = extract_number(a), extract_number(b)
        return x is not None and y is not None and _close(x, y, rel_tol, abs_tol)
    x_key = extract(kind, a, choices=choices)
    return x_key is not None and x_key == extract(kind, b, choices=choices)


def load_grader(spec: str) -> Callable[[str, Any, Mapping[str, Any]], bool]:
    """The function ``module:function`` names (``mypkg.graders:is_right``), imported now,
    so a wrong name fails at once, not on the first question."""
    module_name, _, name = spec.partition(":")
    hint = "a grader is `module:function`, the module importable (on PYTHONPATH or installed)"
    if not module_name or not name:
        raise ConfigError(f"grader {spec!r} is not module:function", key="grader", hint=hint)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"grader {spec!r}: cannot import {module_name}", key="grader", hint=hint
        ) from e
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(
            f"grader {spec!r}: {module_name} has no function {name}",
            key="grader",
            hint=f"define `def {name}(prediction, gold, item) -> bool` in {module_name}",
        )
    return function


def _gold_texts(gold: object) -> list[str]:
    golds = list(gold) if isinstance(gold, list | tuple) else [gold]
    if not golds or not all(isinstance(g, str) for g in golds):
        raise ConfigError(
            f"the gold answer {gold!r} is not text",
            key="answer",
            hint="give a string, or a list of acceptable strings",
        )
    return [str(g) for g in golds]


def grade(kind: str, predicted_text: str, gold: object, **opts: Any) -> bool:
    """Whether the model's reply ``predicted_text`` answers ``gold`` rightly, by ``kind``:

    - ``number``: :func:`extract_number` of the reply within tolerance of the gold number
      (an int, a float, or text read the same way, "#### 72" included); options
      ``rel_tol`` (default ``REL_TOL``, 1e-6) and ``abs_tol`` (0).
    - ``choice``: :func:`extract_choice` equals the gold letter (gold: a letter, a 0-based
      index, or a choice's text); option ``choices``.
    - ``boxed``: the last box equals the gold (boxed or not) as :func:`extract` compares
      them, or both are numbers within ``rel_tol``/``abs_tol``.
    - ``text``: :func:`extract_text` equals a normalised gold; gold may be a list of
      acceptable answers.
    - ``exact``: :func:`answer_span`, stripped, equals the gold (or one of a list) exactly.
    - ``regex``: the gold is a pattern that fully matches the raw span or the normalised one.
    - ``module:function``: your function, called ``(predicted_text, gold, item)`` with
      option ``item`` (the data row, ``{}`` by default), must return a bool.

    No answer in the reply is wrong. A gold that cannot be read, an unknown kind, a bad
    pattern or grader raise :class:`~massgen.errors.ConfigError`.
    """
    if ":" in kind:
        verdict = load_grader(kind)(predicted_text, gold, opts.get("item") or {})
        if not isinstance(verdict, bool):
            raise ConfigError(
                f"grader {kind!r} returned {type(verdict).__name__}, not a bool",
                key="grader",
                hint="return True when the prediction is right, False otherwise",
            )
        return verdict
    _kind(kind, GRADERS)
    rel_tol, abs_tol = float(opts.get("rel_tol", REL_TOL)), float(opts.get("abs_tol", 0.0))
    if kind == "number":
        want = gold_number(gold)
        got = extract_number(predicted_text)
        return got is not None and _close(got, want, rel_tol, abs_tol)
    if kind == "choice":
        choices = opts.get("choices")
        return extract_choice(predicted_text, choices) == gold_choice(gold, choices)
    if kind == "boxed":
        return _grade_boxed(predicted_text, gold, rel_tol, abs_tol)
    golds = _gold_texts(gold)
    if kind == "text":
        got_text = extract_text(predicted_text)
        return got_text is not None and got_text in {normalize_text(g) for g in golds}
    span = answer_span(predicted_text)
    if span is None:
        return False
    if kind == "exact":
        return span.strip() in {g.strip() for g in golds}
    try:
        pattern = re.compile(golds[0])
    except re.error as e:
        raise ConfigError(
            f"the gold pattern {golds[0]!r} is not a regular expression: {e}",
            key="answer",
            hint="a Python `re` pattern, matched against the whole answer",
        ) from e
    normalized = normalize_text(span)
    return bool(pattern.fullmatch(span) or (normalized and pattern.fullmatch(normalized)))


def gold_number(gold: object) -> Fraction:
    value: Fraction | None
    if isinstance(gold, int | float) and not isinstance(gold, bool):
        value = Fraction(str(gold))
    elif isinstance(gold, str):
        value = extract_number(gold) if "####" in gold else parse_number(gold)
    else:
        value = None
    if value is None:
        raise ConfigError(
            f"the gold answer {gold!r} is not a number",
            key="answer",
            hint='give a number, or text with one numeral ("1,234.5", "3/4", "#### 42")',
        )
    return value


def _grade_boxed(predicted_text: str, gold: object, rel_tol: float, abs_tol: float) -> bool:
    if not isinstance(gold, str | int | float) or isinstance(gold, bool):
        raise ConfigError(
            f"the gold answer {gold!r} is not text", key="answer", hint="give the answer as text"
        )
    gold_answer = extract_boxed(str(gold)) or str(gold).strip()
    if not gold_answer:
        raise ConfigError(
            f"the gold answer {gold!r} is empty",
            key="answer",
            hint="give the expected answer, boxed or not",
        )
    got = extract_boxed(predicted_text)
    if got is None:
        return False
    x, y = _boxed_number(got), _boxed_number(gold_answer)
    if x is not None and y is not None:
        return _close(x, y, rel_tol, abs_tol)
    return _boxed_key(got) == _boxed_key(gold_answer)
