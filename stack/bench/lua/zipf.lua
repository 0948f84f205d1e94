-- Reads of /api/v1/resources/{id} with Zipf-distributed ids (rank k is requested with weight 1/k^s), the
-- shape of real read-heavy traffic: a few ids are very hot, most are rare. Optional writes for mixed runs.
--
-- args: <ids> <exponent s; 0 means uniform> <write percent> [<header name> <header value>]
local cdf, ids, write_percent = {}, 0, 0
local headers = {}
local write_headers = {}

function init(args)
  ids = tonumber(args[1])
  local s = tonumber(args[2])
  write_percent = tonumber(args[3])
  if args[4] and args[4] ~= "" then headers[args[4]] = args[5] end
  for name, value in pairs(headers) do write_headers[name] = value end
  write_headers["Content-Type"] = "application/json"
  if s > 0 then
    local total = 0
    for k = 1, ids do total = total + 1 / (k ^ s); cdf[k] = total end
    for k = 1, ids do cdf[k] = cdf[k] / total end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

local function pick()
  if #cdf == 0 then return math.random(1, ids) end
  local u, lo, hi = math.random(), 1, ids
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local id = pick()
  if write_percent > 0 and math.random(1, 100) <= write_percent then
    local body = '{"data": {"bench": ' .. math.random(1, 1000000) .. '}}'
    return wrk.format("PATCH", "/api/v1/resources/" .. id, write_headers, body)
  end
  return wrk.format("GET", "/api/v1/resources/" .. id, headers)
end
