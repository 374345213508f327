--[[
commit.lua: write one customer's folded state, atomically, if nothing else wrote it since.

The worker folds a customer's events in memory, from the stored fields it holds (see
worker/domain/fold.py); this step writes the difference only if the stored fields are still
the ones it folded from: their write sequence `w` is the one expected ("0": no record yet;
"-": a layout 1 record, which has none). Otherwise it writes nothing and returns the stored
fields, from which the worker folds again. Every write bumps `w`, so a fold can never be
written over a change it did not see; markers, stamps and counters are all in the compared
fields, so an event is neither lost nor counted twice, whichever worker writes first. With
one writer per customer (range assignment), a mismatch happens only after a rebalance, after
a restart (a worker's first write of a customer), or for a layout 1 record (once).

No number of the record is read, added or formatted here: the record's arithmetic is the
worker's, in exact integers, bounded before it is written, so Lua's doubles never touch it.
The only numbers this script computes with are event times in microseconds (below 2^53 by
contract, so exact as doubles), to bound the replay log.

The replay log (the recent applied events, for a late erase: see the fold) is kept bounded
here, with bookkeeping in the record hash that only this script writes: `ln` its number of
entries, `lo` a lower bound of its oldest time, `lx` an upper bound of the latest time
evicted from it. Entries dated more than the window before the customer's latest event are
evicted (when the oldest is an eighth of the window past the cut), and the oldest beyond
`kept` entries (when a quarter more have accumulated): O(1) per event amortised.

KEYS  1 record hash   2 replay log   3.. keys to delete (a layout 1 record's side keys)
ARGV  1 expected write sequence   2 fields set   3 fields deleted   4 log entries (counts)
      5 erase: first drop the log entries dated up to this time ("" none)
      6 the customer's latest event time ("" none)   7 replay window (us)   8 kept entries
      9.. the fields set (name, value)..., the fields deleted..., the log entries
      (micros, step JSON)...
Returns {1, beyond} when written (beyond = 1: an erase dated before what the log may have
evicted, which it therefore cannot fully fold again), else {0, {field, value, ...}}.
]]

local R, L = KEYS[1], KEYS[2]
local stored = redis.call('HMGET', R, 'w', 'v', 'ln', 'lo', 'lx')
local sequence = stored[1] or (stored[2] and '-' or '0')
if sequence ~= ARGV[1] then
  return { 0, redis.call('HGETALL', R) }
end

local function fmt(n) return string.format('%d', n) end

-- A range of ARGV as a table (unpack is limited to a few thousand values at once).
local function slice(first, last, into)
  for k = first, last, 4000 do
    local chunk = { unpack(ARGV, k, math.min(k + 3999, last)) }
    for _, value in ipairs(chunk) do into[#into + 1] = value end
  end
  return into
end

local function call_chunked(command, key, args)
  local total = 0
  for k = 1, #args, 4000 do
    total = total + redis.call(command, key, unpack(args, k, math.min(k + 3999, #args)))
  end
  return total
end

local sets, dels, logged = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local first_del = 9 + 2 * sets
local first_log = first_del + dels
local count, oldest = tonumber(stored[3] or '0'), tonumber(stored[4])
local evicted = tonumber(stored[5] or '-1')
local was = { count, oldest, evicted }
local beyond = 0

if ARGV[5] ~= '' then -- an erase: the log keeps the events dated after it
  local cut = tonumber(ARGV[5])
  if cut < evicted then beyond = 1 end
  count = count - redis.call('ZREMRANGEBYSCORE', L, '-inf', ARGV[5])
  oldest = count > 0 and cut + 1 or nil
end
if logged > 0 then
  count = count + call_chunked('ZADD', L, slice(first_log, first_log + 2 * logged - 1, {}))
  for k = first_log, first_log + 2 * logged - 1, 2 do
    local micros = tonumber(ARGV[k])
    if oldest == nil or micros < oldest then oldest = micros end
  end
end
local window, kept = tonumber(ARGV[7]), tonumber(ARGV[8])
if oldest and ARGV[6] ~= '' then
  local cut = tonumber(ARGV[6]) - window
  if oldest <= cut - math.floor(window / 8) then
    count = count - redis.call('ZREMRANGEBYSCORE', L, '-inf', fmt(cut))
    oldest = count > 0 and cut + 1 or nil
    if cut > evicted then evicted = cut end
  end
end
if count > kept + math.max(1, math.floor(kept / 4)) then
  local excess = count - kept
  local last = redis.call('ZRANGE', L, excess - 1, excess - 1, 'WITHSCORES')[2]
  redis.call('ZREMRANGEBYRANK', L, 0, excess - 1)
  count = kept
  if last and tonumber(last) > evicted then evicted = tonumber(last) end
end

for k = 3, #KEYS do redis.call('DEL', KEYS[k]) end
local removed = slice(first_del, first_log - 1, {})
local written = slice(9, first_del - 1, {})
local now = { count, oldest, evicted }
for k, name in ipairs({ 'ln', 'lo', 'lx' }) do
  if now[k] ~= was[k] then
    if now[k] == nil or (k == 1 and now[k] == 0) then
      removed[#removed + 1] = name
    else
      written[#written + 1] = name
      written[#written + 1] = fmt(now[k])
    end
  end
end
if #removed > 0 then call_chunked('HDEL', R, removed) end
if #written > 0 then call_chunked('HSET', R, written) end
return { 1, beyond }
