/**
 * Lua scripts for the Redis stores. Each runs atomically on the server, so several gateway
 * instances sharing one Redis see one consistent state (no read-modify-write races).
 *
 * Conventions
 * - Times (`now`, `until`) are milliseconds since the epoch from the caller's Clock; TTLs
 *   (PEXPIRE/PX) are durations, so Redis drops every record at about the time the caller's
 *   clock says it ends. Epoch values are written with `%.0f` so Lua never prints them in
 *   exponent form.
 * - A few scripts derive keys from a prefix passed in ARGV (session ids held in a per-user
 *   index, blocked keys held in the block index). That is fine on a standalone or replicated
 *   Redis; it is why Redis Cluster is not supported.
 * - Scripts that delete sessions also PUBLISH the revocation, so a deletion and its broadcast
 *   cannot be separated by a crash of the instance that made it.
 */

export interface ScriptDef {
  /** null: variable, the caller passes the key count first. */
  readonly numberOfKeys: number | null;
  readonly lua: string;
}

/**
 * Create or replace a session.
 * KEYS: [1] session hash, [2] the user's session index (set of id hashes).
 * ARGV: [1] id hash, [2] user, [3] sealed record, [4] ttl ms, [5] session key prefix,
 *       [6] user index key prefix, [7] index size above which stale members are pruned.
 */
const sessionSet: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local ttl = tonumber(ARGV[4])
local prev = redis.call('HGET', KEYS[1], 'u')
if prev and prev ~= ARGV[2] then
  redis.call('SREM', ARGV[6] .. prev, ARGV[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'r', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if redis.call('SCARD', KEYS[2]) > tonumber(ARGV[7]) then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('HGET', ARGV[5] .. id, 'u') ~= ARGV[2] then
      redis.call('SREM', KEYS[2], id)
    end
  end
end
return 1
`,
};

/**
 * Delete one session; returns its user, or nil when there was none.
 * KEYS: [1] session hash.
 * ARGV: [1] id hash, [2] user index key prefix, [3] revocation channel ('' = do not publish),
 *       [4] origin (instance id).
 */
const sessionDelete: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local u = redis.call('HGET', KEYS[1], 'u')
if not u then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[2] .. u, ARGV[1])
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], cjson.encode({o = ARGV[4], u = u, h = {ARGV[1]}}))
end
return u
`,
};

/**
 * Delete every session of a user; returns the deleted id hashes.
 * KEYS: [1] the user's session index.
 * ARGV: [1] session key prefix, [2] user, [3] revocation channel, [4] origin.
 */
const sessionDeleteByUser: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local deleted = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[1] .. id
  if redis.call('HGET', k, 'u') == ARGV[2] then
    redis.call('DEL', k)
    deleted[#deleted + 1] = id
  end
end
redis.call('DEL', KEYS[1])
if #deleted > 0 then
  redis.call('PUBLISH', ARGV[3], cjson.encode({o = ARGV[4], u = ARGV[2], h = deleted}))
end
return deleted
`,
};

/**
 * The sessions of one user as a flat list [id, sealed, id, sealed, ...]; prunes index members
 * whose session has expired or now belongs to someone else.
 * KEYS: [1] the user's session index.  ARGV: [1] session key prefix, [2] user.
 */
const sessionList: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. id, 'u', 'r')
  if v[1] == ARGV[2] and v[2] then
    out[#out + 1] = id
    out[#out + 1] = v[2]
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
`,
};

/**
 * Delete the given session keys (found by SCAN) and their index entries; returns how many
 * existed. Index keys themselves are left alone, so a session created meanwhile stays indexed.
 * KEYS: session hashes (variable count).  ARGV: [1] user index key prefix, [2] session key prefix.
 */
const sessionDeleteMany: ScriptDef = {
  numberOfKeys: null,
  lua: `
local n = 0
local plen = #ARGV[2]
for _, k in ipairs(KEYS) do
  local u = redis.call('HGET', k, 'u')
  if redis.call('DEL', k) == 1 then n = n + 1 end
  if u then redis.call('SREM', ARGV[1] .. u, string.sub(k, plen + 1)) end
end
return n
`,
};

/**
 * Count one event in a fixed window that starts at the first event. The record is a hash:
 * `e` = window end (caller's clock), `n` = count, and, when counting distinct members,
 * one field `m:<digest>` per member (at most ARGV[4] of them; the count saturates there).
 * KEYS: [1] counter.  ARGV: [1] now, [2] window ms, [3] member digest or '', [4] member cap.
 * Returns the count after this event.
 */
const rateHit: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
if (not e) or now >= e then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'e', string.format('%.0f', now + win), 'n', 0)
  redis.call('PEXPIRE', KEYS[1], win)
end
if ARGV[3] == '' then
  return redis.call('HINCRBY', KEYS[1], 'n', 1)
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
if n < tonumber(ARGV[4]) and redis.call('HSETNX', KEYS[1], 'm:' .. ARGV[3], 1) == 1 then
  n = redis.call('HINCRBY', KEYS[1], 'n', 1)
