"""`massgen config validate|schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def validate(path: Path) -> int:
    from massgen.config import load

    cfg = load(path)
    o = cfg.orchestrator
    print(f"{path}: ok — {len(cfg.agents)} agents, strategy {o.strategy}")
    for a in cfg.agents:
        b = cfg.backend_for(a)
        model = a.model or b.model or "-"
        extra = f", fallback {a.fallback}" if a.fallback else ""
        print(f"  {a.name}: {b.type} {model}{extra}")
    return 0


def schema() -> int:
    from massgen.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return 0
