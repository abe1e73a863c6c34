/**
 * Lua scripts of the catalog. Each state change of a replica and every counter it moves
 * happen in one script, so a transition is counted exactly once even when a job runs twice
 * (at-least-once processing) or two workers race.
 *
 * Key layout under the prefix P (a hash tag, so all keys share one Cluster slot):
 *   P:r:<chunkId>:<replicaId>   hash  replica record
 *   P:c:<chunkId>               hash  chunk record
 *   P:c:<chunkId>:replicas      set   replica ids of the chunk
 *   P:chunks                    zset  chunk ids by first-queued time (ms)
 *   P:stats                     hash  counters (see catalog.ts)
 *   P:reserved:<backend>        hash  bytes reserved by in-flight writes, by replica
 *   P:verified                  zset  chunkId:replicaId of stored replicas by last verification (ms)
 *   P:ledger:seq                string  number of chunks ever entered in the ledger
 *   P:ledger                    zset  chunk ids by ledger sequence, not yet in a checkpoint
 *   P:checkpoints               zset  checkpoint ids by checkpoint sequence
 *   P:checkpoint:<id>           hash  checkpoint index entry
 *   P:checkpoint:head           hash  newest checkpoint: id, sequence, toLedgerSeq
 *   P:checkpoint:lock           string  token of the process sealing a checkpoint
 *   P:staged:<segment>          set   chunk ids whose staged bytes are in a staging segment, not ended yet
 *
 * The ledger is how completions reach checkpoints: a chunk enters it exactly once, in the
 * same script as the replica change that first makes the chunk stored (or degraded with
 * data), so no completion is lost and none is counted twice.
 */

/** Recomputes a chunk's status from its replicas and moves the chunk counters. Expects P (prefix) and chunkId. */
const REFRESH_CHUNK = `
local function refresh_chunk(P, chunkId)
  local chunkKey = P .. ':c:' .. chunkId
  local ids = redis.call('SMEMBERS', chunkKey .. ':replicas')
  local stored, failed, open, expired = 0, 0, 0, 0
  for _, rid in ipairs(ids) do
    local st = redis.call('HGET', P .. ':r:' .. chunkId .. ':' .. rid, 'status')
    if st == 'stored' then stored = stored + 1
    elseif st == 'failed' or st == 'corrupt' then failed = failed + 1
    elseif st == 'expired' then expired = expired + 1
    else open = open + 1 end
  end
  local status = 'pending'
  if open == 0 then
    if stored + failed == 0 and expired > 0 then status = 'expired'
    elseif failed == 0 then status = 'stored' elseif stored > 0 then status = 'degraded' else status = 'failed' end
  end
  -- An expired chunk leaves the index of live chunks; its records stay as the retention tombstone.
  if status == 'expired' then redis.call('ZREM', P .. ':chunks', chunkId)
  else redis.call('ZADD', P .. ':chunks', 'NX', redis.call('HGET', chunkKey, 'createdAtMs') or 0, chunkId) end
  local old = redis.call('HGET', chunkKey, 'status')
  if old ~= status then
    if old then redis.call('HINCRBY', P .. ':stats', 'chunks_' .. old, -1) end
    redis.call('HINCRBY', P .. ':stats', 'chunks_' .. status, 1)
    redis.call('HSET', chunkKey, 'status', status)
  end
  if (status == 'stored' or status == 'degraded') and not redis.call('HGET', chunkKey, 'ledgerSeq') then
    local seq = redis.call('INCR', P .. ':ledger:seq')
    redis.call('HSET', chunkKey, 'ledgerSeq', seq)
    redis.call('ZADD', P .. ':ledger', seq, chunkId)
  end
  return status
end
`;

