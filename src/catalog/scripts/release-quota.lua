--[[
  Frees the quota reservation one write made (reserve-quota.lua), if it still holds one: the
  write found its replica stored by another run of its job and wrote nothing.
  KEYS[1]  the backend's reservations  P:reserved:<backend>  hash of bytes by chunkId:replicaId
  KEYS[2]  counters                    P:stats
  ARGV[1]  JSON {backend, member (chunkId:replicaId)}
  Reply    1
]]
--- @include stored-counters
local reservedKey, statsKey = KEYS[1], KEYS[2]
local a = cjson.decode(ARGV[1])
release_reservation(reservedKey, statsKey, a.backend, a.member)
return 1
