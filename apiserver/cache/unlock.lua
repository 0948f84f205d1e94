-- Release a cache fill lock, but only for the acquisition that took it.
--
-- KEYS[1]  the lock key (cache:lock:{key})
-- ARGV[1]  the owner token the acquisition stored with SET NX PX
-- Returns 1 when the lock was released, 0 when it is gone or held by someone else.
--
-- Why: a bare DEL lets a replica that lost the lock, or whose lock already expired and was taken over, delete
-- the current owner's lock and reopen the stampede the lock exists to stop. GET and DEL run as one step here,
-- so nobody can take the lock between the comparison and the delete.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