/** Takes a replica that was stored out of every stored counter and the verification index. */
const LEAVE_STORED = `
local function leave_stored(P, chunkId, rid, size, cloud, node, backend)
  local stats = P .. ':stats'
  -- 0 - size, not -size: for an empty replica -size is -0, which Redis refuses as an integer.
  local minus = 0 - size
  redis.call('HINCRBY', stats, 'replicas_stored', -1)
  redis.call('HINCRBY', stats, 'bytes_stored', minus)
  redis.call('HINCRBY', stats, 'cloud:' .. cloud .. ':count', -1)
  redis.call('HINCRBY', stats, 'cloud:' .. cloud .. ':bytes', minus)
  redis.call('HINCRBY', stats, 'node:' .. node .. ':count', -1)
  redis.call('HINCRBY', stats, 'node:' .. node .. ':bytes', minus)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':bytes', minus)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':count', -1)
  redis.call('ZREM', P .. ':verified', chunkId .. ':' .. rid)
end
`;

/**
 * Registers a chunk and the replicas a producer asks for.
 * ARGV: P, chunkId, checksum, algorithm, sizeBytes, createdAtIso, createdAtMs, n, then n x
 *       (replicaId, backend, targetNode, cloudProvider, taskId)
 * Returns {'conflict', existingChecksum, existingAlgorithm} or
 *         {'ok', createdAtMs, action1, generation1, ...} with action 'enqueue' | 'skip'.
 */
export const REGISTER_CHUNK = `${REFRESH_CHUNK}
local P, chunkId = ARGV[1], ARGV[2]
local chunkKey = P .. ':c:' .. chunkId
local existing = redis.call('HMGET', chunkKey, 'checksum', 'algorithm', 'createdAtMs')
local createdAtMs = ARGV[7]
if existing[1] then
  if existing[1] ~= ARGV[3] or existing[2] ~= ARGV[4] then
    return {'conflict', existing[1], existing[2]}
  end
  createdAtMs = existing[3]
else
  redis.call('HSET', chunkKey, 'chunkId', chunkId, 'checksum', ARGV[3], 'algorithm', ARGV[4],
    'sizeBytes', ARGV[5], 'createdAt', ARGV[6], 'createdAtMs', ARGV[7])
  redis.call('ZADD', P .. ':chunks', ARGV[7], chunkId)
end
local result = {'ok', createdAtMs}
local n = tonumber(ARGV[8])
for i = 0, n - 1 do
  local base = 9 + i * 5
  local rid = ARGV[base]
  local rkey = P .. ':r:' .. chunkId .. ':' .. rid
  local st = redis.call('HGET', rkey, 'status')
  if not st then
    redis.call('HSET', rkey, 'chunkId', chunkId, 'replicaId', rid, 'backend', ARGV[base + 1],
      'targetNode', ARGV[base + 2], 'cloudProvider', ARGV[base + 3], 'taskId', ARGV[base + 4],
      'checksum', ARGV[3], 'algorithm', ARGV[4], 'sizeBytes', ARGV[5], 'status', 'queued',
      'path', '', 'storedAt', '', 'attempts', 0, 'error', '', 'generation', 0)
    redis.call('SADD', chunkKey .. ':replicas', rid)
    table.insert(result, 'enqueue'); table.insert(result, 0)
  elseif st == 'stored' then
    table.insert(result, 'skip'); table.insert(result, redis.call('HGET', rkey, 'generation'))
  elseif st == 'failed' or st == 'expired' or st == 'corrupt' then
    -- A fresh generation, so a fresh job id: the old one may still be kept as completed.
    -- A corrupt replica is written again from the producer's bytes (the best source there is).
    local gen = redis.call('HINCRBY', rkey, 'generation', 1)
    redis.call('HSET', rkey, 'status', 'queued')
    if st == 'failed' then redis.call('HINCRBY', P .. ':stats', 'replicas_failed', -1) end
    if st == 'corrupt' then redis.call('HINCRBY', P .. ':stats', 'replicas_corrupt', -1) end
    table.insert(result, 'enqueue'); table.insert(result, gen)
  else
    table.insert(result, 'enqueue'); table.insert(result, redis.call('HGET', rkey, 'generation'))
  end
end
refresh_chunk(P, chunkId)
return result
`;

