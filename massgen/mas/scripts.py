"""Lua scripts of the Redis transport: each makes one check-then-act step atomic.

Times come from the server (``TIME``), never from a client clock. Fenced operations check in
the pending entries list (PEL) that the caller's consumer still holds the entry.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_HOLDS = """
local function holds(inbox, group, consumer, id)
  local p = redis.call('XPENDING', inbox, group, id, id, 1)
  return #p > 0 and p[1][2] == consumer
end
"""

# held(inbox, group, consumer, ids, first): which of ids[first..] the consumer holds, as a
# set. Few ids: one XPENDING each. Many: one pass over the consumer's pending entries, pages
# of 1000 (its in-flight work, ~batch entries), instead of one XPENDING per id.
_HELD = (
    _HOLDS
    + """
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
)

# KEYS: registry, agent hash, registry version. ARGV: agent id, instance id, record json,
# ttl ms, retention ms, replica (0/1). Returns 1, or 0 when a live non-replica instance holds
# the id.
REGISTER = (
    _NOW
    + """
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
redis.call('INCR', KEYS[3])
return 1
"""
)

# KEYS: registry, agent hash. ARGV: member, ttl ms, retention ms. 0 when declared dead.
HEARTBEAT = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
"""
)

# KEYS: registry, agent hash, inbox, registry version. ARGV: member, instance id, group.
# Drops the instance; drops its consumer from the group only if it holds nothing.
DEREGISTER = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[4])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local ok, held = pcall(redis.call, 'XPENDING', KEYS[3], ARGV[3], '-', '+', 1, ARGV[2])
  if ok and #held == 0 then
    pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[3], ARGV[3], ARGV[2])
  end
end
return 1
"""

