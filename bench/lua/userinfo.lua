-- Scenario 4: GET /oauth/userinfo with one bearer access token.
-- Script argument: <file whose first line is the access token>.
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup

function init(args)
   local f = assert(io.open(args[1], "r"))
   local token = f:read("*l")
   f:close()
   wrk.method = "GET"
   wrk.path = "/oauth/userinfo"
   wrk.headers["Authorization"] = "Bearer " .. token
end

function response(status, headers, body)
   C.count_response(status, body)
end

done = C.done
