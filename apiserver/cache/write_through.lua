-- After a committed write: store the new version (or tombstone), bump the list generation and announce it,
-- all in one round trip and atomically, so no replica can observe the generation without the entry.
--
-- KEYS[1]  the cache key (cache:res:{id})
-- KEYS[2]  the list generation key (cache:gen:resources)
-- ARGV[1]  the committed version (a deletion passes the deleted version + 1)
-- ARGV[2]  the encoded entry: "<version>|<fresh_until_ms>|<payload>"
-- ARGV[3]  time to live in milliseconds
-- ARGV[4]  the invalidation channel
-- ARGV[5]  the invalidation message, a JSON object; "gen" is added here
-- Returns the new list generation.
local current = redis.call('GET', KEYS[1])
local stored = current and tonumber(string.match(current, '^(%d+)|'))
if not stored or stored <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
local generation = redis.call('INCR', KEYS[2])
local message = cjson.decode(ARGV[5])
message['gen'] = generation
redis.call('PUBLISH', ARGV[4], cjson.encode(message))
return generation
