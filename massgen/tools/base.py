"""The Tool interface: a name, a description, an argument model, and ``execute``."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypedDict, TypeVar, Unpack, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from massgen.errors import ConfigError, ToolError
from massgen.tools.context import ToolContext
from massgen.tools.images import ToolOutput
from massgen.types import CompletionRequest, ToolSpec

if TYPE_CHECKING:
    from massgen.backends.base import Backend
    from massgen.tools.runner import ToolBox

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def _first_paragraph(doc: str | None) -> str:
    return " ".join(inspect.cleandoc(doc or "").split("\n\n")[0].split())


class Tool:
    """Base of every tool. Set ``name`` (default: the class name in snake_case),
    ``description`` (default: the docstring's first paragraph), ``Args``, ``timeout``
    (seconds per call) or ``max_output`` (characters kept) on the class or an instance."""

    name: str = ""
    description: str = ""
    Args: ClassVar[type[BaseModel] | None] = None
    timeout: float = 30.0  # seconds per call
    max_output: int = 16_000  # characters of a result sent back; the rest is cut with a note
    group: ClassVar[bool] = False
    """A group stands for tools known only once it starts (an MCP server's): the toolbox asks
    :meth:`expand` for them before a turn's first request, and agents share one group."""
    source: tuple[str | None, int | None] = (None, None)
    """A group's ``tools:`` entry (file, line): where mistakes found as it starts point."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()
        if not cls.__dict__.get("description"):
            cls.description = _first_paragraph(cls.__doc__) or cls.name

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work; return text, a :class:`ToolOutput` (with images) or anything JSON can
        show. May be ``async``."""
        raise ToolError(f"tool {self.name!r} does not implement execute()")

    @functools.cached_property
    def _signature(self) -> tuple[type[BaseModel], bool]:
        """The argument model (``Args``, else ``execute``'s parameters; ``*args``/``**kwargs``
        only: any object) and whether ``execute`` takes a :class:`ToolContext` first."""
        fn = self.execute
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError):
            hints = {}
        fields: dict[str, Any] = {}
        takes_ctx = False
        for i, param in enumerate(inspect.signature(fn).parameters.values()):
            annotation = hints.get(param.name, param.annotation)
            if i == 0 and annotation in (ToolContext, "ToolContext"):
                takes_ctx = True
                continue
            if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.kind is param.POSITIONAL_ONLY:
                raise ToolError(
                    f"{fn.__qualname__}: positional-only parameters cannot be tool args"
                )
            if annotation is param.empty:
                annotation = Any
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (annotation, default)
        config = ConfigDict(extra="forbid" if fields else "allow")
        model = create_model(f"{self.name}_args", __config__=config, **fields)
        return type(self).Args or model, takes_ctx

    def spec(self) -> ToolSpec:
        """What is offered to the model: name, description and the JSON schema."""
        schema = self._signature[0].model_json_schema()
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return ToolSpec(self.name, self.description, schema)

    @classmethod
    def plan_turn(
        cls, backend: Backend, request: CompletionRequest, tools: ToolBox, ctx: ToolContext
    ) -> tuple[Backend, CompletionRequest]:
        """A turn's last say on its request and backend, once per tool class in the toolbox."""
        return backend, request

    async def expand(self, ctx: ToolContext | None = None) -> Sequence[Tool]:
        """The tools a group stands for (see ``group``), for a turn of ``ctx``'s run; a plain
        tool is itself."""
        return (self,)

    async def aclose(self) -> None:
        """Release what the tool holds (processes, connections); the orchestrator's ``aclose``
        calls it."""

    def check_backend(
        self, backend: Backend, *, model: str | None = None, with_functions: bool = False
    ) -> object:
        """Raise :class:`ConfigError` now if this tool cannot work on ``backend``."""
        return None

    async def run(
        self, arguments: Mapping[str, Any], ctx: ToolContext | None = None
    ) -> str | ToolOutput:
        """Validate ``arguments`` (:class:`ToolError` if bad), run ``execute`` (sync ones in a
        thread), return text (or a ToolOutput) as it is, anything else as JSON."""
        model, takes_ctx = self._signature
        try:
            args = model.model_validate(dict(arguments))
        except ValidationError as e:
            brief = "; ".join(
                f"{'.'.join(str(p) for p in item['loc']) or 'arguments'}: {item['msg']}"
                for item in e.errors()[:5]
            )
            raise ToolError("bad arguments: " + brief) from None
        kwargs = dict(args)  # fields, then extra keys (``*args``/``**kwargs`` tools)
        target = self.execute
        lead = (ctx or ToolContext(),) if takes_ctx else ()
        if inspect.iscoroutinefunction(target):
            out = await target(*lead, **kwargs)
        else:
            out = await asyncio.to_thread(target, *lead, **kwargs)
            if inspect.isawaitable(out):
                out = await out
        if isinstance(out, str | ToolOutput):
            return out
        if isinstance(out, BaseModel):
            return out.model_dump_json()
        return json.dumps(out, ensure_ascii=False, default=str)


class ToolOptions(TypedDict, total=False):
    name: str
    description: str
    timeout: float
    max_output: int


class FunctionTool(Tool):
    """A tool made from a plain function by :func:`tool`."""

    def __init__(self, fn: Callable[..., Any | Awaitable[Any]], **options: Unpack[ToolOptions]):
        self.fn = fn
        self.name = options.get("name") or fn.__name__
        if not _NAME.fullmatch(self.name):
            raise ToolError(f"bad tool name {self.name!r}: use letters, digits, _ and -")
        self.description = options.get("description") or _first_paragraph(fn.__doc__) or self.name
        self.timeout = options.get("timeout", self.timeout)
        self.max_output = options.get("max_output", self.max_output)
        self._signature  # noqa: B018 (a bad signature fails here, where the tool is made)

    @property
    def execute(self) -> Callable[..., Any]:
        return self.fn

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


@overload
def tool(fn: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(**options: Unpack[ToolOptions]) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(
    fn: Callable[..., Any] | None = None, /, **options: Unpack[ToolOptions]
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Turn a function (sync or async) into a :class:`Tool`: its name, docstring's first
    paragraph and parameters (hints, defaults, ``Annotated[..., Field(...)]``) describe it."""
    if fn is not None:
        return FunctionTool(fn, **options)
    return lambda f: FunctionTool(f, **options)


class ToolSettings(BaseModel):
    """Base of built-in settings: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


COMMON_KEYS = ("use", "timeout", "max_output", "description")  # every ``tools:`` entry takes


S = TypeVar("S", bound=ToolSettings)


class BuiltinTool(Tool, Generic[S]):
    """A built-in: ``Tool(settings)`` or ``Tool(key=value, ...)``; ``base_dir`` resolves
    relative paths in the settings (the config file's folder). ``S``: its settings model."""

    Settings: ClassVar[type[ToolSettings]] = ToolSettings
    settings: S

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            models = [a for a in typing.get_args(base) if isinstance(a, type)]
            cls.Settings = models[0] if models else cls.Settings

    def __init__(
        self, settings: S | None = None, *, base_dir: Path | None = None, **options: Any
    ) -> None:
        if settings is not None and options:
            raise TypeError("pass either a Settings value or keyword settings, not both")
        self.settings = settings or self.parse(options)  # type: ignore[assignment]
        self.base_dir = base_dir
        self.setup()

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ToolSettings:
        """``options`` as settings; a :class:`ConfigError` naming the first bad key."""
        try:
            return cls.Settings.model_validate(options)
        except ValidationError as e:
            item = e.errors()[0]
            allowed = ", ".join([*cls.Settings.model_fields, *COMMON_KEYS])
            given = item.get("ctx") or {}  # config.models.fail's place and hint, if it made it
            hint = (
                f"settings of {cls.name}: {allowed}"
                if item["type"] == "extra_forbidden"
                else given.get("hint")
            )
            key = ".".join(str(p) for p in (*item["loc"], *given.get("at", ()))) or None
            raise ConfigError(item["msg"], key=key, hint=hint) from None

    def setup(self) -> None:
        """Check and prepare settings once, when the tool is built."""
