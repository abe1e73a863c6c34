--[[
  The counters a stored replica is part of, moved in one place:
    count_stored(stats, sign, bytes, cloud, node, backend)  a replica enters (+1) or leaves (-1)
        the stored counters: replicas_stored, bytes_stored, and count and bytes per cloud
        provider, target node and backend
    move_stored_bytes(stats, delta, cloud, node, backend)   its bytes on the backend change
        (compression) without it entering or leaving
    release_reservation(reservedKey, stats, backend, field)   frees the quota an in-flight
        write reserved (reserve-quota.lua), if it still holds one
  Bytes are bytes on the backend (the compressed size of a compressed replica).
]]
local function move_stored_bytes(stats, delta, cloud, node, backend)
  redis.call('HINCRBY', stats, 'bytes_stored', delta)
  redis.call('HINCRBY', stats, 'cloud:' .. cloud .. ':bytes', delta)
  redis.call('HINCRBY', stats, 'node:' .. node .. ':bytes', delta)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':bytes', delta)
end

local function count_stored(stats, sign, bytes, cloud, node, backend)
  redis.call('HINCRBY', stats, 'replicas_stored', sign)
  redis.call('HINCRBY', stats, 'cloud:' .. cloud .. ':count', sign)
  redis.call('HINCRBY', stats, 'node:' .. node .. ':count', sign)
  redis.call('HINCRBY', stats, 'backend:' .. backend .. ':count', sign)
  -- 0 - bytes, never -bytes: for 0, -bytes is -0, which HINCRBY refuses as an integer.
  if sign > 0 then move_stored_bytes(stats, bytes, cloud, node, backend)
  else move_stored_bytes(stats, 0 - bytes, cloud, node, backend) end
end

local function release_reservation(reservedKey, stats, backend, field)
  local reserved = redis.call('HGET', reservedKey, field)
  if reserved then
    redis.call('HDEL', reservedKey, field)
    redis.call('HINCRBY', stats, 'reserved:' .. backend, 0 - tonumber(reserved))
  end
end
