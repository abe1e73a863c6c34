--[[
  refresh_chunk(chunkId): recomputes a chunk's status from its replicas' statuses, moves the
  chunk counters when it changes, keeps the chunk in (or, expired, out of) the live index,
  and enters the chunk in the ledger the first time it holds data (stored or degraded), so
  every stored chunk reaches exactly one checkpoint. Returns the status.
  refresh_chunk_at(chunkId, chunkKey, chunkReplicasKey, replicaBase) does the same for a
  chunk whose own keys are given (a script that settles several chunks).
  Needs the chunk keys (includes/chunk-keys.lua).
]]
local function refresh_chunk_at(chunkId, chunkKey, chunkReplicasKey, replicaBase)
  local stored, failed, open, expired = 0, 0, 0, 0
  for _, rid in ipairs(redis.call('SMEMBERS', chunkReplicasKey)) do
    local st = redis.call('HGET', replicaBase .. rid, 'status')
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
  if status == 'expired' then redis.call('ZREM', chunksKey, chunkId)
  else redis.call('ZADD', chunksKey, 'NX', redis.call('HGET', chunkKey, 'createdAtMs') or 0, chunkId) end
  local old = redis.call('HGET', chunkKey, 'status')
  if old ~= status then
    if old then redis.call('HINCRBY', statsKey, 'chunks_' .. old, -1) end
    redis.call('HINCRBY', statsKey, 'chunks_' .. status, 1)
    redis.call('HSET', chunkKey, 'status', status)
  end
  if (status == 'stored' or status == 'degraded') and not redis.call('HGET', chunkKey, 'ledgerSeq') then
    local seq = redis.call('INCR', ledgerSeqKey)
    redis.call('HSET', chunkKey, 'ledgerSeq', seq)
    redis.call('ZADD', ledgerKey, seq, chunkId)
  end
  return status
end

local function refresh_chunk(chunkId)
  return refresh_chunk_at(chunkId, chunkKey, chunkReplicasKey, replicaBase)
end
