--[[
  Registers a chunk and the replicas a producer asks for, and says which need a job.
  KEYS[1..7]  the chunk keys (includes/chunk-keys.lua)
  ARGV[1]     JSON {chunkId, checksum, algorithm, sizeBytes, createdAt, createdAtMs,
                    replicas: [{replicaId, backend, targetNode, cloudProvider, taskId}]}
  Reply       {'conflict', recordedChecksum, recordedAlgorithm}: the id is known with another checksum
              {'ok', createdAtMs, action1, generation1, ...}: per replica in order, action
                'enqueue' | 'skip' (already stored) and the generation its job id carries
]]
--- @include chunk-keys
--- @include refresh-chunk
local a = cjson.decode(ARGV[1])
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
refresh_chunk(a.chunkId)
return reply
