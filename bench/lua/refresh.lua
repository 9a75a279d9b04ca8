-- Scenario 3: refresh-token grants with rotation.
-- Script arguments: <file of refresh tokens, one a line> <wrk thread count>.
-- Each thread keeps a queue of unused refresh tokens. request() takes one
-- off the queue (so no token is ever presented twice) and response() puts
-- the rotated successor from a 200 back on it, so every session is a chain
-- and the pool never runs dry while it holds more tokens than the thread
-- has connections. A failed request loses its chain ("lost" counter);
-- an empty queue sends a deliberately unknown token ("starved" counter).
local C = dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/common.lua")

setup = C.setup
local queue, head, tail = {}, 1, 0
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function push(token)
   tail = tail + 1
   queue[tail] = token
end

local function pop()
   if head > tail then return nil end
   local t = queue[head]
   queue[head] = nil
   head = head + 1
   return t
end

function init(args)
   local nthreads = tonumber(args[2] or "1")
   for _, t in ipairs(C.load_lines(args[1], id, nthreads)) do push(t) end
   assert(tail > 0, "no refresh tokens for thread " .. id)
end

function request()
   local token = pop()
   if not token then
      C.count("starved")
      token = "kp_rt_starved"
   end
   return wrk.format("POST", "/oauth/token", headers,
      "grant_type=refresh_token&client_id=kp&refresh_token=" .. token)
end

function response(status, headers, body)
   C.count_response(status, body)
   if status == 200 then
      local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if token then push(token) else C.count("lost") end
   else
      C.count("lost")
   end
end

done = C.done
