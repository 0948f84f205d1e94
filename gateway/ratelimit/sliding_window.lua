-- Sliding-window rate limit with sub-buckets, plus the revocation check, in one round trip.
-- The algorithm and its error bound are described in gateway/ratelimit/base.py; this is a line-for-line port of
-- evaluate() there. O(1) per decision: a running total instead of summing (and sorting) every bucket.
--
-- KEYS[1]  the identity's hash (rl:{<identity>}, hash-tagged like its revocation markers): field <bucket index> = count for each non-empty bucket, plus
--          t = the running total of those counts, f / l = the lowest / highest bucket index stored
-- KEYS[2..] optional revocation markers (auth:revoked:...); when any exists the request is refused uncounted
-- ARGV     limit, cost (0 = peek), bucket width in ms, number of buckets, now in ms (-1 = use Redis TIME)
-- returns  {allowed (1 | 0 | -1 revoked), total counted, reset ms, retry-after ms}

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local width = tonumber(ARGV[3])
local buckets = tonumber(ARGV[4])
local now = tonumber(ARGV[5])

if #KEYS > 1 and redis.call('EXISTS', unpack(KEYS, 2)) > 0 then
    return {-1, 0, 0, 0}
end
if now < 0 then
    -- One clock for every gateway replica: Redis's own.
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local current = math.floor(now / width)
local current_field = string.format('%d', current)
local oldest = current - buckets
local state = redis.call('HMGET', key, 't', 'f', 'l', current_field)
local total = tonumber(state[1]) or 0
local first = tonumber(state[2]) or current
local last = tonumber(state[3]) or current
local here = tonumber(state[4]) or 0
local dirty = false

-- The bucket counts from first to last, as {field names}, {counts or false}.
local function range(from, to)
    local fields = {}
    for index = from, to do
        fields[#fields + 1] = string.format('%d', index)
    end
    return fields, redis.call('HMGET', key, unpack(fields))
end

-- _expire(): drop the buckets older than `oldest` from the running total.
if total > 0 and first < oldest then
    if last < oldest then
        redis.call('DEL', key)
        total, here = 0, 0
    else
        local fields, counts = range(first, last)
        local stale = {}
        local new_first = nil
        for i = 1, #fields do
            if counts[i] then
                local index = first + i - 1
                if index < oldest then
                    total = total - tonumber(counts[i])
                    stale[#stale + 1] = fields[i]
                elseif new_first == nil then
                    new_first = index
                end
            end
        end
        if #stale > 0 then
            redis.call('HDEL', key, unpack(stale))
        end
        first = new_first or oldest
        dirty = true
    end
end

local allowed
if cost > 0 then
    allowed = total + cost <= limit
else
    allowed = total < limit
end
if allowed and cost > 0 then
    if total == 0 then
        first, last = current, current
    end
    total = total + cost
    first = math.min(first, current)  -- a replica whose clock runs behind
    last = math.max(last, current)
    redis.call('HSET', key, current_field, here + cost, 't', total,
        'f', string.format('%d', first), 'l', string.format('%d', last))
    if here == 0 then
        -- A new bucket: the key must outlive it by one window. Later hits in this bucket need no new expiry.
        redis.call('PEXPIRE', key, math.ceil((buckets + 1) * width) + 1000)
    end
elseif dirty then
    redis.call('HSET', key, 't', total, 'f', string.format('%d', first))
end

-- _retry_after(): when `need` counted requests will have left the window.
local retry = 0
if not allowed and total > 0 then
    local need = total + math.max(cost, 1) - limit
    local oldest_count = tonumber(redis.call('HGET', key, string.format('%d', first))) or 0
    if oldest_count >= need then
        retry = (first + buckets + 1) * width - now
    else
        local fields, counts = range(first, last)
        local freed = 0
        for i = 1, #fields do
            freed = freed + (tonumber(counts[i]) or 0)
            if freed >= need then
                retry = (first + i - 1 + buckets + 1) * width - now
                break
            end
        end
    end
end
local reset = 0
if total > 0 then
    reset = (first + buckets + 1) * width - now
end
local verdict = 0
if allowed then
    verdict = 1
end
return {verdict, total, math.max(math.ceil(reset), 0), math.max(math.ceil(retry), 0)}
