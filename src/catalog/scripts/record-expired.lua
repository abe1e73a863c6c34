--[[
  Records a stored (or corrupt) replica as deleted by retention (its objects are already
  gone) and moves the counters once; the record stays as a tombstone with status 'expired'.
  KEYS[1..7]  the chunk keys (includes/chunk-keys.lua)
  KEYS[8]     the replica record     P:r:<chunkId>:<replicaId>
  KEYS[9]     verification index     P:verified
  ARGV[1]     JSON {chunkId, replicaId, expiredAt}
  Reply       the chunk's status afterwards, or 'skip' when the replica was neither stored nor corrupt
]]
--- @include chunk-keys
--- @include refresh-chunk
--- @include stored-counters
--- @include leave-stored
local replicaKey, verifiedKey = KEYS[8], KEYS[9]
local a = cjson.decode(ARGV[1])
local r = replica_fields(replicaKey, 'status', 'sizeBytes', 'storedBytes', 'cloudProvider', 'targetNode', 'backend')
if r.status == 'corrupt' then
  -- Already out of the stored counters since it was found corrupt.
  redis.call('HSET', replicaKey, 'status', 'expired', 'expiredAt', a.expiredAt)
  redis.call('HINCRBY', statsKey, 'replicas_corrupt', -1)
  redis.call('HINCRBY', statsKey, 'replicas_expired', 1)
  return refresh_chunk(a.chunkId)
end
if r.status ~= 'stored' then return 'skip' end
redis.call('HSET', replicaKey, 'status', 'expired', 'expiredAt', a.expiredAt, 'error', '')
local bytes = leave_stored(r, a.chunkId .. ':' .. a.replicaId, verifiedKey)
redis.call('HINCRBY', statsKey, 'replicas_expired', 1)
redis.call('HINCRBY', statsKey, 'bytes_expired', bytes)
return refresh_chunk(a.chunkId)
