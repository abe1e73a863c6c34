--[[
  leave_stored(replica, member, verifiedKey): takes a stored replica out of every stored
  counter and out of the verification index. `replica` holds its fields sizeBytes,
  storedBytes, cloudProvider, targetNode and backend. Needs the chunk keys and
  includes/stored-counters.lua.
]]
local function leave_stored(replica, member, verifiedKey)
  local bytes = tonumber(replica.storedBytes or replica.sizeBytes)
  count_stored(statsKey, -1, bytes, replica.cloudProvider, replica.targetNode, replica.backend)
  redis.call('ZREM', verifiedKey, member)
  return bytes
end

--- The fields of a replica record leave_stored and its callers read, by name.
local function replica_fields(replicaKey, ...)
  local names = {...}
  local values = redis.call('HMGET', replicaKey, unpack(names))
  local fields = {}
  for i, name in ipairs(names) do fields[name] = values[i] or nil end
  return fields
end
