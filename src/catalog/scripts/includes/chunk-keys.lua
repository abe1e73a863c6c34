--[[
  The chunk keys every script that settles a chunk receives first, in this order:
    KEYS[1] chunk record           P:c:<chunkId>            hash
    KEYS[2] the chunk's replicas   P:c:<chunkId>:replicas   set of replica ids
    KEYS[3] replica record base    P:r:<chunkId>:           a key prefix: the record of replica
                                                            <id> is KEYS[3] .. <id> (same hash tag)
    KEYS[4] live chunks            P:chunks                 zset by first-queued time (ms)
    KEYS[5] counters               P:stats                  hash
    KEYS[6] ledger sequence        P:ledger:seq             string
    KEYS[7] ledger                 P:ledger                 zset of chunk ids by ledger sequence
]]
local chunkKey, chunkReplicasKey, replicaBase = KEYS[1], KEYS[2], KEYS[3]
local chunksKey, statsKey, ledgerSeqKey, ledgerKey = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
