-- Scenario 6: authorization code exchanges (RFC 6749 §4.1.3) with PKCE for
-- a public client.
-- Script arguments: <file of "code verifier" lines> <client_id>
-- <redirect_uri> <wrk thread count>.
-- A code is good for one exchange and 60 s, so run.sh mints a fresh file
-- (examples/code_bench.rs) right before each run, sized from a pilot run.
-- Every request presents the next unused code; if the file runs out, an
-- unknown code is sent and counted as "starved" (the table would show it).
-- Each 200 is also counted by the kind of access token it carries.
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup
local bodies, n, i = {}, 0, 0
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local starved

local function form(s)
   return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function init(args)
   local nthreads = tonumber(args[4] or "1")
   local tail = "&redirect_uri=" .. form(args[3]) .. "&client_id=" .. form(args[2])
   for _, line in ipairs(C.load_lines(args[1], id, nthreads)) do
      local code, verifier = line:match("^(%S+)%s+(%S+)$")
      assert(code, "bad line in " .. args[1])
      table.insert(bodies, "grant_type=authorization_code&code=" .. code
         .. "&code_verifier=" .. verifier .. tail)
   end
   n = #bodies
   assert(n > 0, "no codes for thread " .. id)
   starved = "grant_type=authorization_code&code=kp_ac_starved"
      .. "&code_verifier=" .. string.rep("s", 43) .. tail
end

function request()
   i = i + 1
   local body = bodies[i]
   if body then
      bodies[i] = nil
   else
      C.count("starved")
      body = starved
   end
   return wrk.format("POST", "/oauth/token", headers, body)
end

function response(status, headers, body)
   C.count_response(status, body)
   if status == 200 then C.count_access_token(body) end
end

done = C.done
