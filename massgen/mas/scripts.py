"""Lua scripts of the Redis transport, one per check-then-act step that must be atomic (times
come from the server's ``TIME``; fenced steps first check the caller holds the entry, in the
PEL), and the :class:`Pipeliner` through which they and every other command share round trips,
using redis-py's public API only."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from massgen.errors import TransportError
from massgen.mas.transport import FIELD

# The functions scripts share: server_now() (ms, from the server's TIME), holds(...) (whether
# the consumer holds the entry), held(...) (which of ids[first..] the consumer holds, as a
# set: one XPENDING per id for a few, else one pass over its pending entries in pages of 1000).
_LIB = """
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function holds(inbox, group, consumer, id)
  local p = redis.call('XPENDING', inbox, group, id, id, 1)
  return #p > 0 and p[1][2] == consumer
end
local function held(inbox, group, consumer, ids, first)
  local out = {}
  if #ids - first < 8 then
    for i = first, #ids do
      if holds(inbox, group, consumer, ids[i]) then out[ids[i]] = true end
    end
    return out
  end
  local want = {}
  for i = first, #ids do want[ids[i]] = true end
  local start = '-'
  while true do
    local p = redis.call('XPENDING', inbox, group, start, '+', 1000, consumer)
    for _, e in ipairs(p) do
      if want[e[1]] then out[e[1]] = true end
    end
    if #p < 1000 then return out end
    start = '(' .. p[#p][1]
  end
end
"""


def _script(body: str) -> str:
    """``body`` after the shared functions (a script calls only those it needs)."""
    return _LIB + body


# KEYS: registry, agent hash. ARGV: agent id, instance id, record, ttl ms, retention
# ms, replica (0/1). 0 when a live non-replica instance holds the id.
REGISTER = _script("""
local now = server_now()
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local iid = fields[i]
  local score = redis.call('ZSCORE', KEYS[1], iid .. ':' .. ARGV[1])
  if iid == ARGV[2] then
    -- this instance again (publishing a new record, or back after being declared dead)
  elseif score and tonumber(score) > now then
    if ARGV[6] ~= '1' or not cjson.decode(fields[i + 1])['replica'] then return 0 end
  else
    redis.call('HDEL', KEYS[2], iid)
    redis.call('ZREM', KEYS[1], iid .. ':' .. ARGV[1])
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2] .. ':' .. ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]))
return 1
""")

# KEYS: registry, agent hash. ARGV: member, ttl ms, retention ms. 0 when declared dead.
HEARTBEAT = _script("""
local now = server_now()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
""")


# KEYS: registry. ARGV: agent key prefix. Returns record json, expiry ms, ... of live instances.
DISCOVER = _script("""
local now = server_now()
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  local m = members[i]
  local rec = redis.call('HGET', ARGV[1] .. string.sub(m, 18), string.sub(m, 1, 16))
  if rec then
    out[#out + 1] = rec
    out[#out + 1] = members[i + 1]
  end
end
return out
""")

# KEYS: registry. ARGV: agent key prefix, retention ms. Marks expired instances dead.
REAP = _script("""
local now = server_now()
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, m in ipairs(members) do
  local key = ARGV[1] .. string.sub(m, 18)
  local iid = string.sub(m, 1, 16)
  local rec = redis.call('HGET', key, iid)
  redis.call('ZREM', KEYS[1], m)
  if rec then
    -- edit the JSON in place: cjson would turn empty lists into objects
    local edited, n = string.gsub(rec, '"status":"%a+","replica":(%a+)}$',
      '"status":"dead","replica":%1}')
    if n == 1 then rec = edited
    else
      local r = cjson.decode(rec)
      r['status'] = 'dead'
      rec = cjson.encode(r)
    end
    redis.call('HSET', key, iid, rec)
    redis.call('PEXPIRE', key, tonumber(ARGV[2]))
    out[#out + 1] = rec
  end
end
return out
""")

# KEYS: inbox, dlq. ARGV: group, consumer, lease ms, cursor, count, max deliveries, maxlen.
# Returns the next cursor, then id, delivery count, blob per entry taken over.
RECLAIM = """
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {r[1]}
local max = tonumber(ARGV[6])
for _, e in ipairs(r[2]) do
  local id = e[1]
  local blob = e[2] and e[2][2] or ''
  local n = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)[1][4]
  if n > max then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'm', blob,
      'reason', 'delivered ' .. (n - 1) .. ' times without success',
      'consumer', ARGV[2], 'entry', id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    out[#out + 1] = id
    out[#out + 1] = n
    out[#out + 1] = blob
  end
end
return out
"""

# KEYS: inbox. ARGV: group, consumer, mode, idle ms, ids... Of the ids the consumer holds,
# mode 'ack' acknowledges them (returns how many; an id listed twice counts once); the others
# return the ids not held: 'renew' restarts their leases, 'release' makes them look idle ms
# old (a reclaim takes them soon), 'uncount' too and takes this delivery off their count.
FENCED = _script("""
local h = held(KEYS[1], ARGV[1], ARGV[2], ARGV, 5)
local mine, lost, mode = {}, {}, ARGV[3]
for i = 5, #ARGV do
  if h[ARGV[i]] then
    mine[#mine + 1] = ARGV[i]
    h[ARGV[i]] = nil
  else lost[#lost + 1] = ARGV[i] end
end
for i = 1, #mine, 1000 do
  local j = math.min(i + 999, #mine)
  if mode == 'ack' then redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, j))
  elseif mode == 'renew' then redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine, i, j))
  else
    for k = i, j do
      local n = redis.call('XPENDING', KEYS[1], ARGV[1], mine[k], mine[k], 1)[1][4]
      if mode == 'uncount' then n = math.max(0, n - 1) end
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, mine[k], 'IDLE', ARGV[4],
        'RETRYCOUNT', n, 'JUSTID')
    end
  end
end
if mode == 'ack' then return #mine end
return lost
""")

# KEYS: inbox, dlq. ARGV: group, consumer, id, blob, reason, maxlen.
DEAD_LETTER = _script("""
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'm', ARGV[4], 'reason', ARGV[5],
  'consumer', ARGV[2], 'entry', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
""")

# KEYS: inbox, reply key, reply stream. ARGV: group, consumer, entry id ('' = unfenced), blob,
# ttl ms. 1 committed (also for the same blob again: a retried commit), 0 duplicate, -1 lease
# lost. A committed or duplicate reply also acknowledges the request.
COMMIT = _script("""
local fenced = ARGV[3] ~= ''
if fenced and not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then
  if redis.call('GET', KEYS[2]) == ARGV[4] then return 1 end
  return -1
end
local result = 1
if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[5]) then
  redis.call('XADD', KEYS[3], '*', 'm', ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
elseif redis.call('GET', KEYS[2]) ~= ARGV[4] then
  result = 0
end
if fenced then redis.call('XACK', KEYS[1], ARGV[1], ARGV[3]) end
return result
""")

# ARGV: seen key prefix, ttl ms, (message id, entry id)... 1: first time or a redelivery of
# the same entry; 0: the id came in another entry (a replay).
FIRST_SEEN = """
local out = {}
for i = 3, #ARGV, 2 do
  local k = ARGV[1] .. ARGV[i]
  if redis.call('SET', k, ARGV[i + 1], 'NX', 'PX', ARGV[2]) then out[#out + 1] = 1
  elseif redis.call('GET', k) == ARGV[i + 1] then out[#out + 1] = 1
  else out[#out + 1] = 0 end
end
return out
"""


# KEYS: inbox, dlq, registry. ARGV: group, agent id, taker, lease ms, max deliveries, dlq
# maxlen, count, hand-back idle ms. Entries idle past the lease whose holder is dead are
# dead-lettered (deliveries used up) or handed to the taker looking idle (JUSTID: count kept);
# dead consumers holding nothing are dropped. Returns {released, dead-lettered, holders}.
ORPHANS = _script("""
local now = server_now()
local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[4], '-', '+', ARGV[7])
local max = tonumber(ARGV[5])
local alive, holders = {}, {}
local released, dead = {}, {}
for _, e in ipairs(p) do
  local id, c, n = e[1], e[2], e[4]
  if c ~= ARGV[3] then
    local live = alive[c]
    if live == nil then
      local s = redis.call('ZSCORE', KEYS[3], c .. ':' .. ARGV[2])
      live = (s and tonumber(s) > now) or false
      alive[c] = live
      if not live then holders[#holders + 1] = c end
    end
    if not live then
      if n >= max then
        local r = redis.call('XRANGE', KEYS[1], id, id)
        local blob = (r[1] and r[1][2] and r[1][2][2]) or ''
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'm', blob,
          'reason', 'delivered ' .. n .. ' times; holder ' .. c .. ' died',
          'consumer', c, 'entry', id)
        redis.call('XACK', KEYS[1], ARGV[1], id)
        dead[#dead + 1] = id
      else
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, id, 'IDLE', ARGV[8], 'JUSTID')
        released[#released + 1] = id
      end
    end
  end
end
for _, c in ipairs(holders) do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, c) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c)
  end
end
return {released, dead, holders}
""")

# KEYS: inboxes. ARGV: "<key index>:<length>" per message, the blobs end to end. One XADD each.
ADD = """
local pos = 1
for k, n in string.gmatch(ARGV[1], '(%d+):(%d+)') do
  redis.call('XADD', KEYS[tonumber(k)], '*', 'm', string.sub(ARGV[2], pos, pos + n - 1))
  pos = pos + n
end
return pos
"""


class Pipeliner:
    """Commands issued while a pipeline is in flight go out together in the next one: the
    first caller writes at once (no extra loop turn), later ones share a round trip. Stream
    appends of one flush become one ``XADD``, or one script call doing them all (a reply per
    message would cost the client more than Lua costs the server)."""

    def __init__(self, client: Callable[[], aioredis.Redis], held: Callable[..., Any]) -> None:
        self._client = client
        self._held = held
        self._queue: list[tuple[Sequence[Sequence[Any]], asyncio.Future[list[Any]]]] = []
        self._adds: list[tuple[list[Any], list[Any], asyncio.Future[list[Any]]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._shas: dict[str, str] = {}

    async def _lead(self) -> None:
        """Flush at once what an idle pipeliner was given; a task takes what comes meanwhile.
        (Inline in callers' paths only when idle: a coroutine per command costs ~1 us.)"""
        self._busy = True
        try:
            await self._flush()
        finally:
            if self._queue or self._adds:
                self._task = asyncio.ensure_future(self._drain())
            else:
                self._busy = False

    async def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of ``commands``, error replies as exception objects. A command
        ``("LUA", source, keys, args)`` runs a Lua script (loaded again if forgotten)."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, fut))
        if not self._busy:
            await self._lead()
        return await fut

    async def call(self, *args: Any) -> Any:
        [reply] = await self.run([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.call("LUA", source, keys, args)

    async def add(self, keys: list[Any], blobs: list[Any]) -> None:
        """``XADD key * m blob`` for each pair."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._adds.append((keys, blobs, fut))
        if not self._busy:
            await self._lead()
        [reply] = await fut
        if isinstance(reply, Exception):
            raise reply

    async def _drain(self) -> None:
        try:
            while True:
                if not (self._queue or self._adds):
                    await asyncio.sleep(0)  # callers the last flush resumed may send at once
                    if not (self._queue or self._adds):
                        return
                await self._flush()
        finally:
            self._busy = False

    def _command(self, c: Sequence[Any]) -> Sequence[Any]:
        if c[0] != "LUA":
            return c
        source, keys, args = c[1], c[2], c[3]
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        return ("EVALSHA", sha, len(keys), *keys, *args)

    async def _execute(self, commands: list[Sequence[Any]]) -> list[Any]:
        if len(commands) == 1:  # the latency path: one held connection, no pipeline object
            return list(await self._held("", 0.0, [self._command(commands[0])]))
        pipe = self._client().pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*self._command(c))
        return list(await pipe.execute(raise_on_error=False))

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        adds, self._adds = self._adds, []
        commands = [c for cs, _ in batch for c in cs]
        if adds:
            keys = [k for ks, _, _ in adds for k in ks]
            blobs = [b for _, bs, _ in adds for b in bs]
            if len(keys) == 1:
                commands.append(("XADD", keys[0], "*", FIELD, blobs[0]))
            else:  # two arguments for them all: redis-py encodes each argument in Python
                index: dict[Any, int] = {}
                spec = [
                    f"{index.setdefault(k, len(index) + 1)}:{len(b)}"
                    for k, b in zip(keys, blobs, strict=True)
                ]
                commands.append(("LUA", ADD, list(index), [" ".join(spec), b"".join(blobs)]))
        futures = [fut for _, fut in batch] + [fut for _, _, fut in adds]
        try:
            replies = await self._execute(commands)
            lost = [i for i, r in enumerate(replies) if isinstance(r, rexc.NoScriptError)]
            if lost:  # a restarted Redis forgot the scripts: load them, run those again
                for source in {commands[i][1] for i in lost}:
                    await self._client().script_load(source)
                for i, r in zip(
                    lost, await self._execute([commands[i] for i in lost]), strict=True
                ):
                    replies[i] = r
        except BaseException as e:
            err = e if isinstance(e, Exception) else TransportError(f"interrupted: {e!r}")
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)
                    fut.exception()  # the caller sees it; nobody else must log it
            if not isinstance(e, Exception):
                raise
            return
        i = 0
        for cs, fut in batch:
            if not fut.done():
                fut.set_result(replies[i : i + len(cs)])
            i += len(cs)
        for _, _, fut in adds:
            if not fut.done():
                fut.set_result(replies[i:])

    async def aclose(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
