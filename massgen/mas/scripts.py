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

# KEYS: registry, agent hash. ARGV: agent id, instance id, record json, ttl ms, retention ms,
# replica (0/1). Returns 1, or 0 when a live non-replica instance holds the id.
REGISTER = (
    _NOW
    + """
local fields = redis.call('HGETALL', KEYS[2])
for i = 1, #fields, 2 do
  local iid = fields[i]
  local score = redis.call('ZSCORE', KEYS[1], iid .. ':' .. ARGV[1])
  if score and tonumber(score) > now then
    if ARGV[6] ~= '1' or not cjson.decode(fields[i + 1])['replica'] then return 0 end
  elseif iid ~= ARGV[2] then
    redis.call('HDEL', KEYS[2], iid)
    redis.call('ZREM', KEYS[1], iid .. ':' .. ARGV[1])
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2] .. ':' .. ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]))
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

# KEYS: registry, agent hash, inbox. ARGV: member, instance id, group.
# Drops the instance; drops its consumer from the group only if it holds nothing.
DEREGISTER = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local ok, held = pcall(redis.call, 'XPENDING', KEYS[3], ARGV[3], '-', '+', 1, ARGV[2])
  if ok and #held == 0 then
    pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[3], ARGV[3], ARGV[2])
  end
end
return 1
"""

# KEYS: registry. ARGV: agent key prefix. Returns the live records as one string of frames
# "<expiry ms> <length>\n<record json>" (one reply element to parse).
DISCOVER = (
    _NOW
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  local m = members[i]
  local rec = redis.call('HGET', ARGV[1] .. string.sub(m, 18), string.sub(m, 1, 16))
  if rec then out[#out + 1] = members[i + 1] .. ' ' .. string.len(rec) .. '\\n' .. rec end
end
return table.concat(out)
"""
)

# KEYS: registry. ARGV: agent key prefix, retention ms. Marks expired instances dead.
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
    local r = cjson.decode(rec)
    r['status'] = 'dead'
    rec = cjson.encode(r)
    redis.call('HSET', key, iid, rec)
    redis.call('PEXPIRE', key, tonumber(ARGV[2]))
    out[#out + 1] = rec
  end
end
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
    _HOLDS
    + """
local mine, lost = {}, {}
for i = 3, #ARGV do
  if holds(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) then mine[#mine + 1] = ARGV[i]
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
    _HOLDS
    + """
local mine = {}
for i = 3, #ARGV do
  if holds(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) then mine[#mine + 1] = ARGV[i] end
end
for i = 1, #mine, 1000 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(mine, i, math.min(i + 999, #mine)))
end
return #mine
"""
)

# KEYS: inbox. ARGV: group, consumer, id, idle ms. Makes a held entry look idle so reclaim
# takes it soon (JUSTID: the delivery count is not bumped; reclaim bumps it).
RELEASE = (
    _HOLDS
    + """
if not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
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
# duplicate) reply also acknowledges the request: answering it is finishing it.
COMMIT = (
    _HOLDS
    + """
local fenced = ARGV[3] ~= ''
if fenced and not holds(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return -1 end
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

# KEYS: one inbox per message. ARGV: the blobs, in the same order. Stores them all.
SEND = """
for i = 1, #KEYS do redis.call('XADD', KEYS[i], '*', 'm', ARGV[i]) end
return #KEYS
"""

# KEYS: inbox. ARGV: group, consumer, count. Reads new entries without blocking and returns
# them as one string of frames "<id> <length>\\n<blob>": one reply element to parse, not five
# per entry, which is most of a reader's cost with a pure-Python Redis client.
FETCH = """
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
if not r then return '' end
local out = {}
for _, e in ipairs(r[1][2]) do
  local blob = e[2] and e[2][2] or ''
  out[#out + 1] = e[1] .. ' ' .. string.len(blob) .. '\\n' .. blob
end
return table.concat(out)
"""
