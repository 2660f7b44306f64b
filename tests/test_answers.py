"""massgen.answers on replies as models write them: chain of thought, markdown, LaTeX,
several numbers, refusals; and every grader's rule that no answer is never right."""

from __future__ import annotations

import sys
import textwrap
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from massgen.answers import (
    GRADERS,
    KINDS,
    answer_span,
    extract,
    extract_boxed,
    extract_choice,
    extract_number,
    extract_text,
    grade,
    load_grader,
    normalize_latex,
    normalize_text,
    parse_number,
    same_answer,
)
from massgen.errors import ConfigError

GSM8K_COT = """Natalia sold 48/2 = 24 clips in May.
Natalia sold 48 + 24 = 72 clips altogether in April and May.
#### 72"""

VERBOSE_COT = """Let's think step by step.

1. Weng earns $12 an hour for babysitting.
2. She did 50 minutes of babysitting, which is 50/60 = 5/6 of an hour.
3. So she earned 12 * 5/6 = $10.

**Final Answer:** $10"""

LATEX_COT = r"""We need $x^2 - 5x + 6 = 0$, so $(x-2)(x-3) = 0$ and the roots are 2 and 3.
Their product is $2 \cdot 3 = 6$, and the sum of their squares is
$$4 + 9 = \boxed{13}.$$"""

REFUSAL = "I'm sorry, but I can't help with that request."

NUMBERS = [
    (GSM8K_COT, Fraction(72)),
    (VERBOSE_COT, Fraction(10)),
    (LATEX_COT, Fraction(13)),
    ("The answer is 1,234.5", Fraction("1234.5")),
    ("The answer is 1,234.5 km, and the detour was 3 km.", Fraction("1234.5")),
    ("So she spends $1,250.00 in total.", Fraction(1250)),
    ("The final answer is: **42**.", Fraction(42)),
    ("Answer: -17", Fraction(-17)),
    ("The temperature falls to −8 °C overnight.", Fraction(-8)),  # a Unicode minus
    ("Therefore the balance is -$45.", Fraction(-45)),
    ("The tank is 3/4 full.", Fraction(3, 4)),
    (r"The probability is $\frac{3}{8}$.", Fraction(3, 8)),
    (r"so $p = \dfrac{-1}{4}$", Fraction(-1, 4)),
    ("The discount is 25%.", Fraction(25)),
    ("It grew by 12.5 % this year.", Fraction("12.5")),
    ("A light-year is about 9.46e12 km.", Fraction("9.46e12")),
    ("He ran 3km on Monday and 5km on Tuesday, so 8km in all.", Fraction(8)),
    ("The population is 1,000,000 people.", Fraction(1_000_000)),
    ("The answer is 0.5.", Fraction(1, 2)),
    ("It costs .75 dollars.", Fraction(3, 4)),
    ("Costs: 1,23 and 4", Fraction(4)),  # "1,23" is not a thousands group
    ("The answer is 7\n\nNote: I checked 3 times.", Fraction(7)),  # the answer, not the last
    ("Final answer:\n\n12", Fraction(12)),  # nothing on the answer's line: the last number
    (r"The total is 1{,}024 bytes.", Fraction(1024)),
    ("Pages 3-5 were torn.", Fraction(5)),  # a range: 3 and 5, not 3 and -5
    ("#### 1,000", Fraction(1000)),
    ("Answer: 18 apples (since 6 * 3 = 18)", Fraction(18)),
    ("x = 4", Fraction(4)),
    ("The answer is 12 * 5 = 60.", Fraction(60)),  # the stated answer's last "="
    ("To answer this we need 3 steps; in total 12.", Fraction(12)),  # "answer" is not stated
    ("The answers are 4 and 9.", Fraction(4)),
    ("The difference is 10 - 3", Fraction(3)),  # minus apart from its digits: no sign
    ("It was +7 degrees", Fraction(7)),
    ("A loss of $-45.", Fraction(-45)),
]


@pytest.mark.parametrize(("reply", "number"), NUMBERS)
def test_extract_number_finds_the_final_answer(reply: str, number: Fraction) -> None:
    assert extract_number(reply) == number


