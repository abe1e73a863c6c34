--[[
  Marks a replica failed for good, unless it is stored (a late failure of a duplicate run
  changes nothing); frees its quota reservation either way.
  KEYS[1..7]  the chunk keys (includes/chunk-keys.lua)
  KEYS[8]     the replica record          P:r:<chunkId>:<replicaId>
  KEYS[9]     the backend's reservations  P:reserved:<backend>
  KEYS[10]    this minute of the series   P:minute:<epochMinute>  (includes/minute-series.lua)
  ARGV[1]     JSON {chunkId, replicaId, backend, error, attempts, minuteTtl (seconds)}
  Reply       the chunk's status, or 'unknown' when the replica has no record
]]
--- @include chunk-keys
--- @include refresh-chunk
--- @include stored-counters
--- @include minute-series
local replicaKey, reservedKey, minuteKey = KEYS[8], KEYS[9], KEYS[10]
local a = cjson.decode(ARGV[1])
local old = redis.call('HGET', replicaKey, 'status')
release_reservation(reservedKey, statsKey, a.backend, a.chunkId .. ':' .. a.replicaId)
if not old then return 'unknown' end
if old == 'stored' then return refresh_chunk(a.chunkId) end
redis.call('HSET', replicaKey, 'status', 'failed', 'error', a.error, 'attempts', a.attempts)
if old ~= 'failed' then
  redis.call('HINCRBY', statsKey, 'replicas_failed', 1)
  count_minute(minuteKey, a.minuteTtl, 'replicas_failed', 1)
end
return refresh_chunk(a.chunkId)
