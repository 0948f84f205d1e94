-- On a Redis Cluster, the second half of write_through.lua: the entry (its own slot) was stored first with
-- put_versioned.lua; now bump the list generation (another slot) and announce the write. The order keeps
-- write_through's promise: no replica can observe the new generation before the entry.
--
-- KEYS[1]  the list generation key (cache:gen:resources)
-- ARGV[1]  the invalidation channel
-- ARGV[2]  the invalidation message, a JSON object; "gen" is added here
-- Returns the new list generation.
local generation = redis.call('INCR', KEYS[1])
local message = cjson.decode(ARGV[2])
message['gen'] = generation
redis.call('PUBLISH', ARGV[1], cjson.encode(message))
return generation
