--[[
commit.lua: write customers' folded states, each atomically, if nothing else wrote it since.

The worker folds a customer's events in memory, from the stored fields it holds (see
worker/domain/fold.py); this step writes the difference only if the stored fields are still
the ones it folded from: their write token `w` is the one expected ("0": no record yet;
"-": a layout 1 record, which has none). Otherwise it writes nothing for that customer and
returns its stored fields, from which the worker folds again. Every write sets a new random
`w`, so a fold can never be written over a change it did not see (not even after a failover
lost writes: a token never comes back, where a counter could); markers, stamps and counters are
all in the compared fields, so an event is neither lost nor counted twice, whichever worker
writes first. With one writer per customer (range assignment), a mismatch happens only
after a rebalance, after a restart (a worker's first write of a customer), or for a layout
1 record (once).

One call carries one customer on Redis Cluster (its keys share the hash tag: one slot), and
many on a single Redis, where a call costs less per customer. Customers are independent:
each one's commit is checked and written on its own.

It computes nothing: no number is read, added or formatted here. The record's arithmetic is
the worker's, in exact integers, bounded before it is written, so Lua's doubles never touch
it; the replay log's bounds (how much to evict) are the worker's decisions too, executed
here. For each customer, every command that can fail on a key of the wrong type comes
before its first write, so a rejected commit writes nothing for that customer (the worker
then retries the customers of the call one by one).

KEYS  per customer: its record hash, its replay log, then any keys to delete (a layout 1
      record's side keys)
ARGV  per customer: 1 keys to delete   2 expected write token   3 fields set
      4 fields deleted   5 log entries (counts)
      6 erase: first drop the log entries dated up to this time ("" none)
      7 then drop the log entries dated up to this time (the age bound; "" none)
      8 then keep at most this many log entries, the latest (the count bound; "" none)
      9.. the fields set (name, value)..., the fields deleted..., the log entries
      (micros, step JSON)...
Returns one result per customer: {1, added, removed, kept, trimmed} when written (log
entries added and removed, how many it holds after the count bound or -1 when not asked,
the latest time the count bound evicted or -1), else {0, {field, value, ...}}.
]]

-- ARGV[first..last] as arguments of a command, at most 4000 at a time (unpack's limit).
local function call_range(command, key, first, last)
  local total = 0
  for k = first, last, 4000 do
    total = total + redis.call(command, key, unpack(ARGV, k, math.min(k + 3999, last)))
  end
  return total
end

local results, key, a = {}, 1, 1
while a <= #ARGV do
  local R, L = KEYS[key], KEYS[key + 1]
  local extra = tonumber(ARGV[a])
  local sets, dels, logged = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local first_set = a + 8
  local first_del = first_set + 2 * sets
  local first_log = first_del + dels
  local after = first_log + 2 * logged
  local stored = redis.call('HMGET', R, 'w', 'v')
  if (stored[1] or (stored[2] and '-' or '0')) ~= ARGV[a + 1] then
    results[#results + 1] = { 0, redis.call('HGETALL', R) }
  else
    local added, removed, kept, trimmed = 0, 0, -1, -1
    if ARGV[a + 5] ~= '' then
      removed = removed + redis.call('ZREMRANGEBYSCORE', L, '-inf', ARGV[a + 5])
    end
    if logged > 0 then added = call_range('ZADD', L, first_log, after - 1) end
    if ARGV[a + 6] ~= '' then
      removed = removed + redis.call('ZREMRANGEBYSCORE', L, '-inf', ARGV[a + 6])
    end
    if ARGV[a + 7] ~= '' then
      kept = redis.call('ZCARD', L)
      local excess = kept - tonumber(ARGV[a + 7])
      if excess > 0 then
        trimmed = redis.call('ZRANGE', L, excess - 1, excess - 1, 'WITHSCORES')[2]
        removed = removed + redis.call('ZREMRANGEBYRANK', L, 0, excess - 1)
        kept = kept - excess
      end
    end
    for k = key + 2, key + 1 + extra do redis.call('DEL', KEYS[k]) end
    if dels > 0 then call_range('HDEL', R, first_del, first_log - 1) end
    if sets > 0 then call_range('HSET', R, first_set, first_del - 1) end
    results[#results + 1] = { 1, added, removed, kept, trimmed }
  end
  key, a = key + 2 + extra, after
end
return results
