--[[
  Points a stored replica at another object holding the same bytes (compaction copied its
  packed record into a new pack), if it is still stored at expectedPath. Counters stay: the
  replica neither enters nor leaves, and its bytes are the same.
  KEYS[1]  the replica record   P:r:<chunkId>:<replicaId>
  ARGV[1]  JSON {expectedPath, newPath}
  Reply    'ok', or 'skip' when the replica changed meanwhile (repaired, expired, moved)
]]
local replicaKey = KEYS[1]
local a = cjson.decode(ARGV[1])
local r = redis.call('HMGET', replicaKey, 'status', 'path')
if r[1] ~= 'stored' or r[2] ~= a.expectedPath then return 'skip' end
redis.call('HSET', replicaKey, 'path', a.newPath)
return 'ok'
