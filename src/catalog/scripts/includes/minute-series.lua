--[[
  count_minute(minuteKey, ttlSeconds, field, n): adds n to `field` of one minute's hash of the
  per-minute series (src/catalog/minute-series.ts names the fields and the window) and keeps
  that hash for ttlSeconds more, so the series stays bounded with nothing to trim it.
  Called next to the counter it mirrors, in the same script, so a minute counts an event
  exactly when the counters do.
]]
local function count_minute(minuteKey, ttlSeconds, field, n)
  redis.call('HINCRBY', minuteKey, field, n)
  redis.call('EXPIRE', minuteKey, ttlSeconds)
end
