"""What every built-in tool shares: typed settings from the team file's ``tools:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from massgen.errors import ConfigError
from massgen.tools.base import Tool


class ToolSettings(BaseModel):
    """Base of built-in settings: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class BuiltinTool(Tool):
    """A built-in: ``Tool(settings)`` or ``Tool(key=value, ...)``; ``base_dir`` resolves
    relative paths in the settings (the config file's folder)."""

    Settings: ClassVar[type[ToolSettings]] = ToolSettings

    def __init__(
        self, settings: ToolSettings | None = None, *, base_dir: Path | None = None, **options: Any
    ) -> None:
        if settings is None:
            try:
                settings = self.Settings.model_validate(options)
            except ValidationError as e:
                item = e.errors()[0]
                key = ".".join(str(p) for p in item["loc"]) or None
                raise ConfigError(item["msg"], key=key) from None
        elif options:
            raise TypeError("pass either a Settings value or keyword settings, not both")
        self.settings = settings
        self.base_dir = base_dir
        self.setup()

    def setup(self) -> None:
        """Check and prepare settings once, when the tool is built."""