/**
 * Marks a replica stored (creating chunk and replica records when absent, as reindex does),
 * releases its quota reservation and moves the counters once.
 * ARGV: P, chunkId, replicaId, backend, path, checksum, algorithm, sizeBytes, targetNode,
 *       cloudProvider, taskId, storedAt, attempts, createdAtIso, createdAtMs, verifiedAtMs,
 *       codec ('' = as is), storedBytes (bytes on the backend)
 * Byte counters count bytes on the backend (compressed size for compressed replicas).
 * Returns the chunk's status.
 */
export const RECORD_STORED = `${REFRESH_CHUNK}
local P, chunkId, rid, backend = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local size = tonumber(ARGV[18])
local chunkKey = P .. ':c:' .. chunkId
local rkey = P .. ':r:' .. chunkId .. ':' .. rid
local stats = P .. ':stats'
if redis.call('EXISTS', chunkKey) == 0 then
  redis.call('HSET', chunkKey, 'chunkId', chunkId, 'checksum', ARGV[6], 'algorithm', ARGV[7],
    'sizeBytes', ARGV[8], 'createdAt', ARGV[14], 'createdAtMs', ARGV[15])
  redis.call('ZADD', P .. ':chunks', ARGV[15], chunkId)
end
redis.call('SADD', chunkKey .. ':replicas', rid)
local old = redis.call('HGET', rkey, 'status')
if old ~= 'stored' then
  redis.call('HSET', rkey, 'chunkId', chunkId, 'replicaId', rid, 'backend', backend, 'path', ARGV[5],
    'checksum', ARGV[6], 'algorithm', ARGV[7], 'sizeBytes', ARGV[8], 'targetNode', ARGV[9],
    'cloudProvider', ARGV[10], 'taskId', ARGV[11], 'storedAt', ARGV[12], 'attempts', ARGV[13],
    'status', 'stored', 'error', '', 'codec', ARGV[17], 'storedBytes', ARGV[18])
  if not redis.call('HGET', rkey, 'generation') then redis.call('HSET', rkey, 'generation', 0) end
  if old == 'failed' then redis.call('HINCRBY', stats, 'replicas_failed', -1) end
  if old == 'corrupt' then
    redis.call('HINCRBY', stats, 'replicas_corrupt', -1)
    redis.call('HINCRBY', stats, 'repairs_done', 1)
  end
  redis.call('HINCRBY', stats, 'replicas_stored', 1)
  redis.call('HINCRBY', stats, 'node:' .. ARGV[9] .. ':count', 1)
  redis.call('HINCRBY', stats, 'node:' .. ARGV[9] .. ':bytes', size)
  redis.call('HINCRBY', stats, 'bytes_stored', size)
  redis.call('HINCRBY', stats, 'cloud:' .. ARGV[10] .. ':count', 1)
  redis.call('HINCRBY', stats, 'cloud:' .. ARGV[10] .. ':bytes', size)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':bytes', size)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':count', 1)
  redis.call('ZADD', P .. ':verified', ARGV[16], chunkId .. ':' .. rid)
end
local reserved = redis.call('HGET', P .. ':reserved:' .. backend, chunkId .. ':' .. rid)
if reserved then
  redis.call('HDEL', P .. ':reserved:' .. backend, chunkId .. ':' .. rid)
  redis.call('HINCRBY', stats, 'reserved:' .. backend, 0 - tonumber(reserved))
end
return refresh_chunk(P, chunkId)
`;

/**
 * Marks a replica failed for good, unless it is already stored (a late failure of a
 * duplicate run changes nothing). Releases its reservation.
 * ARGV: P, chunkId, replicaId, backend, error, attempts
 * Returns the chunk's status.
 */
