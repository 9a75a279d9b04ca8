-- Scenario 2: device-code polls while the user has not approved yet.
-- Script arguments: <file of device codes, one a line> <wrk thread count>.
-- Each request uses the next code round-robin, so a code is polled again
-- only after every other code has been; with enough codes per run each
-- code is polled once and the answer is authorization_pending, otherwise
-- repeated polls inside the 5 s interval get slow_down (both are 400s).
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup
local reqs, n, i = {}, 0, 0

function init(args)
   local nthreads = tonumber(args[2] or "1")
   local codes = C.load_lines(args[1], id, nthreads)
   local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
   for _, code in ipairs(codes) do
      local body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
         .. "&client_id=kp&device_code=" .. code
      table.insert(reqs, wrk.format("POST", "/oauth/token", headers, body))
   end
   n = #reqs
   assert(n > 0, "no device codes for thread " .. id)
end

function request()
   i = i % n + 1
   return reqs[i]
end

function response(status, headers, body)
   C.count_response(status, body)
end

done = C.done
