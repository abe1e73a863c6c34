--[[
  Restores one checkpoint into the index from its manifest (reindex): the index entry, the
  head, and each chunk's place in the ledger, so those chunks are never sealed again.
  KEYS[1]  the entry          P:checkpoint:<id>
  KEYS[2]  checkpoints        P:checkpoints
  KEYS[3]  head               P:checkpoint:head
  KEYS[4]  ledger sequence    P:ledger:seq
  KEYS[5]  ledger             P:ledger
  KEYS[6]  live chunks        P:chunks
  KEYS[7]  chunk record base  P:c:   a key prefix: the record of chunk <id> is KEYS[7] .. <id>
  ARGV[1]  JSON {id, sequence, createdAt, previousId, chunkCount, totalBytes, checksum, key,
                 fromLedgerSeq, toLedgerSeq,
                 chunks: [{chunkId, checksum, algorithm, sizeBytes, createdAtMs, createdAt}]}
  Reply    'ok'
]]
local entryKey, checkpointsKey, headKey, ledgerSeqKey, ledgerKey, chunksKey, chunkBase = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local a = cjson.decode(ARGV[1])
redis.call('HSET', entryKey, 'id', a.id, 'sequence', a.sequence, 'createdAt', a.createdAt,
  'previousId', a.previousId, 'chunkCount', a.chunkCount, 'totalBytes', a.totalBytes, 'checksum', a.checksum,
  'key', a.key, 'fromLedgerSeq', a.fromLedgerSeq, 'toLedgerSeq', a.toLedgerSeq)
redis.call('ZADD', checkpointsKey, a.sequence, a.id)
if tonumber(a.sequence) > tonumber(redis.call('HGET', headKey, 'sequence') or '0') then
  redis.call('HSET', headKey, 'id', a.id, 'sequence', a.sequence, 'toLedgerSeq', a.toLedgerSeq)
end
if tonumber(a.toLedgerSeq) > tonumber(redis.call('GET', ledgerSeqKey) or '0') then redis.call('SET', ledgerSeqKey, a.toLedgerSeq) end
for i, c in ipairs(a.chunks) do
  local chunkKey = chunkBase .. c.chunkId
  if redis.call('EXISTS', chunkKey) == 0 then
    redis.call('HSET', chunkKey, 'chunkId', c.chunkId, 'checksum', c.checksum, 'algorithm', c.algorithm,
      'sizeBytes', c.sizeBytes, 'createdAtMs', c.createdAtMs, 'createdAt', c.createdAt)
    redis.call('ZADD', chunksKey, c.createdAtMs, c.chunkId)
  end
  redis.call('HSET', chunkKey, 'ledgerSeq', tonumber(a.fromLedgerSeq) + i)
  redis.call('ZREM', ledgerKey, c.chunkId)
end
return 'ok'
