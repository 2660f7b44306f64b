"""The live registry on Redis as rows, one per agent: what ``massgen agents list`` prints and
the dashboard shows (hosts, heartbeat age, turns in flight, dead letters, signing)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from massgen.errors import BusAuthError, TransportError

if TYPE_CHECKING:
    from massgen.mas import AgentRecord, InboxStats, Signer, Transport

_DEFAULT_TTL = 15.0  # BusSettings().heartbeat_ttl, for agents that do not publish theirs
COUNTERS = ("in_flight", "processed", "failed")


async def registry_rows(transport: Transport, signer: Signer | None) -> list[dict[str, Any]]:
    """Read the registry and the inboxes' counters through ``transport`` (connected)."""
    records = await transport.discover()
    try:
        stats = await transport.inbox_stats()
    except (TransportError, BusAuthError):  # e.g. an ACL user without SCAN: a nicety
        stats = []
    return live_rows(records, stats, time.time(), signer=signer)


def live_rows(
    records: Sequence[AgentRecord],
    stats: Sequence[InboxStats],
    now: float,
    *,
    signer: Signer | None = None,
) -> list[dict[str, Any]]:
    """One row per agent id: its replicas' counters summed, the freshest heartbeat, and
    whether each instance signs with ``signer``'s secret (see :func:`signing`)."""
    dead_letters = {s.agent_id: s.dead_letters for s in stats}
    grouped: dict[str, list[AgentRecord]] = {}
    for r in sorted(records, key=lambda r: r.started):
        grouped.setdefault(r.id, []).append(r)
    rows = []
    for name, recs in sorted(grouped.items()):
        instances: list[dict[str, Any]] = [
            {
                "instance_id": r.instance_id,
                "host": r.host,
                "pid": r.pid,
                "heartbeat_age": _age(r, now),
                "secret": signing(signer, r),
                **{k: _int(r.metadata.get(k)) for k in COUNTERS},
            }
            for r in recs
        ]
        mismatch = [
            f"{i['instance_id']}@{i['host']}/{i['pid']}"
            for i in instances
            if i["secret"] in ("other secret", "unsigned")
        ]
        signs = sorted({i["secret"] for i in instances})
        meta = recs[0].metadata
        rows.append(
            {
                "name": name,
                "capabilities": list(recs[0].capabilities),
                "backend": meta.get("backend"),
                "model": meta.get("model"),
                "role": meta.get("role"),
                "status": recs[0].status.value,
                "replicas": len(recs),
                "hosts": [f"{r.host}/{r.pid}" for r in recs],
                "heartbeat_age": min(i["heartbeat_age"] for i in instances),
                **{k: sum(i[k] for i in instances) for k in COUNTERS},
                "dead_letters": dead_letters.get(name, 0),
                "secret": f"MISMATCH {len(mismatch)}/{len(recs)}" if mismatch else ", ".join(signs),
                "secret_mismatch": mismatch,
                "instances": instances,
            }
        )
    return rows


def signing(signer: Signer | None, record: AgentRecord) -> str:
    """Whether ``record``'s instance signs with ``signer``'s secret, from the proof it
    publishes: ``ok``, ``other secret``, ``unsigned`` (we sign, it does not), or, with no
    secret given here, ``signed (not checked ...)`` or ``-``."""
    if signer is None:
        return "signed (not checked: no secret given)" if record.proof else "-"
    if not record.proof:
        return "unsigned"
    return "ok" if signer.proves(record.instance_id, record.proof) else "other secret"


def _age(record: AgentRecord, now: float) -> float:
    ttl = record.metadata.get("heartbeat_ttl")
    ttl = float(ttl) if isinstance(ttl, int | float) else _DEFAULT_TTL
    return round(max(0.0, now - (record.expires - ttl)), 1)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
