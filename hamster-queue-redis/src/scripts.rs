//! The Lua scripts that make every state change of a job atomic.
//!
//! Invariants kept by every script (see the crate's `## Design`):
//! - a job id is in exactly one of `ready`, `delayed`, `leased`, `dead`, or in none once acked;
//! - `keys` maps a unique key to the job holding it, from enqueue until that job is acked;
//! - the job hash's `tok` field is set exactly while the id is in `leased`;
//! - `n` counts deliveries since the job was (re-)queued: a delivery's attempt is `n`.
//!
//! Times are the Redis server's clock (`TIME`), in milliseconds, so that leases mean the same
//! thing to every worker whatever their own clocks say. Numbers go back to the client as
//! strings, formatted with `%.0f` because Lua's default formatting switches to exponents.

use redis::Script;
use std::sync::LazyLock;

/// Helpers shared by the scripts; prepended to each of them.
const PRELUDE: &str = r#"
local function int(x) return string.format('%.0f', x) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Leaves up to `n` tokens in the wake list, for consumers blocked in BLPOP on it. Capped so
-- that a queue without waiting consumers does not grow the list.
local function wake(key, n)
  local room = 16 - redis.call('LLEN', key)
  if n > room then n = room end
  for _ = 1, n do redis.call('RPUSH', key, '1') end
end

-- Moves expired leases and due delayed jobs to the ready list (at most `limit` of each);
-- returns how many became ready.
local function promote(ready, delayed, leased, dead, job_prefix, now, limit)
  local became_ready = 0
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', int(now), 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    redis.call('ZREM', leased, id)
    local key = job_prefix .. id
    local state = redis.call('HMGET', key, 'n', 'max')
    if state[1] then
      redis.call('HDEL', key, 'tok')
      if tonumber(state[1]) >= tonumber(state[2]) then
        redis.call('HSET', key, 'reason', 'lease expired', 'failed', int(now))
        redis.call('ZADD', dead, int(now), id)
      else
        redis.call('RPUSH', ready, id)
        became_ready = became_ready + 1
      end
    end
  end
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', int(now), 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    redis.call('RPUSH', ready, id)
    became_ready = became_ready + 1
  end
  return became_ready
end
"#;

/// How many expired leases and due delayed jobs one call promotes, each; bounds the time one
/// script holds Redis. A backlog is drained by the following calls.
pub(crate) const PROMOTE_LIMIT: u32 = 200;

/// KEYS: ready, delayed, wake, keys. ARGV: job key prefix, then per job: id, payload, max
/// attempts, not-before in ms or "", unique key or "". Returns per job the id of the job
/// that holds it: its own, or for a key already held by a job still in the queue, that
/// job's (nothing is added then). An id that already exists is skipped, which makes
/// retrying an enqueue whose reply was lost harmless.
const ENQUEUE: &str = r#"
local now = now_ms()
local made_ready = 0
local out = {}
for i = 2, #ARGV, 5 do
  local id = ARGV[i]
  local unique = ARGV[i + 4]
  local holder = nil
  if unique ~= '' then
    holder = redis.call('HGET', KEYS[4], unique)
    -- A mapping whose job is gone (purged) holds nothing.
    if holder and redis.call('EXISTS', ARGV[1] .. holder) == 0 then holder = nil end
  end
  if holder then
    out[#out + 1] = holder
  else
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 0 then
      if unique == '' then
        redis.call('HSET', key, 'payload', ARGV[i + 1], 'max', ARGV[i + 2], 'enq', int(now), 'n', 0)
      else
        redis.call('HSET', key, 'payload', ARGV[i + 1], 'max', ARGV[i + 2], 'enq', int(now), 'n', 0,
          'key', unique)
        redis.call('HSET', KEYS[4], unique, id)
      end
      local not_before = tonumber(ARGV[i + 3])
      if not_before and not_before > now then
        redis.call('ZADD', KEYS[2], ARGV[i + 3], id)
      else
        redis.call('RPUSH', KEYS[1], id)
        made_ready = made_ready + 1
      end
    end
    out[#out + 1] = id
  end
end
wake(KEYS[3], made_ready)
return out
"#;

/// KEYS: ready, delayed, leased, dead, wake. ARGV: job key prefix, lease ms, token, how many
/// jobs at most, promote limit. Returns `{now, expires, next_due_in_ms or -1, then per job:
/// id, payload, n, max, enq, token}`; `next_due_in_ms` is only computed when no job was
/// leased.
const RECEIVE: &str = r#"
local now = now_ms()
local became_ready = promote(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], now,
  tonumber(ARGV[5]))
local expires = now + tonumber(ARGV[2])
local wanted = tonumber(ARGV[4])
local out = {int(now), int(expires), '-1'}
local leased = 0
while leased < wanted do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'payload', 'max', 'enq', 'n')
  -- An id without its hash cannot be delivered; dropping it is the only way forward.
  if f[1] and f[2] and f[3] and f[4] then
    leased = leased + 1
    local n = tonumber(f[4]) + 1
    local token = ARGV[3] .. '.' .. leased
    redis.call('HSET', key, 'n', n, 'tok', token)
    redis.call('ZADD', KEYS[3], int(expires), id)
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = int(n)
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = token
  end
