"""Eval data files: the published layouts read as stored, graders inferred, and every bad row
a ConfigError naming the file, the line and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from massgen.errors import ConfigError
from massgen.eval import load_items
from massgen.eval.grading import check, majority


def write(tmp_path: Path, rows: list, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_solutions_are_read_as_their_final_number(tmp_path):
    path = write(tmp_path, [{"question": "Clips?", "answer": "48/2 = <<48/2=24>>24\n#### 1,072"}])
    [item] = load_items(path)
    assert (item.grader, item.gold) == ("number", "1072")
    assert item.prompt.startswith("Clips?") and "Answer: <number>" in item.prompt
    assert check(item, "so 1072 clips.\nAnswer: 1,072").correct
    assert not check(item, "Answer: 1071").correct
    assert item.id.startswith("q-")  # stable: a hash of the question


def test_multiple_choice_rows_in_mmlu_arc_and_gpqa_layouts(tmp_path):
    mmlu = {"id": "m", "question": "Largest?", "choices": ["1", "9", "4"], "answer": 1}
    arc = {
        "id": "a",
        "question": {
            "stem": "Colour of sky?",
            "choices": [{"label": "1", "text": "green"}, {"label": "2", "text": "blue"}],
        },
        "answerKey": "2",
    }
    gpqa = {
        "Question": "Noble gas?",
        "Correct Answer": "Neon",
        "Incorrect Answer 1": "Iron",
        "Incorrect Answer 2": "Salt",
        "Incorrect Answer 3": "Tin",
    }
    m, a, g = load_items(write(tmp_path, [mmlu, arc, gpqa]))
    assert (m.grader, m.gold) == ("choice", 1) and "B. 9" in m.prompt
    assert (a.question, a.choices, a.gold) == ("Colour of sky?", ("green", "blue"), "B")
    assert sorted(g.choices or ()) == ["Iron", "Neon", "Salt", "Tin"]
    letter = "ABCD"[(g.choices or ()).index("Neon")]
    assert check(g, f"Answer: {letter}").correct and check(g, "The answer is Neon.").correct
    again = load_items(write(tmp_path, [gpqa], "again.jsonl"))[0]
    assert again.choices == g.choices  # the order is fixed by the question, not drawn anew


def test_a_row_may_widen_the_tolerance_of_its_number(tmp_path):
    rows = [
        {"id": "pi", "question": "Pi?", "answer": 3.14159, "abs_tol": 0.01},
        {"id": "e", "question": "e?", "answer": 2.71828},
    ]
    pi, e = load_items(write(tmp_path, rows))
    assert check(pi, "Answer: 3.14").correct and not check(pi, "Answer: 3.1").correct
    assert not check(e, "Answer: 2.718").correct  # the default: one in a million


def test_math_rows_grade_the_boxed_answer(tmp_path):
    row = {"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}
    [item] = load_items(write(tmp_path, [row]))
    assert (item.grader, item.gold) == ("boxed", "\\frac{1}{2}")
    assert check(item, "so \\boxed{0.5}").correct and not check(item, "0.5").correct


def test_csv_rows_with_choices_and_graders_inferred(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "id,question,answer,choices,grader\n"
        'n,"Sum of 2 and 2?",4,,\n'
        'c,"Pick",B,"[""x"", ""y""]",\n'
        't,"Who wrote Hamlet?",Shakespeare,,\n'
        'r,"A year?",19\\d\\d,,regex\n'
    )
    n, c, t, r = load_items(path)
    assert [i.grader for i in (n, c, t, r)] == ["number", "choice", "text", "regex"]
    assert check(t, "It was written by Shakespeare.").correct is False  # copula rule: span
    assert check(t, "Answer: Shakespeare").correct
    assert check(r, "Answer: 1969").correct and not check(r, "Answer: 2001").correct
    assert load_items(path, limit=2) == [n, c]


@pytest.mark.parametrize(
    ("line", "key", "hint_has"),
    [
        ('{"answer": 3}', "question", "question"),
        ('{"question": "q?"}', "answer", "expected answer"),
        ('{"question": "q?", "answer": "Z", "choices": ["a", "b"]}', "answer", "letter"),
        ('{"question": "q?", "answer": 1, "grader": "fuzzy"}', "grader", "number"),
        ('{"question": "q?", "answer": "x", "grader": "nosuch.mod:fn"}', "grader", "module"),
        ('{"question": "q?", "answer": "(", "grader": "regex"}', "answer", None),
        ('{"question": "q?", "answer": "one", "grader": "number"}', "answer", "numeral"),
        ('{"question": "q?", "answer": 1, "abs_tol": "wide"}', "abs_tol", "0.01"),
        ("{not json", None, None),
    ],
)
def test_a_bad_row_names_file_line_and_key(tmp_path, line, key, hint_has):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "fine?", "answer": 1}\n' + line + "\n")
    with pytest.raises(ConfigError) as info:
        load_items(path)
    assert (info.value.file, info.value.line) == (str(path), 2)
    assert info.value.key == key
    if hint_has:
        assert hint_has in (info.value.hint or "") + info.value.message


def test_duplicate_ids_missing_files_and_empty_files_are_refused(tmp_path):
    dup = write(
        tmp_path, [{"id": 1, "question": "a", "answer": 1}, {"id": 1, "question": "b", "answer": 2}]
    )
    with pytest.raises(ConfigError) as info:
        load_items(dup)
    assert (info.value.line, info.value.key) == (2, "id")
    for path in (tmp_path / "none.jsonl", write(tmp_path, [], "empty.jsonl"), tmp_path / "x.txt"):
        with pytest.raises(ConfigError) as info:
            load_items(path)
        assert info.value.file == str(path)


def test_a_majority_reads_answers_and_breaks_ties_by_the_earliest_seat(tmp_path):
    [item] = load_items(write(tmp_path, [{"question": "n?", "answer": 4}]))
    replies = ["Answer: 5", "I think 4", "Answer: 4.0", "no idea"]
    vote = majority(item, {f"s{i}": r for i, r in enumerate(replies)})
    assert (vote.answer, vote.winner, vote.support) == ("4", "s1", 0.5)
    assert vote.distribution == {"4": 2, "5": 1}
    tie = majority(item, {"a": "Answer: 7", "b": "Answer: 4", "c": "words only"})
    assert (tie.answer, tie.winner) == ("7", "a")
    # a reply with no answer agrees with nothing: a group of one, first in a tie of ones
    none = majority(item, {"a": "no", "b": "idea"})
    assert (none.answer, none.winner, none.support, none.distribution) == (None, "a", 0.5, {})