# KEYS: registry, registry version. ARGV: agent key prefix, the version the caller parsed
# ('' for none). Returns {version, full, data}. When the version is the caller's, full is 0 and
# data the live members and expiries as lines "<member> <expiry ms>" (no record is read);
# otherwise full is 1 and data the live records as frames
# "<member> <expiry ms> <length>\n<record json>". One reply of three strings either way.
DISCOVER = (
    _NOW
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local version = redis.call('GET', KEYS[2]) or '0'
local out = {}
if version == ARGV[2] then
  for i = 1, #members, 2 do out[#out + 1] = members[i] .. ' ' .. members[i + 1] .. '\\n' end
  return {version, 0, table.concat(out)}
end
for i = 1, #members, 2 do
  local m = members[i]
  local rec = redis.call('HGET', ARGV[1] .. string.sub(m, 18), string.sub(m, 1, 16))
  if rec then
    out[#out + 1] = m .. ' ' .. members[i + 1] .. ' ' .. string.len(rec) .. '\\n' .. rec
  end
end
return {version, 1, table.concat(out)}
"""
)

# KEYS: registry, registry version. ARGV: agent key prefix, retention ms. Marks expired
# instances dead.
REAP = (
    _NOW
    + """
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
if #members > 0 then redis.call('INCR', KEYS[2]) end
return out
"""
)

# KEYS: inbox, dlq. ARGV: group, consumer, lease ms, cursor, count, max deliveries, dlq maxlen.
# Returns next cursor, then id, delivery count, blob for each entry taken over.
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

# KEYS: inbox. ARGV: group, consumer, ids... Restarts the leases held; returns ids not held.
RENEW = (
    _HELD
    + """
local h = held(KEYS[1], ARGV[1], ARGV[2], ARGV, 3)
local mine, lost = {}, {}
for i = 3, #ARGV do
  if h[ARGV[i]] then mine[#mine + 1] = ARGV[i]
  else lost[#lost + 1] = ARGV[i] end
end
for i = 1, #mine, 1000 do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0,
    unpack(mine, i, math.min(i + 999, #mine)))
end
return lost
"""
)

# KEYS: inbox. ARGV: group, consumer, ids... Acks the ids held; returns how many.
ACK = (
    _HELD
    + """
local h = held(KEYS[1], ARGV[1], ARGV[2], ARGV, 3)
local mine = {}
for i = 3, #ARGV do
  if h[ARGV[i]] then
    mine[#mine + 1] = ARGV[i]
    h[ARGV[i]] = nil -- an id listed twice is acked (and counted) once
  end
end
for i = 1, #mine, 1000 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, math.min(i + 999, #mine)))
end
return #mine
"""
)

# KEYS: inbox. ARGV: group, consumer, id, idle ms, uncount ('1': take this delivery off
# the count). Makes a held entry look idle so reclaim takes it soon (JUSTID: the delivery
# count is not bumped; reclaim bumps it).
RELEASE = (
    _HOLDS
    + """
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
if ARGV[5] == '1' then
  local n = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)[1][4]
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4],
    'RETRYCOUNT', math.max(0, n - 1), 'JUSTID')
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
end
return 1
"""
)

# KEYS: inbox, dlq. ARGV: group, consumer, id, blob, reason, maxlen.
DEAD_LETTER = (
    _HOLDS
    + """
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'm', ARGV[4], 'reason', ARGV[5],
  'consumer', ARGV[2], 'entry', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
)

# KEYS: inbox, reply key, reply stream. ARGV: group, consumer, entry id ('' = unfenced),
# blob, reply ttl ms. Returns 1 committed, 0 duplicate, -1 lease lost. A committed (or
# duplicate) reply also acknowledges the request: answering it is finishing it. The same
# blob again (a commit retried after its reply was lost with the connection) is 1 again.
COMMIT = (
    _HOLDS
    + """
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
"""
)

# ARGV: seen key prefix, ttl ms, then message id, entry id pairs. 1 = first time (or the same
# entry again, i.e. a redelivery), 0 = the id already came in another entry (a replay).
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

# KEYS: inbox. ARGV: group. Trims entries below both the oldest pending entry and the
# group's last delivered one: only acknowledged entries go. Returns entries removed.
TRIM = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, ld = nil, nil
  for j = 1, #g, 2 do
    if g[j] == 'name' then name = g[j + 1] end
    if g[j] == 'last-delivered-id' then ld = g[j + 1] end
  end
  if name == ARGV[1] then last = ld end
end
if not last then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local threshold = last
if p[1] > 0 and less(p[2], last) then threshold = p[2] end
local before = redis.call('XLEN', KEYS[1])
redis.call('XTRIM', KEYS[1], 'MINID', '~', threshold)
return before - redis.call('XLEN', KEYS[1])
"""

# KEYS: inbox, dlq. ARGV: group. Returns {length, pending, unread, dead letters}, or false
# when the inbox has no group yet. ``unread`` is the group's lag (Redis 7), counted when
# Redis cannot tell it (after deletions inside the stream).
STATS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local last, lag = nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, ld, lg = nil, nil, nil
  for j = 1, #g, 2 do
    if g[j] == 'name' then name = g[j + 1]
    elseif g[j] == 'last-delivered-id' then ld = g[j + 1]
    elseif g[j] == 'lag' then lg = g[j + 1] end
  end
  if name == ARGV[1] then last, lag = ld, lg end
end
if not last then return false end
if type(lag) ~= 'number' then
  lag = #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 100000)
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
return {redis.call('XLEN', KEYS[1]), pending, lag, redis.call('XLEN', KEYS[2])}
"""

# KEYS: inbox, dlq, registry. ARGV: group, agent id, consumer (the taker), lease ms, max
# deliveries, dlq maxlen, count, hand-back idle ms. Takes entries idle past the lease whose
# holder's instance is dead (registry score expired or gone): dead-letters those delivered
# max times already, hands the others to the taker looking idle for a long time (JUSTID: the
# count is not bumped) so the next live consumer's XAUTOCLAIM takes them, whatever its
# lease. Then drops dead consumers holding nothing.
# Returns {released ids, dead-lettered ids, dead holders}.
ORPHANS = (
    _NOW
    + """
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
"""
)
