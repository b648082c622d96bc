-- wrk script of the lookup figures in the README ("Lookup handler"): POST /v1/lookup with one
-- random key of USERS (u0001 ... the keys `featurepipe dev --users N` creates) and the
-- comma-separated FEATURES of entity user, one pre-built request per key.
--
--   USERS=5000 wrk -t1 -c8 -d10s --latency -s deploy/bench/lookup.lua http://127.0.0.1:8080
--
-- Against `featurepipe load --baseline-serve 127.0.0.1:8090` (the bare net/http server of
-- `load --baseline`, which answers any path) the same command gives the floor.
local users = tonumber(os.getenv("USERS") or "5000")
local features = os.getenv("FEATURES") or "txn_amount_avg_30d,txn_count_7d,txn_amount_sum_1h,txn_amount_max_7d,txn_amount_min_7d,txn_amount_last,login_count_lifetime"
local reqs = {}
init = function(args)
  local fl = {}
  for f in string.gmatch(features, "[^,]+") do fl[#fl + 1] = '"' .. f .. '"' end
  local fj = table.concat(fl, ",")
  for i = 1, users do
    local body = string.format('{"entity":"user","keys":["u%04d"],"features":[%s]}', i, fj)
    reqs[i] = wrk.format("POST", "/v1/lookup", {["Content-Type"] = "application/json"}, body)
  end
  math.randomseed(os.time())
end
request = function() return reqs[math.random(users)] end
