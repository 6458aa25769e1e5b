-- One sync of one replica with the fleet's shared state, atomically (Redis runs a script
-- to the end before any other command). See docs/consistency.md.
--
-- KEYS[1]  the state hash       KEYS[2]  the transition log (a capped list)
-- Window buckets live beside them, under ARGV[1] .. ':b:' .. generation .. ':' .. index.
--
-- ARGV: 1 bucket key prefix, 2 replica id, 3 the fleet generation the replica last saw,
--   4..6 calls, failures and slow calls the replica recorded since its last sync,
--   7 proposal ('' | 'open' | 'half_open' | 'close'), 8 open period in ms for a trip,
--   9 probes wanted, 10 probe successes since the last sync, 11 fleet probe budget,
--   12 failure-rate threshold (ppm, 0: none), 13 slow-call threshold (ppm, 0: none),
--   14 minimum calls, 15 window in ms, 16 bucket in ms, 17 half-open limit in ms,
--   18 state key time-to-live in ms.
--
-- Returns {'ok', generation, state, attempts, ms left open, probes left, probe successes,
--          probes granted, window calls, window failures, window slow calls, transitions made}
-- or {'bad', what} when a key holds data this script did not write: nothing is changed then.

local function int(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n < 0 or n ~= math.floor(n) or n > 9007199254740991 then
    return nil
  end
  return n
end

local a = {}
for i = 3, 18 do
  a[i] = int(ARGV[i])
  if a[i] == nil and i ~= 7 then
    return redis.error_reply('breaker-redis: argument ' .. i .. ' is not a count: ' .. tostring(ARGV[i]))
  end
end
local prefix, replica, seen, proposal = ARGV[1], ARGV[2], a[3], ARGV[7]
local open_ms, want, probe_ok_delta, budget = a[8], a[9], a[10], a[11]
local fail_ppm, slow_ppm, min_calls = a[12], a[13], a[14]
local window_ms, bucket_ms, half_open_ms, ttl = a[15], a[16], a[17], a[18]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'hash' and kind ~= 'none' then
  return {'bad', KEYS[1] .. ' holds a ' .. kind .. ', not the hash breaker-redis writes'}
end
local log_kind = redis.call('TYPE', KEYS[2]).ok
if log_kind ~= 'list' and log_kind ~= 'none' then
  return {'bad', KEYS[2] .. ' holds a ' .. log_kind .. ', not the list breaker-redis writes'}
end

local gen, state, attempts, since, period, left, probe_ok = 0, 'closed', 0, now, 0, 0, 0
if kind == 'hash' then
  local f = redis.call('HMGET', KEYS[1], 'gen', 'state', 'attempts', 'since', 'open_ms', 'left', 'ok')
  local names = {'gen', 'state', 'attempts', 'since', 'open_ms', 'left', 'ok'}
  local v = {}
  for i = 1, 7 do
    if i == 2 then
      v[i] = f[i]
      if v[i] ~= 'closed' and v[i] ~= 'open' and v[i] ~= 'half_open' then
        return {'bad', KEYS[1] .. ' field state is ' .. tostring(f[i]) .. ', not closed, open or half_open'}
      end
    else
      v[i] = int(f[i])
      if v[i] == nil then
        return {'bad', KEYS[1] .. ' field ' .. names[i] .. ' is ' .. tostring(f[i]) .. ', not a count'}
      end
    end
  end
  gen, state, attempts, since, period, left, probe_ok = v[1], v[2], v[3], v[4], v[5], v[6], v[7]
end

local moves = 0
local function move(to, why)
  gen = gen + 1
  state = to
  since = now
  moves = moves + 1
  redis.call('RPUSH', KEYS[2], gen .. ' ' .. to .. ' ' .. why .. ' by ' .. replica .. ' at ' .. now)
end
local function trip(why)
  attempts = attempts + 1
  period = open_ms
  move('open', why)
end

-- A half-open period whose probes never came back (a replica died holding them) ends.
if state == 'half_open' and now > since + half_open_ms then
  trip('half-open limit')
end

local current = (seen == gen)
local counted_in = gen

-- The replica's own decision, made on the generation it saw: at most one replica's
-- proposal per generation takes effect.
if current and proposal == 'open' and (state == 'closed' or state == 'half_open') then
  trip(state == 'closed' and 'trip' or 'probe failed')
elseif current and proposal == 'half_open' and state == 'open' then
  left, probe_ok = budget, 0
  move('half_open', 'open period over')
elseif current and proposal == 'close' and (state == 'half_open' or state == 'open') then
  attempts, left, probe_ok = 0, 0, 0
  move('closed', state == 'open' and 'reset' or 'probes succeeded')
end

-- Window counts recorded in the closed generation they belong to.
local calls, failures, slow = 0, 0, 0
local index = math.floor(now / bucket_ms)
local buckets = math.max(1, math.floor(window_ms / bucket_ms))
if state == 'closed' then
  if seen == counted_in and counted_in == gen and (a[4] > 0) then
    local key = prefix .. ':b:' .. gen .. ':' .. index
    redis.call('HINCRBY', key, 'calls', a[4])
    if a[5] > 0 then redis.call('HINCRBY', key, 'failures', a[5]) end
    if a[6] > 0 then redis.call('HINCRBY', key, 'slow', a[6]) end
    redis.call('PEXPIRE', key, window_ms + 2 * bucket_ms)
  end
  for i = index - buckets + 1, index do
    local key = prefix .. ':b:' .. gen .. ':' .. i
    local bk = redis.call('TYPE', key).ok
    if bk == 'hash' then
      local c = redis.call('HMGET', key, 'calls', 'failures', 'slow')
      local nc, nf, ns = int(c[1] or 0), int(c[2] or 0), int(c[3] or 0)
      if nc == nil or nf == nil or ns == nil or nf > nc or ns > nc then
        return {'bad', key .. ' holds counts breaker-redis did not write'}
      end
      calls, failures, slow = calls + nc, failures + nf, slow + ns
    elseif bk ~= 'none' then
      return {'bad', key .. ' holds a ' .. bk .. ', not the hash breaker-redis writes'}
    end
  end
  if calls >= min_calls and calls > 0 and
     ((fail_ppm > 0 and failures * 1000000 >= fail_ppm * calls) or
      (slow_ppm > 0 and slow * 1000000 >= slow_ppm * calls)) then
    trip('fleet window')
    calls, failures, slow = 0, 0, 0
  end
end

-- Probe results and the fleet's probe budget, for the half-open generation they belong to.
local granted = 0
if state == 'half_open' and (seen == gen or (moves > 0 and seen + moves == gen)) then
  if seen == gen and probe_ok_delta > 0 then
    probe_ok = probe_ok + probe_ok_delta
  end
  if probe_ok >= budget then
    attempts, left, probe_ok = 0, 0, 0
    move('closed', 'probes succeeded')
  elseif want > 0 and left > 0 then
    granted = math.min(want, left)
    left = left - granted
  end
end

redis.call('HSET', KEYS[1], 'gen', gen, 'state', state, 'attempts', attempts, 'since', since,
  'open_ms', period, 'left', left, 'ok', probe_ok)
redis.call('PEXPIRE', KEYS[1], ttl)
if moves > 0 then
  redis.call('LTRIM', KEYS[2], -100, -1)
  redis.call('PEXPIRE', KEYS[2], ttl)
end

local open_left = 0
if state == 'open' then
  open_left = math.max(0, since + period - now)
end
return {'ok', gen, state, attempts, open_left, left, probe_ok, granted, calls, failures, slow, moves}
