-- Scenario 5: client credentials grants (RFC 6749 §4.4) for a confidential
-- client, authenticated with HTTP Basic.
-- Script argument: <file whose first line is the Authorization header value>
-- ("Basic base64(client_id:client_secret)").
-- Each 200 is also counted by the kind of access token it carries
-- ("at:jwt" or "at:opaque"), so the table shows the client's format took.
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup

function init(args)
   local f = assert(io.open(args[1], "r"))
   local auth = f:read("*l")
   f:close()
   wrk.method = "POST"
   wrk.path = "/oauth/token"
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   wrk.headers["Authorization"] = auth
   wrk.body = "grant_type=client_credentials"
end

function response(status, headers, body)
   C.count_response(status, body)
   if status == 200 then C.count_access_token(body) end
end

done = C.done
