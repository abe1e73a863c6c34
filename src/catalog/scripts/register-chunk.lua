--[[
  Registers chunks and the replicas a producer asks for, and says which need a job: one chunk
  after the other, as separate calls would. One call registers a batch: the chunks a producer
  prepared while its last call ran.
  KEYS[1..7]  the chunk keys of the first chunk (includes/chunk-keys.lua; only the shared keys
              4..7 are used from here)
  KEYS[8..]   three per chunk, in ARGV's order: its record P:c:<chunkId>, its replicas
              P:c:<chunkId>:replicas, its replica record base P:r:<chunkId>:
  ARGV[1]     JSON {chunks: [{chunkId, checksum, algorithm, sizeBytes, createdAt, createdAtMs,
                    replicas: [{replicaId, backend, targetNode, cloudProvider, taskId}]}]}
  Reply       per chunk, in order:
              {'conflict', recordedChecksum, recordedAlgorithm}: the id is known with another checksum
              {'ok', createdAtMs, action1, generation1, ...}: per replica in order, action
                'enqueue' | 'skip' (already stored) and the generation its job id carries
]]
--- @include chunk-keys
--- @include refresh-chunk
local function register_one(a, chunkKey, chunkReplicasKey, replicaBase)
  local existing = redis.call('HMGET', chunkKey, 'checksum', 'algorithm', 'createdAtMs')
  local createdAtMs = a.createdAtMs
  if existing[1] then
    if existing[1] ~= a.checksum or existing[2] ~= a.algorithm then
      return {'conflict', existing[1], existing[2]}
    end
    createdAtMs = existing[3]
  else
    redis.call('HSET', chunkKey, 'chunkId', a.chunkId, 'checksum', a.checksum, 'algorithm', a.algorithm,
      'sizeBytes', a.sizeBytes, 'createdAt', a.createdAt, 'createdAtMs', a.createdAtMs)
    redis.call('ZADD', chunksKey, a.createdAtMs, a.chunkId)
  end
  local reply = {'ok', createdAtMs}
  for _, r in ipairs(a.replicas) do
    local replicaKey = replicaBase .. r.replicaId
    local st = redis.call('HGET', replicaKey, 'status')
    if not st then
      redis.call('HSET', replicaKey, 'chunkId', a.chunkId, 'replicaId', r.replicaId, 'backend', r.backend,
        'targetNode', r.targetNode, 'cloudProvider', r.cloudProvider, 'taskId', r.taskId,
        'checksum', a.checksum, 'algorithm', a.algorithm, 'sizeBytes', a.sizeBytes, 'status', 'queued',
        'path', '', 'storedAt', '', 'attempts', 0, 'error', '', 'generation', 0)
      redis.call('SADD', chunkReplicasKey, r.replicaId)
      table.insert(reply, 'enqueue'); table.insert(reply, 0)
    elseif st == 'stored' then
      table.insert(reply, 'skip'); table.insert(reply, redis.call('HGET', replicaKey, 'generation'))
    elseif st == 'failed' or st == 'expired' or st == 'corrupt' then
      -- A fresh generation, so a fresh job id: the old one may still be kept as completed.
      -- A corrupt replica is written again from the producer's bytes (the best source there is).
      local generation = redis.call('HINCRBY', replicaKey, 'generation', 1)
      redis.call('HSET', replicaKey, 'status', 'queued')
      if st == 'failed' then redis.call('HINCRBY', statsKey, 'replicas_failed', -1) end
      if st == 'corrupt' then redis.call('HINCRBY', statsKey, 'replicas_corrupt', -1) end
      table.insert(reply, 'enqueue'); table.insert(reply, generation)
    else
      table.insert(reply, 'enqueue'); table.insert(reply, redis.call('HGET', replicaKey, 'generation'))
    end
  end
  refresh_chunk_at(a.chunkId, chunkKey, chunkReplicasKey, replicaBase)
  return reply
end

local batch = cjson.decode(ARGV[1])
local replies = {}
for i, a in ipairs(batch.chunks) do
  local k = 7 + (i - 1) * 3
  replies[i] = register_one(a, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3])
end
return replies