@pytest.mark.parametrize(
    "reply",
    [
        REFUSAL,
        "",
        "   \n\t",
        "I don't know.",
        "The answer is twelve.",  # number words are not read
        "Use gpt4 or H2O.",  # digits inside words
        "The answer cannot be determined from the information given.",
        r"\boxed{}",
        "1/0",  # no number divides by zero
        "It is 1e999999999 times bigger.",  # beyond MAX_EXPONENT: not read
    ],
)
def test_extract_number_finds_none_where_there_is_none(reply: str) -> None:
    assert extract_number(reply) is None
    assert extract("number", reply) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (" $1,234.50 ", Fraction("1234.5")),
        ("3/4", Fraction(3, 4)),
        ("12 km", Fraction(12)),
        ("-0.25", Fraction(-1, 4)),
        ("twelve", None),
        ("1 or 2", None),
        ("", None),
    ],
)
def test_parse_number_reads_one_numeral(text: str, value: Fraction | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("reply", "canonical"),
    [("42", "42"), ("42.0", "42"), ("#### 42", "42"), ("-3.50", "-3.5"), ("1/3", "1/3")],
)
def test_extract_number_is_canonical(reply: str, canonical: str) -> None:
    assert extract("number", reply) == canonical


# -- multiple choice ---------------------------------------------------------------------------

CAPITALS = ["London", "Paris", "Rome", "Berlin"]

CHOICES = [
    ("Answer: (C)", "C"),
    ("The correct option is C.", "C"),
    ("the answer is (b)", "B"),
    ("**Answer: B**", "B"),
    ("**Answer:** `D`", "D"),
    ("Let me check each.\n(A) is wrong: 3 > 2.\n(B) is wrong too.\n\nC", "C"),
    ("After eliminating the others, I choose D.", "D"),
    ("I'll go with option A, since it is the only one that fits.", "A"),
    ("Option B is correct because the reaction is exothermic.", "B"),
    ("(A) looks plausible, but (D) is the best answer here.", "D"),
    ("The answer is A. Wait, let me re-check... Actually, the answer is C.", "C"),
    (r"So the final choice is $\boxed{E}$.", "E"),
    (r"\boxed{\text{(B)}}", "B"),
    ("Reasoning...\n\n**(J)**", "J"),
    ("Final answer: H", "H"),
    ("Answer: I think so. Final answer: B", "B"),  # "I think" is no answer I
    ("Answer: I", "I"),
    ("Answer:\n\n(B) Paris", "B"),
    ("Answer: Option D", "D"),
    ("answer: d", "D"),  # a small letter ending the line
    ("The correct answer is: **(D) Mitochondria**", "D"),
    ("Between B and D, D is the best choice.", "D"),
    (
        "Let's analyze each option:\nA. Wrong unit.\nB. Right: F = ma.\nC. Wrong sign.\n\n"
        "The answer is B.",
        "B",
    ),
]


@pytest.mark.parametrize(("reply", "letter"), CHOICES)
def test_extract_choice_finds_the_letter(reply: str, letter: str) -> None:
    assert extract_choice(reply) == letter


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("The answer is Paris.", "B"),
        ("Answer: the capital is Rome", "C"),
        ("Paris", "B"),
        ("I am fairly sure it's Berlin, the largest city.", "D"),
        ("Answer: (B) Paris", "B"),
    ],
)
def test_extract_choice_matches_the_choice_text(reply: str, letter: str) -> None:
    assert extract_choice(reply, CAPITALS) == letter


def test_extract_choice_prefers_the_longest_choice_named() -> None:
    choices = ["Paris", "Paris, Texas", "Rome"]
    assert extract_choice("The answer is Paris, Texas", choices) == "B"
    assert extract_choice("Answer: Paris or Rome", choices) is None  # two named: no answer


