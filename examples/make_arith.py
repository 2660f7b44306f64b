"""Write arithmetic word problems with exact integer answers: the project's own sample data.

    python examples/make_arith.py                       # examples/arith.jsonl (200) and
                                                        # examples/arith_choice.jsonl (50)
    python examples/make_arith.py --count 2000 --seed 7 --out /tmp/arith.jsonl --choices 0

Each line is ``{"id", "question", "answer"}`` (the answer an integer), as ``massgen eval``
and the replay backend's ``quiz:`` read them; the multiple-choice file adds ``choices`` (four
numbers) and gives the answer as a letter. The same ``--seed`` and ``--count`` write the same
file on every machine (``random.Random(seed)``, no other source). Questions are distinct, and
take two or three steps of whole-number arithmetic, as GSM8K's easier ones do.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("Ada", "Bo", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
THINGS = ("apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells")

Problem = tuple[str, int]


def _shop(r: random.Random) -> Problem:
    name, thing = r.choice(NAMES), r.choice(THINGS)
    packs, per, price = r.randint(2, 9), r.randint(3, 12), r.randint(2, 15)
    question = (
        f"{name} buys {packs} packs of {thing} with {per} {thing} in each pack. Each pack costs "
        f"{price} dollars. How many dollars does {name} pay for all the {thing}?"
    )
    return question, packs * price


def _share(r: random.Random) -> Problem:
    name, thing = r.choice(NAMES), r.choice(THINGS)
    friends, each, left = r.randint(2, 8), r.randint(3, 15), r.randint(1, 9)
    total = friends * each + left
    question = (
        f"{name} has {total} {thing} and gives {each} to each of {friends} friends. "
        f"How many {thing} does {name} have left?"
    )
    return question, left


def _savings(r: random.Random) -> Problem:
    name = r.choice(NAMES)
    start, weekly, weeks = r.randint(5, 60), r.randint(3, 25), r.randint(2, 10)
    spent = r.randint(1, start + weekly * weeks - 1)
    question = (
        f"{name} has {start} dollars and saves {weekly} dollars every week for {weeks} weeks, "
        f"then spends {spent} dollars on a gift. How many dollars does {name} have now?"
    )
    return question, start + weekly * weeks - spent


def _rows(r: random.Random) -> Problem:
    rows, per, extra = r.randint(3, 14), r.randint(4, 16), r.randint(2, 30)
    question = (
        f"A hall has {rows} rows of {per} chairs, and {extra} more chairs are brought in for "
        "a concert. How many chairs are there in all?"
    )
    return question, rows * per + extra


def _trip(r: random.Random) -> Problem:
    name = r.choice(NAMES)
    speed, hours, back = r.randint(20, 90), r.randint(2, 6), r.randint(5, 40)
    question = (
        f"{name} drives at {speed} kilometres per hour for {hours} hours, then drives "
        f"{back} kilometres back the same way. How many kilometres from the start is {name}?"
    )
    return question, speed * hours - back


def _pages(r: random.Random) -> Problem:
    name = r.choice(NAMES)
    days, per, more = r.randint(2, 7), r.randint(5, 30), r.randint(2, 20)
    total = days * per + more + r.randint(1, 200)
    question = (
        f"A book has {total} pages. {name} reads {per} pages a day for {days} days and "
        f"{more} pages on the next day. How many pages are left to read?"
    )
    return question, total - days * per - more


def _bakery(r: random.Random) -> Problem:
    trays, per, boxes = r.randint(3, 12), r.randint(6, 24), r.randint(2, 6)
    made = trays * per
    sold = r.randint(1, made // boxes) * boxes
    question = (
        f"A bakery bakes {trays} trays of {per} muffins and sells {sold} of them in boxes of "
        f"{boxes}. How many boxes does it sell?"
    )
    return question, sold // boxes


def _ages(r: random.Random) -> Problem:
    a, b = r.sample(NAMES, 2)
    age, times, years = r.randint(3, 15), r.randint(2, 4), r.randint(2, 20)
    question = (
        f"{a} is {age} years old and {b} is {times} times as old as {a}. "
        f"How old will {b} be in {years} years?"
    )
    return question, age * times + years


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    _shop,
    _share,
    _savings,
    _rows,
    _trip,
    _pages,
    _bakery,
    _ages,
)


def generate(count: int, seed: int = 0) -> list[dict[str, object]]:
    """``count`` distinct problems ``{"id", "question", "answer"}``, the same for a seed."""
    r, seen, rows = random.Random(seed), set(), []
    while len(rows) < count:
        question, answer = r.choice(TEMPLATES)(r)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"id": f"arith-{seed}-{len(rows):05d}", "question": question, "answer": answer})
    return rows


def with_choices(rows: list[dict[str, object]], seed: int = 0) -> list[dict[str, object]]:
    """The problems as multiple choice: four distinct numbers, the answer a letter A-D."""
    r, out = random.Random(f"choices:{seed}"), []
    for row in rows:
        gold = int(str(row["answer"]))
        wrong: set[int] = set()
        while len(wrong) < 3:
            if (guess := gold + r.choice((-1, 1)) * r.randint(1, 12)) != gold:
                wrong.add(guess)
        choices = [gold, *sorted(wrong)]
        r.shuffle(choices)
        letter = "ABCD"[choices.index(gold)]
        question = {"id": f"{row['id']}-mc", "question": row["question"]}
        out.append({**question, "choices": [str(c) for c in choices], "answer": letter})
    return out


def write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200, help="problems (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=HERE / "arith.jsonl")
    parser.add_argument("--choices", type=int, default=50, help="multiple-choice problems")
    parser.add_argument("--choice-out", type=Path, default=HERE / "arith_choice.jsonl")
    args = parser.parse_args(argv)
    rows = generate(args.count, args.seed)
    write(args.out, rows)
    print(f"wrote {len(rows)} problems to {args.out}")
    if args.choices:
        mc = with_choices(generate(args.choices, args.seed + 1), args.seed + 1)
        write(args.choice_out, mc)
        print(f"wrote {len(mc)} multiple-choice problems to {args.choice_out}")


if __name__ == "__main__":
    main()