end
return n
`,
};

/**
 * Reserve one attempt against blocks and counters in one step (see RateStore.reserve).
 * KEYS: the block hashes (ARGV[1] of them), then one counter hash per counter, then (when
 *       ARGV[4] is not '') the `seen` counter.
 * ARGV: [1] number of blocks, [2] now, [3] member cap, [4] `seen` member digest or '', then per
 *       counter: window ms, member digest or '', max.
 * Returns {0, 'b', index, until, reason} for a block in force, {0, 's'} when the `seen` member is
 * present, {0, 'f', counter index} for a counter at its limit, or {1, count1, added1, ...}.
 */
const rateReserve: ScriptDef = {
  numberOfKeys: null,
  lua: `
local nb = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local seen = ARGV[4]
local A = 4
for i = 1, nb do
  local u = tonumber(redis.call('HGET', KEYS[i], 'u'))
  if u and u > now then
    return {0, 'b', i, string.format('%.0f', u), redis.call('HGET', KEYS[i], 'r') or ''}
  end
end
local nc = #KEYS - nb
if seen ~= '' then
  nc = nc - 1
  local sk = KEYS[#KEYS]
  local se = tonumber(redis.call('HGET', sk, 'e'))
  if se and now < se and redis.call('HEXISTS', sk, 'm:' .. seen) == 1 then
    return {0, 's'}
  end
end
local live = {}
for j = 1, nc do
  local k = KEYS[nb + j]
  local member = ARGV[A + (j - 1) * 3 + 2]
  local max = tonumber(ARGV[A + (j - 1) * 3 + 3])
  local e = tonumber(redis.call('HGET', k, 'e'))
  live[j] = e and now < e
  if live[j] then
    local n = tonumber(redis.call('HGET', k, 'n')) or 0
    if n >= max and (member == '' or redis.call('HEXISTS', k, 'm:' .. member) == 0) then
      return {0, 'f', j}
    end
  end
end
local out = {1}
for j = 1, nc do
  local k = KEYS[nb + j]
  local win = tonumber(ARGV[A + (j - 1) * 3 + 1])
  local member = ARGV[A + (j - 1) * 3 + 2]
  if not live[j] then
    redis.call('DEL', k)
    redis.call('HSET', k, 'e', string.format('%.0f', now + win), 'n', 0)
    redis.call('PEXPIRE', k, win)
  end
  local n = tonumber(redis.call('HGET', k, 'n'))
  local added = 0
  if member == '' then
    n = redis.call('HINCRBY', k, 'n', 1)
    added = 1
  elseif n < cap and redis.call('HSETNX', k, 'm:' .. member, 1) == 1 then
    n = redis.call('HINCRBY', k, 'n', 1)
    added = 1
  end
  out[#out + 1] = n
  out[#out + 1] = added
end
return out
`,
};

/**
 * Take back one event or member that rateReserve added.
 * KEYS: [1] counter.  ARGV: [1] now, [2] member digest or ''.
 */
const rateUnhit: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local e = tonumber(redis.call('HGET', KEYS[1], 'e'))
if (not e) or tonumber(ARGV[1]) >= e then return 0 end
if ARGV[2] ~= '' and redis.call('HDEL', KEYS[1], 'm:' .. ARGV[2]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'n')) > 0 then redis.call('HINCRBY', KEYS[1], 'n', -1) end
return 1
`,
};

/**
 * Take one of ARGV[1] slots of a counting semaphore for ARGV[2] ms.  KEYS: [1] slot counter.
 * Returns 1 when taken.
 */
const slotAcquire: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`,
};

/** Give a slot back.  KEYS: [1] slot counter. */
const slotRelease: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
`,
};

/**
 * Replace a session only while it exists (a touch must not bring back a revoked session).
 * KEYS: [1] session hash.  ARGV: [1] user, [2] sealed record, [3] ttl ms.
 * Returns 1 when replaced, 0 when the session is gone or now belongs to someone else.
 */
const sessionReplace: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`,
};

/**
 * Block a key until a time, never shortening a longer block already in place.
 * KEYS: [1] block hash, [2] block index (zset key -> until).
 * ARGV: [1] blocked key, [2] until, [3] now, [4] reason.
 * Returns 1 when the block was written, 0 when a longer one stands (or `until` is past).
 */
const block: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local untilMs = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
local cur = tonumber(redis.call('HGET', KEYS[1], 'u'))
if untilMs <= now or (cur and cur > now and cur >= untilMs) then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', string.format('%.0f', untilMs), 'r', ARGV[4])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', untilMs - now))
redis.call('ZADD', KEYS[2], string.format('%.0f', untilMs), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = tonumber(last[2]) - now
if ttl > 0 and redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], string.format('%.0f', ttl))
end
return 1
`,
};

/**
 * Lift a block.  KEYS: [1] block hash, [2] block index.  ARGV: [1] blocked key.
 * Returns 1 when a block was there.
 */