@pytest.mark.parametrize(
    "reply",
    [
        REFUSAL,
        "",
        "The answer is a bit tricky; I cannot decide.",  # "a" is an article, not a letter
        "I think it is either B or C.",
        "The answer is K.",  # no K in A-J
        "None of the options is right.",
        "Answer: I think it depends on the reading.",  # the "I" of "I think"
        "A. Incorrect\nB. Correct\nC. Incorrect",  # the options echoed, none chosen
    ],
)
def test_extract_choice_finds_none_where_there_is_none(reply: str) -> None:
    assert extract_choice(reply) is None
    assert extract("choice", reply) is None


def test_extract_choice_keeps_to_the_letters_the_choices_have() -> None:
    assert extract_choice("Answer: (E)") == "E"
    assert extract_choice("Answer: (E)", CAPITALS) is None  # four choices: A-D
    assert extract_choice("I don't know, maybe London?", CAPITALS) == "A"
    assert extract_choice("London or Paris, I cannot say", CAPITALS) is None


# -- boxed -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "content"),
    [
        (LATEX_COT, "13"),
        (r"Hence $\boxed{\frac{1}{\sqrt{2}}}$.", r"\frac{1}{\sqrt{2}}"),
        (r"First \boxed{3}, then on reflection \boxed{x^{2}+1}", "x^{2}+1"),  # last wins
        (r"\boxed{ \{1, 2\} }", r"\{1, 2\}"),
        (r"\boxed 5", "5"),
        (r"\fbox{42}", "42"),
        (r"\boxed{7} and then \boxed{unclosed", "7"),  # an unclosed box does not count
    ],
)
def test_extract_boxed_takes_the_last_box(reply: str, content: str) -> None:
    assert extract_boxed(reply) == content


@pytest.mark.parametrize("reply", [REFUSAL, "", r"\boxed{unclosed", r"\boxed{  }", "box 5"])
def test_extract_boxed_finds_none_where_there_is_none(reply: str) -> None:
    assert extract_boxed(reply) is None
    assert extract("boxed", reply) is None


def test_normalize_latex_compares_spelling_not_mathematics() -> None:
    assert normalize_latex(r"\dfrac{1}{2}") == normalize_latex(r"\frac12") == r"\frac{1}{2}"
    assert normalize_latex(r"\left( 1, 2 \right)") == "(1,2)"
    assert normalize_latex(r"90^\circ") == normalize_latex("90^{\\circ}") == "90"
    assert normalize_latex(r"\text{ yes }.") == "yes"
    assert normalize_latex(r"\frac{2}{4}") != normalize_latex(r"\frac{1}{2}")
    assert extract("boxed", r"\boxed{\frac{2}{4}}") == extract("boxed", r"\boxed{0.5}") == "0.5"
    assert extract("boxed", r"\boxed{\$18}") == extract("boxed", r"\boxed{18}") == "18"
    assert extract("boxed", r"\boxed{50\%}") == "50"
    assert extract("boxed", r"\boxed{12\pi}") == r"12\pi"  # not the number 12


# -- short text ----------------------------------------------------------------------------------

PARIS = [
    "Paris",
    "It's Paris.",
    "The capital is Paris",
    "The answer is Paris.",
    "Final answer: **Paris**, the capital and largest city of France.",
    "France is in western Europe. Its capital city has been Paris since 987.\n\nTherefore, Paris.",
    "So the answer is: `Paris` (population 2.1 million).",
    "The capital of France is Paris!",
    r"Thus the city is $\boxed{\text{Paris}}$",
    "It’s Paris.",  # a typographic apostrophe
    "\n\nANSWER: paris\n",
    "To answer this, recall the Capetians. The capital of France is Paris.",
    "Let me find the answer. France's capital? It's Paris.",  # a statement with nothing after
]


@pytest.mark.parametrize("reply", PARIS)
def test_extract_text_finds_the_short_answer(reply: str) -> None:
    assert extract_text(reply) == "paris"


@pytest.mark.parametrize("reply", ["", "   \n ", "The answer is", "**", "The answer is: the."])
def test_extract_text_finds_none_where_there_is_none(reply: str) -> None:
    assert extract_text(reply) is None
    assert extract("text", reply) is None


