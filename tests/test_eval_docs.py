"""Every `massgen eval` command that docs/eval.md and the README show runs as shown, in a
folder holding the files it names: the page's own team file (gsm8k.yaml, from its YAML
block), data in the published layout, the repository's configs/ and examples/; OpenAI is
the provider simulator. (tests/test_docs_examples.py runs the pages' other examples.)"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from tests.procs import DUMMY_KEYS, run_massgen
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("docs/eval.md", "README.md")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for lang, body in _FENCE.findall((ROOT / page).read_text()):
            if lang in ("", "sh", "console"):
                found += [
                    (page, line) for line in body.splitlines() if line.startswith("massgen eval")
                ]
    return found


def test_the_pages_show_eval_commands():
    shown = [c for _, c in commands()]
    assert "massgen eval configs/offline.yaml examples/arith.jsonl" in shown
    assert any(c.startswith("massgen eval gsm8k.yaml gsm8k-test.jsonl") for c in shown)


def gsm8k_rows() -> list[dict]:
    """GSM8K's test layout: a worked solution ending ``#### N``."""
    return [
        {
            "question": f"Sam has {i} apples and buys {i + 3} more. How many now?",
            "answer": f"{i} + {i + 3} = <<{i}+{i + 3}={2 * i + 3}>>{2 * i + 3}\n#### {2 * i + 3}",
        }
        for i in range(1, 9)
    ]


def answer(prompt: str) -> str:
    """A model that is right on even counts of apples, and votes for the first answer."""
    if "<answer label=" in prompt:
        return '{"vote": "A", "reason": "checked"}'
    m = re.search(r"Sam has (\d+) apples", prompt)
    i = int(m.group(1)) if m else 0
    return f"Step by step... #### {2 * i + 3 if i % 2 == 0 else 2 * i + 4}"


def folder(tmp_path: Path) -> Path:
    blocks = [
        b for lang, b in _FENCE.findall((ROOT / "docs/eval.md").read_text()) if lang == "yaml"
    ]
    team = next(b for b in blocks if "name: gsm8k-debate" in b)
    (tmp_path / "gsm8k.yaml").write_text(team)
    (tmp_path / "gsm8k-test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows()))
    offline = (ROOT / "configs/offline.yaml").read_text()  # as team.yaml, its quiz file found
    quiz = str(ROOT / "examples/arith.jsonl")
    (tmp_path / "team.yaml").write_text(offline.replace("../examples/arith.jsonl", quiz))
    capital = {
        "question": "What is the capital of France?",
        "answer": ".*paris.*",
        "grader": "regex",
    }
    (tmp_path / "questions.jsonl").write_text(json.dumps(capital) + "\n")
    return tmp_path


@pytest.mark.parametrize(("page", "command"), commands(), ids=lambda x: x)
def test_an_eval_command_of_the_docs_runs_as_shown(page, command, tmp_path, sim: ProviderSimulator):
    sim.responder = lambda request: Text(answer(request.prompt_text))
    cwd = folder(tmp_path)
    args = shlex.split(command)[1:]
    for arg in args:
        if arg.startswith(("configs/", "examples/")):  # the repository's, as a reader has them
            if not (ROOT / arg).exists():
                pytest.skip(f"{arg} is not in this checkout yet")
            (cwd / arg).parent.mkdir(exist_ok=True)
            shutil.copy(ROOT / arg, cwd / arg)
    env = {**DUMMY_KEYS, "OPENAI_BASE_URL": sim.openai_base_url}
    done = run_massgen(*args, "--quiet", cwd=cwd, env=env, timeout=120)
    assert done.returncode == 0, f"{page}: {command}\n{done.stderr}"
    assert done.stdout.startswith("| method | n | accuracy |")
    data = Path(args[2])
    written = cwd / (data.stem + ".eval")  # in the current folder, wherever the data is
    report = json.loads((written / "report.json").read_text())
    assert (written / "chart.html").read_text().count("<svg") == 1
    assert report["questions"] > 0
    if "gsm8k" in command:  # the simulated model is right on 4 of 8 questions alone
        alone = next(m for m in report["methods"] if m["method"] == "single:a1")
        assert (alone["n"], alone["correct"]) == (8, 4)
        assert yaml.safe_load((cwd / "gsm8k.yaml").read_text())["orchestrator"]["consensus"] == {
            "max_rounds": 2
        }
