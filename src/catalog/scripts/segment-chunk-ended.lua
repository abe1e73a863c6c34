--[[
  Notes that a chunk whose staged bytes are in a staging segment has ended.
  KEYS[1]  the segment's chunks   P:staged:<segment>   set of chunk ids not ended yet
  ARGV[1]  JSON {chunkId}
  Reply    1 when this call took the segment's last chunk out (the caller frees the file;
           Redis drops the emptied set), else 0 (chunks left, or this one was out before)
]]
local a = cjson.decode(ARGV[1])
if redis.call('SREM', KEYS[1], a.chunkId) == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0