def test_the_copula_rule_is_what_it_says() -> None:
    assert extract_text("Paris is the capital.") == "capital"  # the documented limit
    assert extract_text("The answers are George Washington and John Adams") == (
        "george washington and john adams"
    )
    assert extract_text("The answer is that it was the Treaty of Versailles.") == (
        "treaty of versailles"
    )


def test_normalize_text_is_squad_normalisation() -> None:
    assert normalize_text("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_text("An apple, a day.") == "apple day"
    assert normalize_text("¿Qué?  «Sí»") == "qué sí"
    assert normalize_text("That's it") == "that is it"
    assert normalize_text("theatre anthem") == "theatre anthem"  # articles are whole words


def test_answer_span_keeps_the_raw_span() -> None:
    assert answer_span("The answer is **New York City**, of course.") == "New York City"
    assert answer_span("Hence, 42 (approximately).") == "42"
    assert answer_span("") is None


# -- grading -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "gold", "opts", "right"),
    [
        (GSM8K_COT, "72", {}, True),
        (GSM8K_COT, 72, {}, True),
        (GSM8K_COT, "Natalia sold 24 clips in May.\n#### 72", {}, True),  # a GSM8K gold
        (GSM8K_COT, 73, {}, False),
        (VERBOSE_COT, "$10.00", {}, True),
        ("The answer is 1,234.5", 1234.5, {}, True),
        ("The answer is 0.3333", "1/3", {}, False),  # beyond the default 1e-6
        ("The answer is 0.3333", "1/3", {"rel_tol": 1e-3}, True),
        ("The answer is 1000001", 1_000_000, {}, True),  # relative 1e-6
        ("The answer is 1000002", 1_000_000, {}, False),
        ("The answer is 0.00001", 0, {}, False),  # gold 0: exact unless abs_tol
        ("The answer is 0.00001", 0, {"abs_tol": 1e-4}, True),
        ("The answer is -5", 5, {}, False),
        ("The answer is 25%", "25", {}, True),
    ],
)
def test_grade_number(reply: str, gold: object, opts: dict, right: bool) -> None:
    assert grade("number", reply, gold, **opts) is right


@pytest.mark.parametrize(
    ("reply", "gold", "right"),
    [
        ("Answer: (C)", "C", True),
        ("Answer: (C)", "(c)", True),
        ("Answer: (C)", 2, True),  # a 0-based index, as MMLU stores it
        ("Answer: (C)", "B", False),
        ("The answer is Paris.", "Paris", True),  # a gold that is a choice's text (GPQA)
        ("The answer is Paris.", "B", True),
        ("The answer is Rome.", "B", False),
    ],
)
def test_grade_choice(reply: str, gold: object, right: bool) -> None:
    assert grade("choice", reply, gold, choices=CAPITALS) is right


@pytest.mark.parametrize(
    ("reply", "gold", "right"),
    [
        (LATEX_COT, "13", True),
        (LATEX_COT, r"\boxed{13}", True),
        (LATEX_COT, "13.0", True),
        (LATEX_COT, "14", False),
        (r"$\boxed{\dfrac{1}{2}}$", r"\frac{1}{2}", True),
        (r"$\boxed{\dfrac{1}{2}}$", "0.5", True),
        (r"$\boxed{x^2 + 1}$", "x^2+1", True),
        (r"$\boxed{x^2 + 1}$", "x^2-1", False),
        (r"$\boxed{(1, 2)}$", r"\left(1,2\right)", True),
        (r"the area is $\boxed{12\pi}$", "12", False),
        (r"the area is $\boxed{12\pi}$", r"12\pi", True),
    ],
)
def test_grade_boxed(reply: str, gold: str, right: bool) -> None:
    assert grade("boxed", reply, gold) is right


