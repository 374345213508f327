--[[
apply.lua: fold a batch of one customer's events into its stored state, atomically.

Why a script and not WATCH/MULTI: the fold reads what it writes (stamps, per-order state,
counters), and a script does the read-decide-write of every event of the batch in one round
trip that nothing can interleave with; an optimistic compare-and-set would need a read round
trip, a write round trip and a retry loop under contention, and cannot be pipelined across
customers. Every key below carries the hash tag {customer_id}, so one call is one slot and
the script runs unchanged on Redis Cluster.

KEYS  1 record hash: rendered state, bookkeeping, and the stamp ("micros|marker") of every
        register under "@" + its name (read with the record: no extra round trip per register)
      2 card balances hash                           3 orders hash (order id -> JSON state)
      4 counted orders zset (score = order date)      5 contributions hash (natural key -> JSON)
      6 dedup markers zset (marker -> version after the event was applied)
      7 replay log zset (event JSON, score = event time): the recent events, for erasure
ARGV  1 version known to be published   2 "1" = a snapshot after every applied event
      3 max markers and log entries kept per customer
      4 replay window in microseconds    5 max fields of the record hash (stamps included)
      6.. one JSON event each: {m = marker, t = micros, o = ops}

Erasure and order: an erase at time T wipes the state, then folds again the logged events
dated after T (those that arrived before the erase did), so the record does not depend on
whether they arrived before or after it. This is exact while those events are still in the
log (dated within the window before the customer's latest event, and among the last entries
kept); bookkeeping `lx` records the latest time evicted from the log, beyond which it is not.
Bookkeeping also counts markers (`dn`) and log entries (`ln`) and keeps the oldest logged time
(`lo`), so that bounding them costs nothing until there is something to evict.

Returns { outcomes, snapshot... } where outcomes has one letter per event (A applied,
U applied without visible change, I ignored as erased, D duplicate, R refused because it
would grow the record beyond its cap: not applied, not marked, for the dead-letter topic) and
each snapshot is
{ version, index of the event it is due to, {field, old value or false, ...},
{field, value, ...} }. Snapshots are taken after every applied event when asked, else once
at the end; an erase always gets its own, so that its tombstone is never conflated away.

Numbers are kept as the decimal strings they arrive as, and formatted with %d when computed:
Lua would otherwise print large integers in exponent form.

Cost: the record hash (with the stamps) is read once into a table, changed in memory and
written back once (one HSET, one HDEL); markers and log entries are written once per call.
Per event only what it addresses is touched (its order, its card, its natural key), so a
step's cost does not grow with the customer's history.
]]

local R, B, O, LO, K, D, L = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local BOOKKEEPING = { v = true, pv = true, er = true, lx = true, dn = true, ln = true, lo = true }
local NULL = cjson.null
local COUNTED = { PAID = true, FULFILLED = true }

local function fmt(n) return string.format('%d', n) end

-- Byte-wise string order, immune to the server's collation locale.
local function bytes_gt(a, b)
  if a == b then return false end
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- Is stamp (t1, m1) later than (t2, m2)?
local function later(t1, m1, t2, m2)
  if t1 ~= t2 then return t1 > t2 end
  return bytes_gt(m1, m2)
end

-- The record hash as a table; `dirty` lists the fields to write back (nil value = delete).
local rec, dirty, size = {}, {}, 0
do
  local flat = redis.call('HGETALL', R)
  for k = 1, #flat, 2 do rec[flat[k]] = flat[k + 1] end
  size = #flat / 2
end

-- Every change of the record table goes through here, which keeps `size` right.
local function assign(field, value)
  local old = rec[field]
  if old == nil and value ~= nil then
    size = size + 1
  elseif old ~= nil and value == nil then
    size = size - 1
  end
  rec[field], dirty[field] = value, true
end

-- Stamps ("micros|marker"), kept in the record under "@" + register name; not visible.
local function stamp_of(register)
  local s = rec['@' .. register]
  if not s then return nil end
  local bar = string.find(s, '|', 1, true)
  return tonumber(string.sub(s, 1, bar - 1)), string.sub(s, bar + 1)
end

local ev_ts, ev_t, ev_m -- the event being applied: micros as text and number, marker

local function wins(register)
  local t, m = stamp_of(register)
  return t == nil or later(ev_t, ev_m, t, m)
