"""The Tool interface: a name, a description, an argument model, and ``execute``.

Subclass :class:`Tool` and write ``execute`` (sync or async); its type hints become the
argument model whose JSON schema is sent to the model, unless you set ``Args`` to a pydantic
model yourself. Or decorate a plain function with :func:`tool`.

A tool never crashes a run: bad arguments, errors and timeouts go back to the model as an
error result (see :mod:`massgen.tools.runner`). Raise :class:`~massgen.errors.ToolError`
with a message meant for the model when a call cannot be served.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from massgen.errors import ToolError
from massgen.types import CompletionRequest, ToolSpec

if TYPE_CHECKING:
    from massgen import events as ev
    from massgen.backends.base import Backend
    from massgen.tools.runner import ToolBox

DEFAULT_TIMEOUT = 30.0
"""Seconds one call may take unless the tool or its settings say otherwise."""
DEFAULT_MAX_OUTPUT = 16_000
"""Characters of a result sent back to the model; the rest is cut with a note."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


class _AnyArgs(BaseModel):
    """Arguments of an ``execute(*args, **kwargs)`` tool: any JSON object."""

    model_config = ConfigDict(extra="allow")


class Tool:
    """Base of every tool.

    Class attributes you may set: ``name`` (default: the class name in snake_case),
    ``description`` (default: the class docstring), ``Args`` (a pydantic model; default:
    derived from ``execute``'s signature), ``timeout`` (seconds per call) and
    ``max_output`` (characters of result kept). Instances may override any of them.
    """

    name: str = ""
    description: str = ""
    Args: ClassVar[type[BaseModel] | None] = None
    timeout: float = DEFAULT_TIMEOUT
    max_output: int = DEFAULT_MAX_OUTPUT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _snake(cls.__name__)
        if not cls.__dict__.get("description"):
            cls.description = _first_paragraph(cls.__doc__) or cls.name

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work; return text (or anything JSON can show). May be ``async``."""
        raise ToolError(f"tool {self.name!r} does not implement execute()")

    # -- the argument model --------------------------------------------------------------
    def args_model(self) -> type[BaseModel]:
        """The pydantic model the model's arguments are validated with."""
        explicit = type(self).Args
        if explicit is not None:
            return explicit
        cached = self.__dict__.get("_args_model")
        if cached is None:
            cached = model_from_signature(self._target(), f"{type(self).__name__}Args")
            self.__dict__["_args_model"] = cached
        return cached

    def _target(self) -> Callable[..., Any]:
        return self.execute

    def spec(self) -> ToolSpec:
        """What is offered to the model: name, description and the JSON schema."""
        schema = self.args_model().model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return ToolSpec(self.name, self.description, schema)

    @classmethod
    def plan_turn(
        cls,
        backend: Backend,
        request: CompletionRequest,
        tools: ToolBox,
        on_event: Callable[[ev.Event], None] | None,
        agent: str,
    ) -> tuple[Backend, CompletionRequest]:
        """A turn's last say on its request and backend, once per tool class in the agent's
        toolbox (``web_search`` swaps itself for the provider's own search here). The
        default changes nothing."""
        return backend, request

    # -- calling -------------------------------------------------------------------------
    async def run(self, arguments: Mapping[str, Any]) -> str:
        """Validate ``arguments``, run ``execute`` (sync ones in a thread), return text.

        Raises :class:`ToolError` for bad arguments; whatever ``execute`` raises propagates.
        """
        model = self.args_model()
        try:
            args = model.model_validate(dict(arguments))
        except ValidationError as e:
            raise ToolError("bad arguments: " + _brief(e)) from None
        kwargs = {k: getattr(args, k) for k in type(args).model_fields}
        kwargs.update(args.model_extra or {})
        target = self._target()
        if inspect.iscoroutinefunction(target):
            out = await target(**kwargs)
        else:
            out = await asyncio.to_thread(target, **kwargs)
            if inspect.isawaitable(out):
                out = await out
        return render(out)


def render(value: Any) -> str:
    """A result as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False, default=str)


def _brief(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def model_from_signature(fn: Callable[..., Any], model_name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s keyword-callable parameters (``self`` left out).

    A function taking only ``*args``/``**kwargs`` accepts any JSON object.
    """
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolError(f"{fn.__qualname__}: positional-only parameters cannot be tool args")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    if not fields:
        return _AnyArgs
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


class FunctionTool(Tool):
    """A tool made from a plain function by :func:`tool`."""

    def __init__(
        self,
        fn: Callable[..., Any | Awaitable[Any]],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output: int | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME.fullmatch(self.name):
            raise ToolError(f"bad tool name {self.name!r}: use letters, digits, _ and -")
        self.description = description or _first_paragraph(fn.__doc__) or self.name
        if timeout is not None:
            self.timeout = timeout
        if max_output is not None:
            self.max_output = max_output

    def _target(self) -> Callable[..., Any]:
        return self.fn

    def args_model(self) -> type[BaseModel]:
        cached = self.__dict__.get("_args_model")
        if cached is None:
            cached = model_from_signature(self.fn, f"{self.name}_args")
            self.__dict__["_args_model"] = cached
        return cached

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output: int | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output: int | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function (sync or async) into a :class:`Tool`.

    Its name is the function's, its description the docstring's first paragraph, its
    arguments its parameters (type hints, defaults, ``Annotated[..., Field(...)]``)::

        @tool
        def lookup(word: str, limit: int = 3) -> str:
            \"\"\"Look a word up in the glossary.\"\"\"
    """

    def wrap(f: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(
            f, name=name, description=description, timeout=timeout, max_output=max_output
        )

    return wrap(fn) if fn is not None else wrap