def test_grade_text_exact_and_regex() -> None:
    assert grade("text", "It's Paris.", "Paris")
    assert grade("text", "The answer is The Beatles.", ["Beatles", "The Fab Four"])
    assert not grade("text", "The answer is London.", "Paris")
    assert grade("exact", "The answer is Paris.", "Paris")
    assert not grade("exact", "The answer is paris.", "Paris")  # exact: case counts
    assert grade("regex", "The answer is 10 m/s.", r"10\s*m/s")
    assert grade("regex", "The answer is The Beatles!", r"beatles")  # the normalised span
    assert not grade("regex", "The answer is Beatles tribute band.", r"beatles")  # full match
    assert grade("regex", "ANSWER: Yes", r"(?i)yes")


NO_ANSWER = [REFUSAL, "", "   ", "I cannot determine this."]
GOLDS = {
    "number": "42",
    "choice": "A",
    "boxed": "42",
    "text": "i cannot determine this",  # a gold a refusal might look like
    "exact": "I cannot determine this",
    "regex": r"(?s).*",  # takes any answer, and still not no answer
}


def _no_answer_cases() -> list[tuple[str, str]]:
    """Each grader with each reply that has no answer for it. Left out: the last reply has a
    span, which text and exact grade as the gold it is, and any reply with a span matches a
    pattern that takes anything (right is right there)."""
    cases = []
    for kind in GRADERS:
        for reply in NO_ANSWER:
            if kind in ("text", "exact") and reply == NO_ANSWER[3]:
                continue
            if kind == "regex" and answer_span(reply) is not None:
                continue
            cases.append((kind, reply))
    return cases


@pytest.mark.parametrize(("kind", "reply"), _no_answer_cases())
def test_no_answer_is_wrong_for_every_grader(kind: str, reply: str) -> None:
    assert grade(kind, reply, GOLDS[kind]) is False


@pytest.mark.parametrize("kind", GRADERS)
def test_an_unparseable_answer_is_wrong_for_every_grader(kind: str) -> None:
    gibberish = "**\n\n`` ... ??? ``"
    assert grade(kind, gibberish, GOLDS[kind]) is False


def test_no_answer_is_wrong_even_against_an_empty_looking_gold() -> None:
    # the gold normalises to nothing, so does the reply: never a match of two nothings
    assert grade("text", "The.", "the") is False
    assert grade("text", "", "a") is False


@pytest.mark.parametrize(
    ("kind", "gold"),
    [
        ("number", "many"),
        ("number", "1 or 2"),
        ("number", None),
        ("choice", "Z"),
        ("choice", 12),
        ("choice", "Madrid"),
        ("boxed", ""),
        ("boxed", None),
        ("text", 42),
        ("text", []),
        ("regex", "(unclosed"),
    ],
)
def test_a_gold_that_cannot_be_read_is_a_config_error(kind: str, gold: object) -> None:
    with pytest.raises(ConfigError) as e:
        grade(kind, "The answer is 42", gold, choices=CAPITALS)
    assert e.value.key == "answer" and e.value.hint


def test_an_unknown_kind_is_a_config_error_naming_the_kinds() -> None:
    with pytest.raises(ConfigError) as e:
        grade("numeric", "42", "42")
    assert e.value.hint is not None and "number" in e.value.hint
    with pytest.raises(ConfigError):
        extract("letter", "A")


# -- custom graders --------------------------------------------------------------------------


@pytest.fixture
def graders_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of graders on sys.path, as a user's would be."""
    name = f"my_graders_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            def contains(prediction, gold, item):
                return gold.lower() in prediction.lower() and item.get("strict") is not True

            def not_a_bool(prediction, gold, item):
                return "yes"

            def crashes(prediction, gold, item):
                raise RuntimeError("boom")

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_custom_grader_is_called_with_prediction_gold_and_item(graders_module: str) -> None:
    spec = f"{graders_module}:contains"
    assert grade(spec, "I think PARIS.", "paris") is True
    assert grade(spec, "I think PARIS.", "paris", item={"strict": True}) is False
    assert grade(spec, "London", "paris") is False


