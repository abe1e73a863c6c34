--[[
  Points a stored replica at its compressed object, if it is still stored at expectedPath,
  and moves the byte counters by the bytes saved.
  KEYS[1]  the replica record   P:r:<chunkId>:<replicaId>
  KEYS[2]  counters             P:stats
  ARGV[1]  JSON {expectedPath, newPath, codec, storedBytes}
  Reply    'ok', or 'skip' when the replica changed meanwhile (repaired, expired, moved)
]]
--- @include stored-counters
local replicaKey, statsKey = KEYS[1], KEYS[2]
local a = cjson.decode(ARGV[1])
local r = redis.call('HMGET', replicaKey, 'status', 'path', 'sizeBytes', 'storedBytes', 'cloudProvider', 'targetNode', 'backend')
if r[1] ~= 'stored' or r[2] ~= a.expectedPath then return 'skip' end
local delta = tonumber(a.storedBytes) - tonumber(r[4] or r[3])
redis.call('HSET', replicaKey, 'path', a.newPath, 'codec', a.codec, 'storedBytes', a.storedBytes)
move_stored_bytes(statsKey, delta, r[5], r[6], r[7])
redis.call('HINCRBY', statsKey, 'replicas_compressed', 1)
redis.call('HINCRBY', statsKey, 'bytes_saved_by_compression', 0 - delta)
return 'ok'
