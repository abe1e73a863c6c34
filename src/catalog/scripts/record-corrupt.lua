--[[
  Marks a stored replica corrupt (missing, unreadable or failing its checksum) and takes it
  out of the stored counters. Idempotent: a replica already corrupt keeps its number.
  KEYS[1..7]  the chunk keys (includes/chunk-keys.lua)
  KEYS[8]     the replica record     P:r:<chunkId>:<replicaId>
  KEYS[9]     verification index     P:verified
  KEYS[10]    this minute of the series  P:minute:<epochMinute>  (includes/minute-series.lua)
  ARGV[1]     JSON {chunkId, replicaId, reason, expectedPath ('' = wherever it is), minuteTtl (seconds)}
  Reply       the replica's corruption number (it names the repair job), or 0 when it is not
              stored, or no longer at expectedPath (compression moved it meanwhile: what was
              found bad is gone)
]]
--- @include chunk-keys
--- @include refresh-chunk
--- @include stored-counters
--- @include leave-stored
--- @include minute-series
local replicaKey, verifiedKey, minuteKey = KEYS[8], KEYS[9], KEYS[10]
local a = cjson.decode(ARGV[1])
local r = replica_fields(replicaKey, 'status', 'sizeBytes', 'storedBytes', 'cloudProvider', 'targetNode', 'backend', 'corruptions', 'path')
if r.status == 'corrupt' then return tonumber(r.corruptions or '1') end
if r.status ~= 'stored' then return 0 end
if a.expectedPath ~= '' and r.path ~= a.expectedPath then return 0 end
local n = redis.call('HINCRBY', replicaKey, 'corruptions', 1)
redis.call('HSET', replicaKey, 'status', 'corrupt', 'error', a.reason)
leave_stored(r, a.chunkId .. ':' .. a.replicaId, verifiedKey)
redis.call('HINCRBY', statsKey, 'replicas_corrupt', 1)
redis.call('HINCRBY', statsKey, 'corruptions_found', 1)
count_minute(minuteKey, a.minuteTtl, 'corruptions_found', 1)
refresh_chunk(a.chunkId)
return n
