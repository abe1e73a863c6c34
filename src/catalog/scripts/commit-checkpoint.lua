--[[
  Commits a sealed checkpoint to the index, only if the caller still holds the sealing lock
  and the head is where the caller started; drops the sealed range from the ledger.
  KEYS[1]  sealing lock        P:checkpoint:lock    string: the sealer's token
  KEYS[2]  head                P:checkpoint:head    hash: id, sequence, toLedgerSeq of the newest
  KEYS[3]  the entry           P:checkpoint:<id>    hash
  KEYS[4]  checkpoints         P:checkpoints        zset of ids by sequence
  KEYS[5]  ledger              P:ledger
  ARGV[1]  JSON {lockToken, expectedHeadToSeq, id, sequence, createdAt, previousId, chunkCount,
                 totalBytes, checksum, key, fromLedgerSeq, toLedgerSeq}
  Reply    'ok', 'lost-lock' (another process holds the lock now) or 'moved' (the head moved)
]]
local lockKey, headKey, entryKey, checkpointsKey, ledgerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local a = cjson.decode(ARGV[1])
if redis.call('GET', lockKey) ~= a.lockToken then return 'lost-lock' end
if (redis.call('HGET', headKey, 'toLedgerSeq') or '0') ~= a.expectedHeadToSeq then return 'moved' end
redis.call('HSET', entryKey, 'id', a.id, 'sequence', a.sequence, 'createdAt', a.createdAt,
  'previousId', a.previousId, 'chunkCount', a.chunkCount, 'totalBytes', a.totalBytes, 'checksum', a.checksum,
  'key', a.key, 'fromLedgerSeq', a.fromLedgerSeq, 'toLedgerSeq', a.toLedgerSeq)
redis.call('ZADD', checkpointsKey, a.sequence, a.id)
redis.call('HSET', headKey, 'id', a.id, 'sequence', a.sequence, 'toLedgerSeq', a.toLedgerSeq)
redis.call('ZREMRANGEBYSCORE', ledgerKey, '-inf', a.toLedgerSeq)
return 'ok'
