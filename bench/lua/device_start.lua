-- Scenario 1: device-authorization starts (RFC 8628 §3.1).
-- Optional script argument: a file path; when given, every device_code
-- returned is appended to <path>.<thread id> (used to seed poll codes, not
-- during the measured run).
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

wrk.method = "POST"
wrk.path = "/oauth/device_authorization"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "client_id=kp&scope=openid%20offline_access"

setup = C.setup
local out = nil

function init(args)
   if args[1] and args[1] ~= "" then
      out = assert(io.open(args[1] .. "." .. id, "a"))
   end
end

function response(status, headers, body)
   C.count_response(status, body)
   if out and status == 200 then
      local code = body:match('"device_code"%s*:%s*"([^"]+)"')
      if code then out:write(code, "\n") end
   end
end

done = C.done
