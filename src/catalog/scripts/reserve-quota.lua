--[[
  Reserves a backend's quota for one in-flight write; idempotent per replica.
  KEYS[1]  the backend's reservations  P:reserved:<backend>  hash of bytes by chunkId:replicaId
  KEYS[2]  counters                    P:stats
  ARGV[1]  JSON {backend, member (chunkId:replicaId), bytes, limitBytes (0 = no limit)}
  Reply    {1}: reserved (or already was); {0, usedBytes}: the write would pass the limit
]]
local reservedKey, statsKey = KEYS[1], KEYS[2]
local a = cjson.decode(ARGV[1])
if redis.call('HEXISTS', reservedKey, a.member) == 1 then return {1} end
local bytes, limit = tonumber(a.bytes), tonumber(a.limitBytes)
local used = tonumber(redis.call('HGET', statsKey, 'backend:' .. a.backend .. ':bytes') or '0')
  + tonumber(redis.call('HGET', statsKey, 'reserved:' .. a.backend) or '0')
if limit > 0 and used + bytes > limit then return {0, used} end
redis.call('HSET', reservedKey, a.member, a.bytes)
redis.call('HINCRBY', statsKey, 'reserved:' .. a.backend, bytes)
return {1}
