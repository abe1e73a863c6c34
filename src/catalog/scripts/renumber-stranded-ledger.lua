--[[
  After checkpoints were restored (reindex), gives every ledger entry at or below the head a
  new place after it. Such entries are chunks stored while the index was empty (Redis lost
  its data, reindex not run yet): the restored head already covers their old places, so no
  seal would ever reach them.
  KEYS[1]  head               P:checkpoint:head
  KEYS[2]  ledger             P:ledger
  KEYS[3]  ledger sequence    P:ledger:seq
  KEYS[4]  chunk record base  P:c:   a key prefix: the record of chunk <id> is KEYS[4] .. <id>
  Reply    the number of entries moved
]]
local headKey, ledgerKey, ledgerSeqKey, chunkBase = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local stranded = redis.call('ZRANGEBYSCORE', ledgerKey, '-inf', redis.call('HGET', headKey, 'toLedgerSeq') or '0')
for _, chunkId in ipairs(stranded) do
  local seq = redis.call('INCR', ledgerSeqKey)
  redis.call('ZADD', ledgerKey, seq, chunkId)
  redis.call('HSET', chunkBase .. chunkId, 'ledgerSeq', seq)
end
return #stranded