@pytest.mark.parametrize(
    "spec",
    [
        "no_such_module_xyz:grade",
        "{mod}:missing",
        "{mod}:NOT_CALLABLE",
        "{mod}:",
        ":grade",
    ],
)
def test_a_wrong_grader_name_is_a_config_error_with_a_hint(spec: str, graders_module: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_grader(spec.format(mod=graders_module))
    assert e.value.key == "grader" and e.value.hint


def test_a_grader_that_returns_no_bool_is_a_config_error(graders_module: str) -> None:
    with pytest.raises(ConfigError) as e:
        grade(f"{graders_module}:not_a_bool", "x", "y")
    assert e.value.key == "grader"


def test_a_grader_that_raises_lets_its_error_through(graders_module: str) -> None:
    with pytest.raises(RuntimeError):
        grade(f"{graders_module}:crashes", "x", "y")


# -- agreement -----------------------------------------------------------------------------------


def test_same_answer_on_text_ignores_the_wording() -> None:
    for a in PARIS:
        for b in ("Paris", "It's Paris.", "The capital is Paris"):
            assert same_answer(a, b, "text"), (a, b)
    assert not same_answer("It's Paris.", "It's London.", "text")


def test_same_answer_on_numbers() -> None:
    assert same_answer("42", "42.0", "number")
    assert same_answer("42", "#### 42", "number")
    assert same_answer(GSM8K_COT, "The answer is 72 clips.", "number")
    assert same_answer("1/4", "0.25", "number")
    assert not same_answer("42", "43", "number")
    assert same_answer("0.3333", "1/3", "number", rel_tol=1e-3)
    assert not same_answer("0.3333", "1/3", "number")


def test_same_answer_on_choices_and_boxes() -> None:
    assert same_answer("Answer: (C)", "The correct option is C.", "choice")
    assert same_answer("The answer is Paris.", "B", "choice", choices=CAPITALS)
    assert not same_answer("Answer: (C)", "Answer: (D)", "choice")
    assert same_answer(r"\boxed{\dfrac12}", r"so $\boxed{\frac{1}{2}}$", "boxed")


@pytest.mark.parametrize("kind", KINDS)
def test_two_replies_without_an_answer_do_not_agree(kind: str) -> None:
    assert not same_answer(REFUSAL, REFUSAL, kind) or kind == "text"
    assert not same_answer("", "", kind)
    assert not same_answer("", "42" if kind != "choice" else "A", kind)


def test_two_refusals_agree_as_text_only_because_they_say_the_same_thing() -> None:
    # text has no "unparseable": the same sentence is the same answer
    assert same_answer(REFUSAL, REFUSAL, "text")
    assert not same_answer(REFUSAL, "", "text")


@given(st.integers(-(10**12), 10**12), st.integers(0, 6))
def test_numbers_survive_formatting(value: int, decimals: int) -> None:
    exact = Decimal(value).scaleb(-decimals)
    plain, grouped = f"{exact:f}", f"{exact:,f}"
    for reply in (plain, grouped, f"The answer is {grouped}.", f"work...\n#### {grouped}"):
        assert extract_number(reply) == Fraction(value, 10**decimals), reply
    assert same_answer(plain, f"**Answer:** ${grouped}", "number")


@given(st.text(max_size=200))
def test_extractors_never_raise_on_any_text(reply: str) -> None:
    for kind in KINDS:
        got = extract(kind, reply)
        assert got is None or (isinstance(got, str) and got)
    assert extract_choice(reply, CAPITALS) in (None, "A", "B", "C", "D")


@pytest.mark.parametrize(
    ("reply", "kind", "answer"),
    [
        ("\\boxed{" * 20_000 + "\\boxed{7}", "boxed", "7"),  # many boxes that never close
        ("\n!" * 100_000 + "\nC", "choice", "C"),  # many lines of only punctuation
        ("1," * 50_000 + " so 12", "number", "12"),
        ("(" * 50_000 + "Answer: " * 5_000 + "Paris", "text", "paris"),
    ],
)
def test_extraction_is_linear_on_long_adversarial_replies(
    reply: str, kind: str, answer: str
) -> None:
    # A quadratic scan of these would run for minutes, past the suite's per-test timeout.
    assert extract(kind, reply) == answer
