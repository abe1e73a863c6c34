--[[
  Marks replicas stored, one after the other as separate calls would (creating the chunk and
  replica records when absent, as reindex does), frees each one's quota reservation and moves
  every counter once; a replica already stored changes nothing (a job that ran twice). One
  call settles a batch: the replicas a worker process made durable while its last call ran.
  KEYS[1..7]  the chunk keys of the first replica (includes/chunk-keys.lua; only the shared
              keys 4..7 are used from here)
  KEYS[8]     verification index      P:verified    zset of chunkId:replicaId by last verification (ms)
  KEYS[9]     this minute of the series   P:minute:<epochMinute>  (includes/minute-series.lua)
  KEYS[10..]  five per replica, in ARGV's order: its chunk record P:c:<chunkId>, the chunk's
              replicas P:c:<chunkId>:replicas, the replica record base P:r:<chunkId>:, the
              replica record P:r:<chunkId>:<replicaId>, the backend's reservations
              P:reserved:<backend> (hash of bytes by chunkId:replicaId)
  ARGV[1]     JSON {minuteTtl (seconds), replicas: [{chunkId, replicaId, backend, path, checksum,
                    algorithm, sizeBytes, targetNode, cloudProvider, taskId, storedAt, attempts,
                    createdAt, createdAtMs, verifiedAtMs, codec ('' = as is), storedBytes (bytes
                    on the backend), rebuilt (true: reindex rebuilds the record, nothing was
                    written now, so the per-minute series leaves it out; the counters count it
                    as ever)}]}
  Reply       each replica's chunk status afterwards, in order
]]
--- @include chunk-keys
--- @include refresh-chunk
--- @include stored-counters
--- @include minute-series
local verifiedKey, minuteKey = KEYS[8], KEYS[9]
local batch = cjson.decode(ARGV[1])
-- The per-minute series moves once per call, by the batch's sums.
local minute = { replicas_stored = 0, bytes_stored = 0, repairs_done = 0 }

local function store_one(a, chunk, replicas, base, replicaKey, reservedKey)
  local member = a.chunkId .. ':' .. a.replicaId
  if redis.call('EXISTS', chunk) == 0 then
    redis.call('HSET', chunk, 'chunkId', a.chunkId, 'checksum', a.checksum, 'algorithm', a.algorithm,
      'sizeBytes', a.sizeBytes, 'createdAt', a.createdAt, 'createdAtMs', a.createdAtMs)
    redis.call('ZADD', chunksKey, a.createdAtMs, a.chunkId)
  end
  redis.call('SADD', replicas, a.replicaId)
  local old = redis.call('HGET', replicaKey, 'status')
  if old ~= 'stored' then
    redis.call('HSET', replicaKey, 'chunkId', a.chunkId, 'replicaId', a.replicaId, 'backend', a.backend,
      'path', a.path, 'checksum', a.checksum, 'algorithm', a.algorithm, 'sizeBytes', a.sizeBytes,
      'targetNode', a.targetNode, 'cloudProvider', a.cloudProvider, 'taskId', a.taskId,
      'storedAt', a.storedAt, 'attempts', a.attempts, 'status', 'stored', 'error', '',
      'codec', a.codec, 'storedBytes', a.storedBytes)
    redis.call('HSETNX', replicaKey, 'generation', 0)
    if old == 'failed' then redis.call('HINCRBY', statsKey, 'replicas_failed', -1) end
    if old == 'corrupt' then
      redis.call('HINCRBY', statsKey, 'replicas_corrupt', -1)
      redis.call('HINCRBY', statsKey, 'repairs_done', 1)
      if not a.rebuilt then minute.repairs_done = minute.repairs_done + 1 end
    end
    count_stored(statsKey, 1, tonumber(a.storedBytes), a.cloudProvider, a.targetNode, a.backend)
    if not a.rebuilt then
      minute.replicas_stored = minute.replicas_stored + 1
      minute.bytes_stored = minute.bytes_stored + tonumber(a.storedBytes)
    end
    redis.call('ZADD', verifiedKey, a.verifiedAtMs, member)
  end
  release_reservation(reservedKey, statsKey, a.backend, member)
  return refresh_chunk_at(a.chunkId, chunk, replicas, base)
end

local statuses = {}
for i, a in ipairs(batch.replicas) do
  local k = 9 + (i - 1) * 5
  statuses[i] = store_one(a, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5])
end
for field, n in pairs(minute) do
  if n > 0 then count_minute(minuteKey, batch.minuteTtl, field, n) end
end
return statuses