export const RECORD_FAILED = `${REFRESH_CHUNK}
local P, chunkId, rid, backend = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rkey = P .. ':r:' .. chunkId .. ':' .. rid
local old = redis.call('HGET', rkey, 'status')
local reserved = redis.call('HGET', P .. ':reserved:' .. backend, chunkId .. ':' .. rid)
if reserved then
  redis.call('HDEL', P .. ':reserved:' .. backend, chunkId .. ':' .. rid)
  redis.call('HINCRBY', P .. ':stats', 'reserved:' .. backend, 0 - tonumber(reserved))
end
if not old or old == 'stored' then
  if not old then return 'unknown' end
  return refresh_chunk(P, chunkId)
end
redis.call('HSET', rkey, 'status', 'failed', 'error', ARGV[5], 'attempts', ARGV[6])
if old ~= 'failed' then redis.call('HINCRBY', P .. ':stats', 'replicas_failed', 1) end
return refresh_chunk(P, chunkId)
`;

/**
 * Reserves quota for one in-flight write; idempotent per replica.
 * ARGV: P, backend, field (chunkId:replicaId), bytes, limitBytes (0 = none)
 * Returns {1} when reserved, {0, usedBytes} when the write would exceed the limit.
 */
export const RESERVE_QUOTA = `
local P, backend, field = ARGV[1], ARGV[2], ARGV[3]
local bytes, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local rkey = P .. ':reserved:' .. backend
if redis.call('HEXISTS', rkey, field) == 1 then return {1} end
local stats = P .. ':stats'
local used = tonumber(redis.call('HGET', stats, 'backend:' .. backend .. ':bytes') or '0')
  + tonumber(redis.call('HGET', stats, 'reserved:' .. backend) or '0')
if limit > 0 and used + bytes > limit then return {0, used} end
redis.call('HSET', rkey, field, bytes)
redis.call('HINCRBY', stats, 'reserved:' .. backend, bytes)
return {1}
`;

/**
 * Marks a stored replica corrupt (missing, unreadable or failing its checksum) and takes it
 * out of the stored counters. Idempotent: a replica already corrupt keeps its number.
 * ARGV: P, chunkId, replicaId, reason, expectedPath ('' = any)
 * Returns the replica's corruption number (names its repair job), or 0 if it is not stored,
 * or no longer at `expectedPath` (compression moved it meanwhile: what was found bad is gone).
 */
export const RECORD_CORRUPT = `${REFRESH_CHUNK}${LEAVE_STORED}
local P, chunkId, rid = ARGV[1], ARGV[2], ARGV[3]
local rkey = P .. ':r:' .. chunkId .. ':' .. rid
local r = redis.call('HMGET', rkey, 'status', 'sizeBytes', 'cloudProvider', 'targetNode', 'backend', 'corruptions', 'storedBytes', 'path')
if r[1] == 'corrupt' then return tonumber(r[6] or '1') end
if r[1] ~= 'stored' then return 0 end
if ARGV[5] and ARGV[5] ~= '' and r[8] ~= ARGV[5] then return 0 end
local size = tonumber(r[7] or r[2])
local stats = P .. ':stats'
local n = redis.call('HINCRBY', rkey, 'corruptions', 1)
redis.call('HSET', rkey, 'status', 'corrupt', 'error', ARGV[4])
leave_stored(P, chunkId, rid, size, r[3], r[4], r[5])
redis.call('HINCRBY', stats, 'replicas_corrupt', 1)
redis.call('HINCRBY', stats, 'corruptions_found', 1)
refresh_chunk(P, chunkId)
return n
`;

/**
 * Commits a sealed checkpoint to the index, only if the caller still holds the sealing lock
 * and the head is where the caller started; drops the sealed range from the ledger.
 * ARGV: P, lockToken, expectedHeadToSeq, toLedgerSeq, id, sequence, createdAt, previousId,
 *       chunkCount, totalBytes, checksum, key, fromLedgerSeq
 * Returns 'ok', 'lost-lock' or 'moved'.
 */
