-- One request, the same every time: METHOD PATH, with an optional bearer
-- token (from a file's first line) and an optional JSON body.
-- Script arguments: <method> <path> [<token file or "-">] [<JSON body>]
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup

function init(args)
   wrk.method = args[1]
   wrk.path = args[2]
   if args[3] and args[3] ~= "-" then
      local f = assert(io.open(args[3], "r"))
      wrk.headers["Authorization"] = "Bearer " .. f:read("*l")
      f:close()
   end
   if args[4] then
      wrk.headers["Content-Type"] = "application/json"
      wrk.body = args[4]
   end
end

function response(status, headers, body)
   C.count_response(status, body)
end

done = C.done
