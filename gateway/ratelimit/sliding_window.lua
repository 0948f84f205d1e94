-- Sliding-window rate limit with sub-buckets, plus the revocation check, in one round trip.
-- The algorithm and its error bound are described in gateway/ratelimit/base.py (evaluate() is the same logic).
--
-- KEYS[1]  the identity's bucket hash (rl:<identity>): field = bucket index, value = count
-- KEYS[2..] optional revocation markers (auth:revoked:...); when any exists the request is refused uncounted
-- ARGV     limit, cost (0 = peek), bucket width in ms, number of buckets, now in ms (-1 = use Redis TIME)
-- returns  {allowed (1 | 0 | -1 revoked), total counted, reset ms, retry-after ms}

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
local oldest = current - buckets
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
local stale = {}
local total = 0
for i = 1, #fields, 2 do
    local index = tonumber(fields[i])
    local count = tonumber(fields[i + 1])
    if index < oldest then
        stale[#stale + 1] = fields[i]
    else
        live[#live + 1] = {index, count}
        total = total + count
    end
end
if #stale > 0 then
    redis.call('HDEL', KEYS[1], unpack(stale))
end
table.sort(live, function(a, b) return a[1] < b[1] end)

local allowed
if cost > 0 then
    allowed = total + cost <= limit
else
    allowed = total < limit
end
if allowed and cost > 0 then
    redis.call('HINCRBY', KEYS[1], string.format('%d', current), cost)
    redis.call('PEXPIRE', KEYS[1], math.ceil((buckets + 1) * width) + 1000)
    total = total + cost
    if #live == 0 or live[#live][1] ~= current then
        live[#live + 1] = {current, cost}
    end
end

local retry = 0
if not allowed then
    local need = total + math.max(cost, 1) - limit
    local freed = 0
    for _, bucket in ipairs(live) do
        freed = freed + bucket[2]
        if freed >= need then
            retry = (bucket[1] + buckets + 1) * width - now
            break
        end
    end
end
local reset = 0
if #live > 0 then
    reset = (live[1][1] + buckets + 1) * width - now
end
local verdict = 0
if allowed then
    verdict = 1
end
return {verdict, total, math.max(math.ceil(reset), 0), math.max(math.ceil(retry), 0)}