export const COMMIT_CHECKPOINT = `
local P = ARGV[1]
if redis.call('GET', P .. ':checkpoint:lock') ~= ARGV[2] then return 'lost-lock' end
local head = redis.call('HGET', P .. ':checkpoint:head', 'toLedgerSeq') or '0'
if head ~= ARGV[3] then return 'moved' end
redis.call('HSET', P .. ':checkpoint:' .. ARGV[5], 'id', ARGV[5], 'sequence', ARGV[6], 'createdAt', ARGV[7],
  'previousId', ARGV[8], 'chunkCount', ARGV[9], 'totalBytes', ARGV[10], 'checksum', ARGV[11], 'key', ARGV[12],
  'fromLedgerSeq', ARGV[13], 'toLedgerSeq', ARGV[4])
redis.call('ZADD', P .. ':checkpoints', ARGV[6], ARGV[5])
redis.call('HSET', P .. ':checkpoint:head', 'id', ARGV[5], 'sequence', ARGV[6], 'toLedgerSeq', ARGV[4])
redis.call('ZREMRANGEBYSCORE', P .. ':ledger', '-inf', ARGV[4])
return 'ok'
`;


/**
 * Restores one checkpoint into the index from its manifest (reindex): the index entry, the
 * head, and each chunk's place in the ledger, so those chunks are never sealed again.
 * ARGV: P, id, sequence, createdAt, previousId, chunkCount, totalBytes, checksum, key,
 *       fromLedgerSeq, toLedgerSeq, n, then n x (chunkId, checksum, algorithm, sizeBytes, createdAtMs, createdAtIso)
 */
export const RESTORE_CHECKPOINT = `
local P = ARGV[1]
redis.call('HSET', P .. ':checkpoint:' .. ARGV[2], 'id', ARGV[2], 'sequence', ARGV[3], 'createdAt', ARGV[4],
  'previousId', ARGV[5], 'chunkCount', ARGV[6], 'totalBytes', ARGV[7], 'checksum', ARGV[8], 'key', ARGV[9],
  'fromLedgerSeq', ARGV[10], 'toLedgerSeq', ARGV[11])
redis.call('ZADD', P .. ':checkpoints', ARGV[3], ARGV[2])
local headSeq = tonumber(redis.call('HGET', P .. ':checkpoint:head', 'sequence') or '0')
if tonumber(ARGV[3]) > headSeq then
  redis.call('HSET', P .. ':checkpoint:head', 'id', ARGV[2], 'sequence', ARGV[3], 'toLedgerSeq', ARGV[11])
end
local ledgerSeq = tonumber(redis.call('GET', P .. ':ledger:seq') or '0')
if tonumber(ARGV[11]) > ledgerSeq then redis.call('SET', P .. ':ledger:seq', ARGV[11]) end
local n = tonumber(ARGV[12])
for i = 0, n - 1 do
  local base = 13 + i * 6
  local chunkId = ARGV[base]
  local chunkKey = P .. ':c:' .. chunkId
  if redis.call('EXISTS', chunkKey) == 0 then
    local ms = tonumber(ARGV[base + 4])
    redis.call('HSET', chunkKey, 'chunkId', chunkId, 'checksum', ARGV[base + 1], 'algorithm', ARGV[base + 2],
      'sizeBytes', ARGV[base + 3], 'createdAtMs', ARGV[base + 4], 'createdAt', ARGV[base + 5])
    redis.call('ZADD', P .. ':chunks', ms, chunkId)
  end
  redis.call('HSET', chunkKey, 'ledgerSeq', tonumber(ARGV[10]) + i + 1)
  redis.call('ZREM', P .. ':ledger', chunkId)
end
return 'ok'
`;

/**
 * Records a stored (or corrupt) replica as deleted by retention (the object is already
 * gone) and moves the counters once; the record stays as a tombstone with status 'expired'.
 * ARGV: P, chunkId, replicaId, expiredAtIso
 * Returns the chunk's status afterwards, or 'skip' if the replica was not stored.
 */
