"""The error tree in massgen/errors.py's docstring is the tree the classes form."""

from __future__ import annotations

import re

import massgen.errors as errors


def test_the_docstring_draws_every_error_under_its_parent() -> None:
    tree = errors.__doc__ or ""
    drawn = re.findall(r"^ {4}([│ ]*)([├└]── )?(\w+)", tree, flags=re.MULTILINE)
    depth = {name: len(indent) // 4 + bool(branch) for indent, branch, name in drawn}
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.MassGenError)
    }
    assert set(depth) == set(classes), "draw every error class in the docstring, and only those"
    stack: list[str] = []
    for *_, name in drawn:
        del stack[depth[name] :]
        if stack:
            assert classes[name].__bases__[0] is classes[stack[-1]], name  # then a builtin
        stack.append(name)


def test_moved_errors_keep_their_public_homes() -> None:
    from massgen.distributed import SecretRefused, TurnRefused, WorkerLost
    from massgen.memory import ContextLimitExceeded

    assert WorkerLost is errors.WorkerLost and TurnRefused is errors.TurnRefused
    assert SecretRefused is errors.SecretRefused
    assert ContextLimitExceeded is errors.ContextLimitExceeded
