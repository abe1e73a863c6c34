--[[
  Marks a replica stored (creating the chunk and replica records when absent, as reindex
  does), frees its quota reservation and moves every counter once; a replica already stored
  changes nothing (a job that ran twice).
  KEYS[1..7]  the chunk keys (includes/chunk-keys.lua)
  KEYS[8]     the replica record      P:r:<chunkId>:<replicaId>
  KEYS[9]     verification index      P:verified    zset of chunkId:replicaId by last verification (ms)
  KEYS[10]    the backend's reservations  P:reserved:<backend>  hash of bytes by chunkId:replicaId
  KEYS[11]    this minute of the series   P:minute:<epochMinute>  (includes/minute-series.lua)
  ARGV[1]     JSON {chunkId, replicaId, backend, path, checksum, algorithm, sizeBytes, targetNode,
                    cloudProvider, taskId, storedAt, attempts, createdAt, createdAtMs, verifiedAtMs,
                    codec ('' = as is), storedBytes (bytes on the backend), minuteTtl (seconds),
                    rebuilt (true: reindex rebuilds the record, nothing was written now, so the
                    per-minute series leaves it out; the counters count it as ever)}
  Reply       the chunk's status
]]
--- @include chunk-keys
--- @include refresh-chunk
--- @include stored-counters
--- @include minute-series
local replicaKey, verifiedKey, reservedKey, minuteKey = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local a = cjson.decode(ARGV[1])
local member = a.chunkId .. ':' .. a.replicaId
if redis.call('EXISTS', chunkKey) == 0 then
  redis.call('HSET', chunkKey, 'chunkId', a.chunkId, 'checksum', a.checksum, 'algorithm', a.algorithm,
    'sizeBytes', a.sizeBytes, 'createdAt', a.createdAt, 'createdAtMs', a.createdAtMs)
  redis.call('ZADD', chunksKey, a.createdAtMs, a.chunkId)
end
redis.call('SADD', chunkReplicasKey, a.replicaId)
local old = redis.call('HGET', replicaKey, 'status')
if old ~= 'stored' then
  redis.call('HSET', replicaKey, 'chunkId', a.chunkId, 'replicaId', a.replicaId, 'backend', a.backend,
    'path', a.path, 'checksum', a.checksum, 'algorithm', a.algorithm, 'sizeBytes', a.sizeBytes,
    'targetNode', a.targetNode, 'cloudProvider', a.cloudProvider, 'taskId', a.taskId,
    'storedAt', a.storedAt, 'attempts', a.attempts, 'status', 'stored', 'error', '',
    'codec', a.codec, 'storedBytes', a.storedBytes)
  if not redis.call('HGET', replicaKey, 'generation') then redis.call('HSET', replicaKey, 'generation', 0) end
  if old == 'failed' then redis.call('HINCRBY', statsKey, 'replicas_failed', -1) end
  if old == 'corrupt' then
    redis.call('HINCRBY', statsKey, 'replicas_corrupt', -1)
    redis.call('HINCRBY', statsKey, 'repairs_done', 1)
    if not a.rebuilt then count_minute(minuteKey, a.minuteTtl, 'repairs_done', 1) end
  end
  count_stored(statsKey, 1, tonumber(a.storedBytes), a.cloudProvider, a.targetNode, a.backend)
  if not a.rebuilt then
    count_minute(minuteKey, a.minuteTtl, 'replicas_stored', 1)
    count_minute(minuteKey, a.minuteTtl, 'bytes_stored', tonumber(a.storedBytes))
  end
  redis.call('ZADD', verifiedKey, a.verifiedAtMs, member)
end
release_reservation(reservedKey, statsKey, a.backend, member)
return refresh_chunk(a.chunkId)