export const RECORD_EXPIRED = `${REFRESH_CHUNK}${LEAVE_STORED}
local P, chunkId, rid = ARGV[1], ARGV[2], ARGV[3]
local rkey = P .. ':r:' .. chunkId .. ':' .. rid
local r = redis.call('HMGET', rkey, 'status', 'sizeBytes', 'cloudProvider', 'targetNode', 'backend', 'storedBytes')
local stats = P .. ':stats'
if r[1] == 'corrupt' then
  -- Already out of the stored counters since it was found corrupt.
  redis.call('HSET', rkey, 'status', 'expired', 'expiredAt', ARGV[4])
  redis.call('HINCRBY', stats, 'replicas_corrupt', -1)
  redis.call('HINCRBY', stats, 'replicas_expired', 1)
  return refresh_chunk(P, chunkId)
end
if r[1] ~= 'stored' then return 'skip' end
local size = tonumber(r[6] or r[2])
redis.call('HSET', rkey, 'status', 'expired', 'expiredAt', ARGV[4], 'error', '')
leave_stored(P, chunkId, rid, size, r[3], r[4], r[5])
redis.call('HINCRBY', stats, 'replicas_expired', 1)
redis.call('HINCRBY', stats, 'bytes_expired', size)
return refresh_chunk(P, chunkId)
`;

/**
 * Points a stored replica at its compressed object, if it is still stored at `expectedPath`,
 * and moves the byte counters by the bytes saved.
 * ARGV: P, chunkId, replicaId, expectedPath, newPath, codec, storedBytes
 * Returns 'ok' or 'skip' (the replica changed meanwhile).
 */
export const RECORD_COMPRESSED = `
local P, chunkId, rid = ARGV[1], ARGV[2], ARGV[3]
local rkey = P .. ':r:' .. chunkId .. ':' .. rid
local r = redis.call('HMGET', rkey, 'status', 'path', 'sizeBytes', 'storedBytes', 'cloudProvider', 'targetNode', 'backend')
if r[1] ~= 'stored' or r[2] ~= ARGV[4] then return 'skip' end
local delta = tonumber(ARGV[7]) - tonumber(r[4] or r[3])
local stats = P .. ':stats'
redis.call('HSET', rkey, 'path', ARGV[5], 'codec', ARGV[6], 'storedBytes', ARGV[7])
redis.call('HINCRBY', stats, 'bytes_stored', delta)
redis.call('HINCRBY', stats, 'cloud:' .. r[5] .. ':bytes', delta)
redis.call('HINCRBY', stats, 'node:' .. r[6] .. ':bytes', delta)
redis.call('HINCRBY', stats, 'backend:' .. r[7] .. ':bytes', delta)
redis.call('HINCRBY', stats, 'replicas_compressed', 1)
redis.call('HINCRBY', stats, 'bytes_saved_by_compression', 0 - delta)
return 'ok'
`;

/**
 * After checkpoints were restored (reindex), gives every ledger entry at or below the head a
 * new place after it. Such entries are chunks stored while the index was empty (Redis lost
 * its data, reindex not run yet): the restored head already covers their old places, so no
 * seal would ever reach them.
 * ARGV: P
 * Returns the number of entries moved.
 */
export const RENUMBER_STRANDED_LEDGER = `
local P = ARGV[1]
local head = redis.call('HGET', P .. ':checkpoint:head', 'toLedgerSeq') or '0'
local stranded = redis.call('ZRANGEBYSCORE', P .. ':ledger', '-inf', head)
for _, chunkId in ipairs(stranded) do
  local seq = redis.call('INCR', P .. ':ledger:seq')
  redis.call('ZADD', P .. ':ledger', seq, chunkId)
  redis.call('HSET', P .. ':c:' .. chunkId, 'ledgerSeq', seq)
end
return #stranded
`;

/**
 * Notes that a chunk whose bytes are in a staging segment has ended.
 * ARGV: P, segment, chunkId
 * Returns 1 when this call took the segment's last chunk out (the caller frees the file;
 * Redis drops the emptied set), else 0 (other chunks left, or this one was taken out before).
 */
export const SEGMENT_CHUNK_ENDED = `
local key = ARGV[1] .. ':staged:' .. ARGV[2]
if redis.call('SREM', key, ARGV[3]) == 1 and redis.call('SCARD', key) == 0 then return 1 end
return 0
`;
