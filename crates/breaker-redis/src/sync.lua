-- One sync of one replica with the fleet's shared state, atomically (Redis runs a script
-- to the end before any other command). See docs/consistency.md.
--
-- Every key the script touches is declared (one hash slot: they share the hash tag {name}):
-- KEYS[1] the state hash      KEYS[2] the transition log (a capped list)
-- KEYS[3] the window hash     KEYS[4] probe tokens per replica (while half-open)
-- KEYS[5] trip votes          KEYS[6] this replica's record (its last sync number)
--
-- ARGV: 1 replica id, 2 sync number (grows with every sync of the replica), 3 the fleet
--   generation the replica last saw (2^53 - 1: none yet), 4..6 calls, failures and slow calls
--   recorded since its last sync, 7 proposal ('' | 'vote' | 'trip' | 'reopen' | 'half_open' |
--   'reset'), 8 open period in ms for a trip this sync makes, 9 probe tokens the replica wants
--   to hold, 10 probes it admitted and 11 probes that succeeded, all three in the half-open
--   generation it saw, 12 the state it knows ('closed' | 'open' | 'half_open'), 13 its open
--   time left in ms and 14 its backoff count (12..14 re-seed a lost state), 15 how long a
--   silent replica's tokens are kept (ms), 16 how long the fleet's parameters may go
--   unreported before the replica's replace them (ms), 17 the replica's fleet parameters,
--   18 its local state ('closed' | 'open' | 'half_open'): a closed replica's trip vote goes,
--   19 the replica's incarnation (random, per process: sync numbers restart with it).
--
-- Returns {'ok', generation, state, attempts, ms left open, probes left, probe successes,
--          tokens this replica holds, window calls, window failures, window slow calls,
--          transitions made, flags, the fleet's parameters, trip votes}
-- or {'bad', what} when a key holds data this script did not write: nothing is changed then
-- (everything is read and checked before anything is written).

local UNSEEN = 9007199254740991

local function int(v)
  local n = tonumber(v)
  if n == nil or n ~= n or n < 0 or n ~= math.floor(n) or n > UNSEEN then
    return nil
  end
  return n
end

local function parse_params(text)
  if type(text) ~= 'string' or #text > 256 then
    return nil
  end
  local p = {}
  for k, v in string.gmatch(text, '(%a+)=(%d+)') do
    p[k] = int(v)
  end
  for _, k in ipairs({'f', 's', 'm', 'w', 'b', 'p', 'h', 'q', 'qw'}) do
    if p[k] == nil then
      return nil
    end
  end
  if p.w < 1 or p.b < 1 or p.p < 1 or p.q < 1 or p.f > 1000000 or p.s > 1000000 then
    return nil
  end
  return p
end

-- The replica's own arguments: an error here is a bug in the crate, not bad data.
local replica = ARGV[1]
local a = {}
for _, i in ipairs({2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16}) do
  a[i] = int(ARGV[i])
  if a[i] == nil then
    return redis.error_reply('breaker-redis: argument ' .. i .. ' is not a count: ' .. tostring(ARGV[i]))
  end
end
local seq, seen = a[2], a[3]
local d_calls, d_fail, d_slow = a[4], a[5], a[6]
local proposal, open_ms = ARGV[7], a[8]
local hold, used, ok_total = a[9], a[10], a[11]
local known, known_left, known_attempts = ARGV[12], a[13], a[14]
local lease_ms, adopt_ms = a[15], a[16]
local mine_text = ARGV[17]
local local_state = ARGV[18]
local incarnation = ARGV[19]
local mine = parse_params(mine_text)
if mine == nil or replica == nil or replica == '' then
  return redis.error_reply('breaker-redis: bad replica or parameters: ' .. tostring(mine_text))
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- ----- read and check everything -----------------------------------------------------

local kinds = {}
for i = 1, 6 do
  kinds[i] = redis.call('TYPE', KEYS[i]).ok
  local want = (i == 2) and 'list' or 'hash'
  if kinds[i] ~= want and kinds[i] ~= 'none' then
    return {'bad', KEYS[i] .. ' holds a ' .. kinds[i] .. ', not the ' .. want .. ' breaker-redis writes'}
  end
end

local fresh = (kinds[1] == 'none')
local gen, state, attempts, since, period, left, probe_ok = 0, 'closed', 0, now, 0, 0, 0
local at, params_text, params_at, born, born_read = nil, nil, nil, nil, nil
if not fresh then
  local names = {'gen', 'state', 'attempts', 'since', 'open_ms', 'left', 'ok', 'at', 'params', 'params_at', 'born'}
  local f = redis.call('HMGET', KEYS[1], unpack(names))
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
  -- (A state written by an earlier version of this script has no parameters yet.)
  if f[8] then
    at = int(f[8])
    if at == nil then return {'bad', KEYS[1] .. ' field at is not a count'} end
  end
  -- (Where a history a never-synced replica began began: absent otherwise.)
  if f[11] then
    born = int(f[11])
    if born == nil or born > gen then
      return {'bad', KEYS[1] .. ' field born is ' .. tostring(f[11]) .. ', not a generation up to gen'}
    end
  end
  born_read = born
  if f[9] then
    params_text = f[9]
    params_at = int(f[10])
    if parse_params(params_text) == nil or params_at == nil then
      return {'bad', KEYS[1] .. ' field params is ' .. tostring(f[9]) .. ', not parameters breaker-redis writes'}
    end
  end
end

local wgen, buckets = nil, {}
if kinds[3] == 'hash' then
  local all = redis.call('HGETALL', KEYS[3])
  for i = 1, #all, 2 do
    local k, v = all[i], int(all[i + 1])
    if v == nil then
      return {'bad', KEYS[3] .. ' field ' .. k .. ' is ' .. tostring(all[i + 1]) .. ', not a count'}
    end
    if k == 'gen' then
      wgen = v
    else
      local index, which = string.match(k, '^(%d+):([cfs])$')
      if index == nil then
        return {'bad', KEYS[3] .. ' has a field ' .. k .. ' breaker-redis does not write'}
      end
      index = tonumber(index)
      buckets[index] = buckets[index] or {c = 0, f = 0, s = 0}
      buckets[index][which] = v
    end
  end
  for index, b in pairs(buckets) do
    if b.f > b.c or b.s > b.c then
      return {'bad', KEYS[3] .. ' bucket ' .. index .. ' holds counts breaker-redis did not write'}
    end
  end
  if wgen == nil and next(buckets) ~= nil then
    return {'bad', KEYS[3] .. ' has buckets without a generation'}
  end
end

local probes = {}
if kinds[4] == 'hash' then
  local all = redis.call('HGETALL', KEYS[4])
  for i = 1, #all, 2 do
    local r = {}
    local numbers = 0
    for n in string.gmatch(all[i + 1], '%S+') do
      numbers = numbers + 1
      r[numbers] = int(n) or false
    end
    if numbers ~= 5 or not (r[1] and r[2] and r[3] and r[4] and r[5]) then
      return {'bad', KEYS[4] .. ' field ' .. all[i] .. ' is ' .. all[i + 1] .. ', not a probe record'}
    end
    probes[all[i]] = {gen = r[1], held = r[2], used = r[3], ok = r[4], at = r[5]}
  end
end

local votes = {}
if kinds[5] == 'hash' then
  local all = redis.call('HGETALL', KEYS[5])
  for i = 1, #all, 2 do
    local v = int(all[i + 1])
    if v == nil then
      return {'bad', KEYS[5] .. ' field ' .. all[i] .. ' is ' .. all[i + 1] .. ', not a time'}
    end
    votes[all[i]] = v
  end
end

local last_seq = nil
if kinds[6] == 'hash' then
  local v = redis.call('HMGET', KEYS[6], 'seq', 'inc')
  last_seq = int(v[1])
  if last_seq == nil then
    return {'bad', KEYS[6] .. ' field seq is ' .. tostring(v[1]) .. ', not a count'}
  end
  -- Another process under the same replica id (a restart): its numbers start again.
  if v[2] ~= incarnation then
    last_seq = nil
  end
end

local function open_left()
  if state ~= 'open' then
    return 0
  end
  return math.max(0, math.min(period, since + period - now))
end

local function count_votes(window)
  local n = 0
  for _, at_ms in pairs(votes) do
    if at_ms + window >= now and at_ms <= now then
      n = n + 1
    end
  end
  return n
end

-- A sync the replica already made (a client retrying a command that was applied): answer
-- with the state as it is, change nothing.
if last_seq ~= nil and seq <= last_seq and not fresh then
  local held = 0
  local rec = probes[replica]
  if state == 'half_open' and rec and rec.gen == gen then
    held = rec.held
  end
  local fleet = parse_params(params_text or mine_text)
  return {'ok', gen, state, attempts, open_left(), left, probe_ok, held, 0, 0, 0, 0,
    'duplicate', params_text or mine_text, count_votes(fleet.qw)}
end

-- ----- decide ----------------------------------------------------------------------------

local flags = {}
local lines = {}
local moves = 0
local dirty = {window = false, probes = false, votes = false}

local function move(to, why)
  gen = gen + 1
  state = to
  since = now
  moves = moves + 1
  lines[#lines + 1] = gen .. ' ' .. to .. ' ' .. why .. ' by ' .. replica .. ' at ' .. now
end

local first = (seen == UNSEEN)
-- The state is lost when a replica that saw it finds it gone, or older than what it saw
-- (a restart without persistence, FLUSHALL, eviction, a failover to a copy that lags).
local lost = (not first) and (fresh or gen < seen)
if fresh or lost then
  -- Generations only move forward: past anything any replica or old bucket saw.
  local floor = now
  if not first then floor = math.max(floor, seen + 1) end
  if not fresh then floor = math.max(floor, gen + 1) end
  if wgen then floor = math.max(floor, wgen + 1) end
  gen, state, attempts, since, period, left, probe_ok = floor, 'closed', 0, now, 0, 0, 0
  -- A history begun by a replica that had never synced (it cannot tell a loss from a new
  -- fleet) records where it began; a re-seeded one was begun by a replica that knew.
  if first then born = floor else born = nil end
  params_text, params_at = mine_text, now
  probes, votes = {}, {}
  dirty.probes, dirty.votes = true, true
  if lost then
    -- Re-seeded from what this replica knows: an open replica re-opens the fleet with the
    -- time it has left and its backoff count.
    if known == 'open' then
      state, period, attempts = 'open', known_left, math.max(1, known_attempts)
    elseif known == 'half_open' then
      state, left, attempts = 'half_open', mine.p, math.max(1, known_attempts)
    end
    moves = 1
    lines[1] = gen .. ' ' .. state .. ' state lost, re-seeded by ' .. replica .. ' at ' .. now
    flags[#flags + 1] = 'reseeded'
    seen = gen
  end
else
  -- Redis's clock is a wall clock: a phase that starts in the future means it stepped
  -- back (or a failover to a host whose clock is behind). The phase starts now instead.
  if since > now or (at ~= nil and at > now) then
    flags[#flags + 1] = 'clock_step'
    since = math.min(since, now)
  end
end
-- A replica whose last view is older than the history a never-synced replica began (it
-- could not tell a loss from a new fleet) saw a history that was lost since. While nothing
-- has happened in the new one, what it knew is news if it was open: the fleet re-opens with
-- the time this replica has left and its backoff count. (Once the new history has moved on,
-- or when a replica that knew re-seeded it, an old view is not news.)
local behind = (not first) and (not lost) and born ~= nil and seen < born and gen == born
if behind and known == 'open' and state == 'closed' then
  attempts, period, left, probe_ok = math.max(attempts, known_attempts, 1), known_left, 0, 0
  votes = {}
  dirty.votes = true
  move('open', 'state lost, re-opened')
  flags[#flags + 1] = 'reseeded'
end

-- The fleet's parameters are kept with its state; a replica with others reports the
-- mismatch and follows the fleet's, until nobody has reported the fleet's for adopt_ms.
local P = mine
if params_text == nil then
  params_text, params_at = mine_text, now
elseif params_text == mine_text then
  params_at = now
elseif now - params_at > adopt_ms then
  params_text, params_at = mine_text, now
  flags[#flags + 1] = 'adopted'
else
  P = parse_params(params_text)
end

local function trip(why)
  attempts = attempts + 1
  period = open_ms
  move('open', why)
  votes = {}
  dirty.votes = true
end

-- A half-open period whose probes never came back (a replica died holding them) ends.
if state == 'half_open' and now > since + P.h then
  trip('half-open limit')
end

local current = (seen == gen)
local counted_in = gen
local opened_half = false

-- The replica's own decision, made on the generation it saw: at most one replica's
-- proposal per generation takes effect. At first contact only a trip is news.
if proposal == 'vote' or proposal == 'trip' then
  if state == 'closed' and (current or first) then
    if proposal == 'trip' or P.q <= 1 then
      trip('trip')
    else
      votes[replica] = now
      dirty.votes = true
      local n = count_votes(P.qw)
      if n >= P.q then
        trip('quorum of ' .. n)
      else
        flags[#flags + 1] = 'voted'
      end
    end
  elseif state == 'half_open' and current and proposal == 'trip' then
    trip('trip')
  end
elseif current and proposal == 'reopen' and state == 'half_open' then
  trip('probe failed')
elseif current and proposal == 'half_open' and state == 'open' then
  left, probe_ok = P.p, 0
  probes = {}
  dirty.probes = true
  move('half_open', 'open period over')
  opened_half = true
elseif current and proposal == 'reset' and (state == 'half_open' or state == 'open') then
  attempts, left, probe_ok = 0, 0, 0
  move('closed', 'reset')
end
-- A replica whose own breaker closed again withdraws its trip vote.
if local_state == 'closed' and votes[replica] then
  votes[replica] = nil
  dirty.votes = true
end

-- Window counts, in the closed generation they were recorded in.
local calls, failures, slow = 0, 0, 0
if state == 'closed' then
  local index = math.floor(now / P.b)
  local span = math.max(1, math.floor(P.w / P.b))
  if wgen ~= gen then
    wgen, buckets = gen, {}
    dirty.window = true
  end
  if seen == counted_in and counted_in == gen and d_calls > 0 then
    local b = buckets[index] or {c = 0, f = 0, s = 0}
    b.c = b.c + d_calls
    b.f = b.f + math.min(d_fail, d_calls)
    b.s = b.s + math.min(d_slow, d_calls)
    buckets[index] = b
    dirty.window = true
  end
  for i, b in pairs(buckets) do
    if i <= index - span or i > index then
      buckets[i] = nil
      dirty.window = true
    else
      calls, failures, slow = calls + b.c, failures + b.f, slow + b.s
    end
  end
  if calls >= P.m and calls > 0 and
     ((P.f > 0 and failures * 1000000 >= P.f * calls) or
      (P.s > 0 and slow * 1000000 >= P.s * calls)) then
    trip('fleet window')
    calls, failures, slow = 0, 0, 0
  end
end

-- Probe results and the fleet's probe tokens, per replica and half-open generation: every
-- number a replica sends is a total, so a sync sent twice counts once.
local held = 0
if state == 'half_open' then
  for r, rec in pairs(probes) do
    if rec.gen ~= gen then
      probes[r] = nil
      dirty.probes = true
    elseif r ~= replica and rec.at + lease_ms < now and rec.held > rec.used then
      -- A replica silent for longer than its lease decides alone now: its unused
      -- tokens go back to the fleet.
      left = left + rec.held - rec.used
      rec.held = rec.used
      dirty.probes = true
    end
  end
  local rec = probes[replica] or {gen = gen, held = 0, used = 0, ok = 0, at = now}
  -- A replica that proposed this half-open period too (and lost the race to another
  -- replica's proposal) asks for the same period.
  local same_period = (proposal == 'half_open' and seen + 1 == gen and moves == 0)
  if seen == gen or opened_half or same_period then
    if ok_total > rec.ok then
      probe_ok = probe_ok + (ok_total - rec.ok)
      rec.ok = ok_total
    end
    rec.used = math.max(rec.used, used)
    local want = math.max(hold, rec.used)
    if want > rec.held then
      local granted = math.min(want - rec.held, left)
      rec.held = rec.held + granted
      left = left - granted
    elseif want < rec.held then
      left = left + (rec.held - want)
      rec.held = want
    end
    rec.at = now
    probes[replica] = rec
    dirty.probes = true
  end
  held = rec.held
  if probe_ok >= P.p then
    attempts, left, probe_ok = 0, 0, 0
    move('closed', 'probes succeeded')
    held = 0
  end
end

-- ----- write -----------------------------------------------------------------------------

-- HSET of field-value pairs in chunks: `unpack` of a long list fails (Lua's stack limit,
-- about 8,000 values), and a hash that hostile data filled with fields must not make the
-- script fail after it has written the state.
local function hset_all(key, fields)
  for i = 1, #fields, 512 do
    redis.call('HSET', key, unpack(fields, i, math.min(i + 511, #fields)))
  end
end

redis.call('HSET', KEYS[1], 'gen', gen, 'state', state, 'attempts', attempts, 'since', since,
  'open_ms', period, 'left', left, 'ok', probe_ok, 'at', now, 'params', params_text,
  'params_at', params_at)
-- (Written only when it changes: most syncs leave it.)
if born ~= born_read then
  if born ~= nil then
    redis.call('HSET', KEYS[1], 'born', born)
  else
    redis.call('HDEL', KEYS[1], 'born')
  end
end
-- The state has no time-to-live: `volatile-*` eviction policies never take it.
redis.call('PERSIST', KEYS[1])
if #lines > 0 then
  redis.call('RPUSH', KEYS[2], unpack(lines))
  redis.call('LTRIM', KEYS[2], -100, -1)
end

if state ~= 'closed' then
  if kinds[3] ~= 'none' then redis.call('DEL', KEYS[3]) end
elseif dirty.window then
  redis.call('DEL', KEYS[3])
  local fields = {'gen', wgen}
  for i, b in pairs(buckets) do
    fields[#fields + 1] = i .. ':c'
    fields[#fields + 1] = b.c
    fields[#fields + 1] = i .. ':f'
    fields[#fields + 1] = b.f
    fields[#fields + 1] = i .. ':s'
    fields[#fields + 1] = b.s
  end
  hset_all(KEYS[3], fields)
  redis.call('PEXPIRE', KEYS[3], P.w + 2 * P.b)
end

if state ~= 'half_open' then
  if kinds[4] ~= 'none' then redis.call('DEL', KEYS[4]) end
elseif dirty.probes then
  redis.call('DEL', KEYS[4])
  for r, rec in pairs(probes) do
    redis.call('HSET', KEYS[4], r,
      rec.gen .. ' ' .. rec.held .. ' ' .. rec.used .. ' ' .. rec.ok .. ' ' .. rec.at)
  end
end

local nvotes = 0
if state ~= 'closed' then
  if kinds[5] ~= 'none' then redis.call('DEL', KEYS[5]) end
else
  local fresh_votes = {}
  for r, at_ms in pairs(votes) do
    if at_ms + P.qw >= now and at_ms <= now then
      fresh_votes[#fresh_votes + 1] = r
      fresh_votes[#fresh_votes + 1] = at_ms
    else
      dirty.votes = true
    end
  end
  nvotes = #fresh_votes / 2
  if dirty.votes then
    redis.call('DEL', KEYS[5])
    if nvotes > 0 then
      hset_all(KEYS[5], fresh_votes)
    end
  end
end

redis.call('HSET', KEYS[6], 'seq', seq, 'inc', incarnation)
redis.call('PEXPIRE', KEYS[6], 3600000)

return {'ok', gen, state, attempts, open_left(), left, probe_ok, held, calls, failures, slow,
  moves, table.concat(flags, ' '), params_text, nvotes}
