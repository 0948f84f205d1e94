-- Versioned cache fill: never let an older version overwrite a newer one.
--
-- KEYS[1]  the cache key (cache:res:{id} or cache:list:{gen}:...)
-- ARGV[1]  the version being written (integer; 0 for "known absent"; for a list page a 48-bit hash of its
--          JSON, which is its ETag: list keys carry their generation, so the order between two fills of one
--          generation's key is irrelevant, and whichever is kept is served with its own ETag)
-- ARGV[2]  the encoded entry: "<version>|<fresh_until_ms>|<payload>"
-- ARGV[3]  time to live in milliseconds (the stale-if-error window)
-- Returns 1 when written, 0 when a newer version is already stored.
--
-- Why: a reader that fetched version N from PostgreSQL just before a writer committed N+1 must not put N back
-- after the writer stored N+1 (or a deletion tombstone, which carries the deleted version + 1).
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+)|'))
  if stored and stored > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