end
if leased == 0 then
  local next_due = nil
  for _, set in ipairs({KEYS[2], KEYS[3]}) do
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] then
      local score = tonumber(first[2])
      if next_due == nil or score < next_due then next_due = score end
    end
  end
  if next_due then
    local wait = next_due - now
    if wait < 0 then wait = 0 end
    out[3] = int(wait)
  end
elseif became_ready > 0 then
  -- Jobs this call made ready and did not take: let blocked consumers know.
  wake(KEYS[5], math.min(became_ready, redis.call('LLEN', KEYS[1])))
end
return out
"#;

/// KEYS: leased, job. ARGV: id, token, lease ms. Returns the new expiry, or nil when the
/// lease is lost.
const EXTEND: &str = r#"
if redis.call('HGET', KEYS[2], 'tok') ~= ARGV[2] then return false end
local expires = now_ms() + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], int(expires), ARGV[1])
return int(expires)
"#;

/// KEYS: leased, keys. ARGV: job key prefix, then per lease: id, token. Returns per lease
/// 1, or 0 when the lease is lost. Each lease is settled before the next is checked, so the
/// same lease twice in one batch is acked once. An acked job frees its unique key.
const ACK: &str = r#"
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'tok') == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    local unique = redis.call('HGET', key, 'key')
    if unique and redis.call('HGET', KEYS[2], unique) == id then
      redis.call('HDEL', KEYS[2], unique)
    end
    redis.call('DEL', key)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"#;

/// KEYS: ready, delayed, leased, dead, wake, job. ARGV: id, token, delay ms, reason.
/// Returns `{"ready"|"delayed"|"dead", at ms}`, or nil when the lease is lost.
const RETRY: &str = r#"
if redis.call('HGET', KEYS[6], 'tok') ~= ARGV[2] then return false end
local now = now_ms()
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[6], 'tok')
redis.call('HSET', KEYS[6], 'reason', ARGV[4])
local state = redis.call('HMGET', KEYS[6], 'n', 'max')
if tonumber(state[1]) >= tonumber(state[2]) then
  redis.call('HSET', KEYS[6], 'failed', int(now))
  redis.call('ZADD', KEYS[4], int(now), ARGV[1])
  return {'dead', int(now)}
end
local delay = tonumber(ARGV[3])
if delay <= 0 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  wake(KEYS[5], 1)
  return {'ready', int(now)}
end
redis.call('ZADD', KEYS[2], int(now + delay), ARGV[1])
return {'delayed', int(now + delay)}
"#;

/// KEYS: ready, leased, wake, job. ARGV: id, token. Puts the job at the head of the ready
/// list without counting the delivery. Returns 1, or 0 when the lease is lost.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[4], 'tok') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], 'tok')
redis.call('HINCRBY', KEYS[4], 'n', -1)
redis.call('LPUSH', KEYS[1], ARGV[1])
wake(KEYS[3], 1)
return 1
"#;

/// KEYS: dead. ARGV: job key prefix, limit (at least 1). Returns per dead letter, oldest
/// first: id, payload, n, max, enq, reason, failed.
const DEAD_LETTERS: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'payload', 'n', 'max', 'enq', 'reason', 'failed')
  if f[1] and f[2] and f[3] and f[4] then
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
    out[#out + 1] = f[4]
    out[#out + 1] = f[5] or ''
    out[#out + 1] = f[6] or f[4]
  end
end
return out
"#;

/// KEYS: ready, dead, wake, job. ARGV: id. Returns 1, or 0 when there is no such dead letter.
const REQUEUE_DEAD_LETTER: &str = r#"
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[4], 'n', 0)
redis.call('HDEL', KEYS[4], 'reason', 'failed')
redis.call('RPUSH', KEYS[1], ARGV[1])
wake(KEYS[3], 1)
return 1
"#;

/// KEYS: ready, delayed, leased, dead, wake. ARGV: job key prefix, promote limit. Promotes,
/// then returns `{ready, delayed, leased, dead}`.
const STATS: &str = r#"
local now = now_ms()
local became_ready = promote(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], now,
  tonumber(ARGV[2]))
wake(KEYS[5], became_ready)
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4])}
"#;

/// The compiled scripts; their SHA1s are computed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) receive: Script,
    pub(crate) extend: Script,
    pub(crate) ack: Script,
    pub(crate) retry: Script,
    pub(crate) release: Script,
    pub(crate) dead_letters: Script,
    pub(crate) requeue_dead_letter: Script,
    pub(crate) stats: Script,
}

impl Scripts {
    /// Every script, for preloading.
    pub(crate) fn all(&self) -> [&Script; 9] {
        [
            &self.enqueue,
            &self.receive,
            &self.extend,
            &self.ack,
            &self.retry,
            &self.release,
            &self.dead_letters,
            &self.requeue_dead_letter,
            &self.stats,
        ]
    }
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// The scripts, shared by every queue of the process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: with_prelude(ENQUEUE),
    receive: with_prelude(RECEIVE),
    extend: with_prelude(EXTEND),
    ack: with_prelude(ACK),
    retry: with_prelude(RETRY),
    release: with_prelude(RELEASE),
    dead_letters: with_prelude(DEAD_LETTERS),
    requeue_dead_letter: with_prelude(REQUEUE_DEAD_LETTER),
    stats: with_prelude(STATS),
});
