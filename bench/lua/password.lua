-- Scenario 7: password grants (RFC 6749 §4.3, seed 003) for a public client
-- that lists the grant. Script arguments: <client_id> <username> <password>
-- [spray]. A username "@FILE" takes the users from FILE (one a line), in
-- turn, so no account has many sign-ins in flight at once (each attempt is
-- counted before its password is checked; past the lockout limit in flight
-- an account answers account_locked). With "spray" every request names a different unknown user: the
-- flood an attacker sends, each answered after a full Argon2id check
-- (against a dummy hash) and counted toward that name's lockout.
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup

local function encode(s)
   return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local client, username, password, spray, users
local n = 0

function init(args)
   client, username, password, spray = args[1], args[2], args[3], args[4] == "spray"
   if username:sub(1, 1) == "@" then
      users = C.load_lines(username:sub(2), 0, 1)
   end
   wrk.method = "POST"
   wrk.path = "/oauth/token"
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
   local user = username
   n = n + 1
   if spray then
      user = string.format("spray-%d-%d@example.com", id or 0, n)
   elseif users then
      user = users[(n % #users) + 1]
   end
   local body = "grant_type=password&client_id=" .. encode(client) .. "&username=" .. encode(user)
      .. "&password=" .. encode(password) .. "&dns_name=bench&os_type=linux&os_version=6"
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   C.count_response(status, body)
end

done = C.done