const unblock: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
`,
};

/**
 * Blocks in force, soonest to end first, as a flat list [key, until, reason, ...]; prunes
 * the index.  KEYS: [1] block index.  ARGV: [1] now, [2] block key prefix.
 */
const listBlocks: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local now = string.format('%.0f', tonumber(ARGV[1]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local v = redis.call('HMGET', ARGV[2] .. k, 'u', 'r')
  if v[1] and tonumber(v[1]) > tonumber(now) then
    out[#out + 1] = k
    out[#out + 1] = v[1]
    out[#out + 1] = v[2] or ''
  else
    redis.call('ZREM', KEYS[1], k)
  end
end
return out
`,
};

/**
 * Remember a network for a user, keeping only the most recently seen ARGV[3] of them.
 * KEYS: [1] zset network -> last seen.  ARGV: [1] network key, [2] now, [3] cap.
 * Returns 1 when the network was not known before.
 */
const knownNetworkAdd: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local added = redis.call('ZADD', KEYS[1], string.format('%.0f', tonumber(ARGV[2])), ARGV[1])
local cap = tonumber(ARGV[3])
local card = redis.call('ZCARD', KEYS[1])
if card > cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, card - cap - 1)
end
return added
`,
};

/** Replace a user's recovery code hashes.  KEYS: [1] set.  ARGV: the hashes. */
const setRecoveryCodes: ScriptDef = {
  numberOfKeys: 1,
  lua: `
redis.call('DEL', KEYS[1])
for i = 1, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
return #ARGV
`,
};

/**
 * Store the lockdown state and announce it.
 * KEYS: [1] lockdown key.  ARGV: [1] state JSON, [2] channel, [3] message.
 */
const setLockdown: ScriptDef = {
  numberOfKeys: 1,
  lua: `
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`,
};

// ---- passkeys (issue 13) ----

/**
 * Add a passkey unless its id is taken (by this user or, in the owner index, by another) or the
 * user has `max`; the index (credential id -> user, for passwordless sign-in) is written with it.
 * KEYS: [1] the user's passkey hash, [2] the owner index. ARGV: [1] credential id, [2] JSON
 * record, [3] max, [4] user. Returns 1 when added, 0 otherwise.
 */
const passkeyAdd: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if owner and owner ~= ARGV[4] then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
`,
};

/**
 * Remove a passkey and its owner-index entry (only when the index names this user).
 * KEYS: [1] the user's passkey hash, [2] the owner index. ARGV: [1] credential id, [2] user.
 * Returns 1 when removed.
 */
const passkeyRemove: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local n = redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
return n
`,
};

/**
 * Drop every owner-index entry of a user's passkeys (before the user's keys are deleted).
 * KEYS: [1] the user's passkey hash, [2] the owner index. ARGV: [1] user.
 */
const passkeyForget: ScriptDef = {
  numberOfKeys: 2,
  lua: `
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('HGET', KEYS[2], id) == ARGV[1] then redis.call('HDEL', KEYS[2], id) end
end
return 1
`,
};

/**
 * Record a passkey use; refuse a signature counter that does not move forward (a cloned
 * authenticator) when both counters are nonzero.
 * KEYS: [1] the user's passkey hash. ARGV: [1] credential id, [2] new counter, [3] now (ms).
 * Returns 'ok', 'cloned' or 'gone'.
 */
const passkeyUse: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 'gone' end
local rec = cjson.decode(raw)
local old = tonumber(rec.counter) or 0
local new = tonumber(ARGV[2])
if (old > 0 or new > 0) and new <= old then return 'cloned' end
rec.counter = new
rec.lastUsedAt = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 'ok'
`,
};

/** Rename a passkey. KEYS: [1] the user's passkey hash. ARGV: [1] id, [2] name. 1 if renamed. */
const passkeyRename: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local rec = cjson.decode(raw)
rec.name = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
`,
};

export const PASSKEY_SCRIPTS = { pcPasskeyAdd: passkeyAdd, pcPasskeyUse: passkeyUse, pcPasskeyRename: passkeyRename, pcPasskeyRemove: passkeyRemove, pcPasskeyForget: passkeyForget } as const;

export const SCRIPTS = {
  pcSessionSet: sessionSet,
  pcSessionDelete: sessionDelete,
  pcSessionDeleteByUser: sessionDeleteByUser,
  pcSessionList: sessionList,
  pcSessionDeleteMany: sessionDeleteMany,
  pcRateHit: rateHit,
  pcRateReserve: rateReserve,
  pcRateUnhit: rateUnhit,
  pcSlotAcquire: slotAcquire,
  pcSlotRelease: slotRelease,
  pcSessionReplace: sessionReplace,
  pcBlock: block,
  pcUnblock: unblock,
  pcListBlocks: listBlocks,
  pcKnownNetworkAdd: knownNetworkAdd,
  pcSetRecoveryCodes: setRecoveryCodes,
  pcSetLockdown: setLockdown,
  ...PASSKEY_SCRIPTS,
} as const satisfies Record<string, ScriptDef>;

export type ScriptName = keyof typeof SCRIPTS;