end

local function take(register)
  assign('@' .. register, ev_ts .. '|' .. ev_m)
end

-- Record writes, remembering the first old value of each field changed since the last
-- snapshot (false = absent), so the caller can render the record before and after.
local changed, changed_any = {}, false
local function put(field, value)
  local old = rec[field]
  if old == value then return end
  assign(field, value)
  if changed[field] == nil then changed[field] = old or false end
  changed_any = true
end

local function add(field, delta)
  if delta ~= 0 then put(field, fmt(tonumber(rec[field] or '0') + delta)) end
end

local function touch()
  local ca, ua = rec.ca, rec.ua
  if not ca or ev_t < tonumber(ca) then put('ca', ev_ts) end
  if not ua or ev_t > tonumber(ua) then put('ua', ev_ts) end
end

local ops = {}

-- S field value guard: last-writer-wins register.
ops.S = function(op)
  local field, value, guard = op[2], op[3], op[4]
  if guard ~= NULL then
    local t, m = stamp_of(guard)
    if t and not later(ev_t, ev_m, t, m) then return end
  end
  if not wins(field) then return end
  take(field)
  if value == NULL then put(field, nil) else put(field, value) end
end

-- C prefix register: clear every register under prefix that is older than this event.
ops.C = function(op)
  local prefix, register = op[2], op[3]
  if not wins(register) then return end
  take(register)
  for field in pairs(rec) do
    if string.sub(field, 1, #prefix) == prefix and wins(field) then put(field, nil) end
  end
end

-- B register balance sum_field: last-writer-wins card balance, summed over cards.
ops.B = function(op)
  local register, balance, total = op[2], op[3], op[4]
  if not wins(register) then return end
  take(register)
  local old = tonumber(redis.call('HGET', B, register) or '0')
  redis.call('HSET', B, register, balance)
  add(total, tonumber(balance) - old)
end

-- A field delta ...: counters.
ops.A = function(op)
  for k = 2, #op, 2 do add(op[k], tonumber(op[k + 1])) end
end

-- K key value_field value field delta ...: contribution of the earliest event per key.
ops.K = function(op)
  local key, value_field, value = op[2], op[3], op[4]
  local net, deltas = {}, {}
  local current = redis.call('HGET', K, key)
  if current then
    local c = cjson.decode(current)
    if not later(tonumber(c.t), c.m, ev_t, ev_m) then return end
    for k = 1, #c.d, 2 do net[c.d[k]] = (net[c.d[k]] or 0) - tonumber(c.d[k + 1]) end
  end
  for k = 5, #op, 2 do
    net[op[k]] = (net[op[k]] or 0) + tonumber(op[k + 1])
    deltas[#deltas + 1] = op[k]
    deltas[#deltas + 1] = op[k + 1]
  end
  redis.call('HSET', K, key, cjson.encode({ t = ev_ts, m = ev_m, d = deltas }))
  for field, delta in pairs(net) do add(field, delta) end
  if value_field ~= NULL then put(value_field, value) end
end

-- Order date: created_at of the latest event carrying one, else the earliest event time.
local function order_date(s) return s.d or s.f end

local function refresh_last_order()
  local top = redis.call('ZREVRANGE', LO, 0, 0)
  if #top == 0 then
    put('orders.last_amount', nil)
    put('orders.last_date', nil)
  else
    local s = cjson.decode(redis.call('HGET', O, top[1]))
    put('orders.last_amount', s.a)
    put('orders.last_date', order_date(s))
  end
end

-- O order_id status amount order_date: per-order last-writer-wins, summary of counted orders.
ops.O = function(op)
  local order_id, status, amount, created = op[2], op[3], op[4], op[5]
  local raw = redis.call('HGET', O, order_id)
  local s, was_counted, old_amount, old_date
  if raw then
    s = cjson.decode(raw)
    was_counted, old_amount, old_date = COUNTED[s.s] ~= nil, s.a, order_date(s)
    if ev_t < tonumber(s.f) then s.f = ev_ts end
  else
    s, was_counted = { f = ev_ts }, false
  end
  if created ~= NULL and (s.dt == nil or later(ev_t, ev_m, tonumber(s.dt), s.dm)) then
    s.d, s.dt, s.dm = created, ev_ts, ev_m
  end
  if s.t == nil or later(ev_t, ev_m, tonumber(s.t), s.m) then
    s.s, s.a, s.t, s.m = status, amount, ev_ts, ev_m
  end
  redis.call('HSET', O, order_id, cjson.encode(s))
  local counted, date = COUNTED[s.s] ~= nil, order_date(s)
  add('orders.total_amount',
    (counted and tonumber(s.a) or 0) - (was_counted and tonumber(old_amount) or 0))
  add('orders.total_count', (counted and 1 or 0) - (was_counted and 1 or 0))
  if counted ~= was_counted or (counted and (date ~= old_date or s.a ~= old_amount)) then
    if was_counted then redis.call('ZREM', LO, order_id) end
    if counted then redis.call('ZADD', LO, date, order_id) end
    refresh_last_order()
  end
end

-- Bookkeeping writes: not part of the record, so not tracked as changes.
local function book(field, value)
  if rec[field] ~= value then assign(field, value) end
end

-- Replay log entries of this call, written with one ZADD (before an erase reads the log).
local log_args = {}
local function flush_log()
  if #log_args == 0 then return end
  redis.call('ZADD', L, unpack(log_args))
  local oldest = tonumber(rec.lo or log_args[1])
  for k = 1, #log_args, 2 do oldest = math.min(oldest, tonumber(log_args[k])) end
  book('ln', fmt(tonumber(rec.ln or '0') + #log_args / 2))
  book('lo', fmt(oldest))
  log_args = {}
end

-- Wipe everything but the bookkeeping; returns the logged events dated after the erase.
local function erase()
  flush_log()
  local after = redis.call('ZRANGEBYSCORE', L, '(' .. ev_ts, '+inf')
  redis.call('ZREMRANGEBYSCORE', L, '-inf', ev_ts)
  if ev_t < tonumber(rec.lx or '-1') then
    redis.log(redis.LOG_WARNING, 'customer-worker: erase older than the replay log of ' .. R)
  end
  for field in pairs(rec) do
    if string.byte(field) == 64 then -- '@': a stamp, not part of the record
      assign(field, nil)
    elseif not BOOKKEEPING[field] then
      put(field, nil)
    end
  end
  redis.call('DEL', B, O, LO, K)
  put('er', ev_ts)
  -- The log now holds exactly the events dated after the erase.
  local oldest = redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')[2]
  book('ln', #after > 0 and fmt(#after) or nil)
  book('lo', oldest)
  return after
end

-- How many fields an event could add to the record, at most (a cheap upper bound).
local function growth(ev)
  local n = 4 -- created/updated times and a version may appear
  for _, op in ipairs(ev.o) do
    local kind = op[1]
    if kind == 'S' or kind == 'B' then
      if rec['@' .. op[2]] == nil then n = n + 1 end
      if kind == 'S' and op[3] ~= NULL and rec[op[2]] == nil then n = n + 1 end
    elseif kind == 'A' then
      for k = 2, #op, 2 do
        if rec[op[k]] == nil then n = n + 1 end
      end
    elseif kind == 'K' then
      if op[3] ~= NULL and rec[op[3]] == nil then n = n + 1 end
      for k = 5, #op, 2 do
        if rec[op[k]] == nil then n = n + 1 end
      end
    elseif kind == 'O' then
      n = n + 4 -- the order summary's fields
    end
  end
  return n
end

local function apply_event(ev)
  ev_ts, ev_t, ev_m = ev.t, tonumber(ev.t), ev.m
  touch()
  for _, op in ipairs(ev.o) do ops[op[1]](op) end
end

local function snapshot(version, index)
  local diff, state = {}, {}
  for field, old in pairs(changed) do
    diff[#diff + 1] = field
    diff[#diff + 1] = old
  end
  for field, value in pairs(rec) do
    if string.byte(field) ~= 64 then -- stamps stay here
      state[#state + 1] = field
      state[#state + 1] = value
    end
  end
  changed = {}
  return { version, index, diff, state }
end

local version = tonumber(rec.v or '0')
local published = tonumber(rec.pv or '0')
if tonumber(ARGV[1]) > published then
  published = tonumber(ARGV[1])
  book('pv', ARGV[1])
end
local each_change = ARGV[2] == '1'
local erased_until = tonumber(rec.er or '-1')

local outcomes, result = {}, { '' }
local new_markers, markers_args = {}, {}
local pending, last_applied, republish_for = false, 0, 0
local max_size = tonumber(ARGV[5])
for n = 6, #ARGV do
  local index = n - 5
  local ev = cjson.decode(ARGV[n])
  ev_ts, ev_t, ev_m = ev.t, tonumber(ev.t), ev.m
  -- Its own marker, kept apart: folding logged events again (after an erase) moves ev_m.
  local marker = ev.m
  local seen = new_markers[marker] or redis.call('ZSCORE', D, marker)
  local outcome
  if seen then
    outcome = 'D'
    if tonumber(seen) > published then republish_for = index end
  elseif ev_t <= erased_until then
    outcome = 'I'
  elseif size + growth(ev) > max_size then
    outcome = 'R'
  else
    changed_any = false
    local erasing = ev.o[1][1] == 'E'
    local refold = {}
    if erasing then
      refold = erase()
      erased_until = ev_t
    else
      apply_event(ev)
      log_args[#log_args + 1] = ev_ts
      log_args[#log_args + 1] = ARGV[n]
    end
    if changed_any then
      outcome, version, pending, last_applied = 'A', version + 1, true, index
      book('v', fmt(version))
      if each_change or erasing then
        result[#result + 1] = snapshot(version, index)
        pending = false
      end
    else
      outcome = 'U'
    end
    if #refold > 0 then -- a fresh record from the events dated after the erase
      changed_any = false
      for _, logged in ipairs(refold) do apply_event(cjson.decode(logged)) end
      if changed_any then
        version, pending = version + 1, true
        book('v', fmt(version))
      end
    end
  end
  if not seen and outcome ~= 'R' then
    new_markers[marker] = fmt(version)
    markers_args[#markers_args + 1] = new_markers[marker]
    markers_args[#markers_args + 1] = marker
  end
  outcomes[#outcomes + 1] = outcome
end

flush_log()

-- Bound the markers and the replay log: by count, and the log also by age.
local kept = tonumber(ARGV[3])
if #markers_args > 0 then
  redis.call('ZADD', D, unpack(markers_args))
  local count = tonumber(rec.dn or '0') + #markers_args / 2
  if count > kept then
    redis.call('ZREMRANGEBYRANK', D, 0, count - kept - 1)
    count = kept
  end
  book('dn', fmt(count))
end
local evicted, removed = tonumber(rec.lx or '-1'), false
local window = tonumber(ARGV[4])
if rec.ua and rec.lo and tonumber(rec.lo) <= tonumber(rec.ua) - window then
  local cut = fmt(tonumber(rec.ua) - window)
  local last = redis.call('ZREVRANGEBYSCORE', L, cut, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #last > 0 then evicted = math.max(evicted, tonumber(last[2])) end
  local gone = redis.call('ZREMRANGEBYSCORE', L, '-inf', cut)
  book('ln', fmt(tonumber(rec.ln or '0') - gone))
  removed = true
end
if rec.ln and tonumber(rec.ln) > kept then
  local excess = tonumber(rec.ln) - kept
  local last = redis.call('ZRANGE', L, excess - 1, excess - 1, 'WITHSCORES')
  if #last > 0 then evicted = math.max(evicted, tonumber(last[2])) end
  redis.call('ZREMRANGEBYRANK', L, 0, excess - 1)
  book('ln', fmt(kept))
  removed = true
end
if removed then book('lo', redis.call('ZRANGE', L, 0, 0, 'WITHSCORES')[2]) end
if evicted > tonumber(rec.lx or '-1') then book('lx', fmt(evicted)) end

-- Write back what changed, in as few commands as possible (chunked: unpack has a limit).
local function call_with(command, key, args)
  for first = 1, #args, 4000 do
    redis.call(command, key, unpack(args, first, math.min(first + 3999, #args)))
  end
end
local sets, dels = {}, {}
for field in pairs(dirty) do
  if rec[field] == nil then
    dels[#dels + 1] = field
  else
    sets[#sets + 1] = field
    sets[#sets + 1] = rec[field]
  end
end
call_with('HDEL', R, dels)
call_with('HSET', R, sets)

if pending then
  result[#result + 1] = snapshot(version, last_applied)
elseif republish_for > 0 and #result == 1 then
  result[#result + 1] = snapshot(version, republish_for)
end
result[1] = table.concat(outcomes)
return result
