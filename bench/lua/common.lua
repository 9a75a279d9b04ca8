-- Shared helpers for the Keyport wrk scripts (loaded with dofile from each
-- scenario script; BENCH_LUA_DIR names this folder).
--
-- Every scenario counts responses by HTTP status and, for 4xx token
-- responses, by RFC 6749 error code, and prints one machine-readable line
-- from done():
--   BENCH_JSON {"requests":…,"rps":…,"p50_us":…,"p99_us":…,…}

local M = {}

M.threads = {}
M.nthreads = 1

-- setup() runs in the main Lua state once per wrk thread.
function M.setup(thread)
   thread:set("id", #M.threads)
   table.insert(M.threads, thread)
end

-- Per-thread counters (each wrk thread has its own Lua state).
counts = {}

function M.count(key)
   counts[key] = (counts[key] or 0) + 1
end

-- Count one response: "s200", "s400", and "e:<error code>" for JSON errors.
function M.count_response(status, body)
   M.count("s" .. status)
   if status >= 400 and body then
      local code = body:match('"error"%s*:%s*"([%w_]+)"')
      if code then M.count("e:" .. code) end
   end
end

-- Count the kind of access token in a 200 token response: "at:jwt" (three
-- dot-separated parts) or "at:opaque".
function M.count_access_token(body)
   local token = body:match('"access_token"%s*:%s*"([^"]+)"')
   if not token then
      M.count("at:none")
   elseif token:match("^[%w_%-]+%.[%w_%-]+%.[%w_%-]+$") then
      M.count("at:jwt")
   else
      M.count("at:opaque")
   end
end

-- Read a file of one value per line; keep the lines that belong to this
-- thread (line i goes to thread i mod nthreads).
function M.load_lines(path, id, nthreads)
   local out = {}
   local f = assert(io.open(path, "r"), "cannot open " .. path)
   local i = 0
   for line in f:lines() do
      if line ~= "" then
         if i % nthreads == id then table.insert(out, line) end
         i = i + 1
      end
   end
   f:close()
   return out
end

local function json_escape(s)
   return (tostring(s):gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end))
end

function M.done(summary, latency, requests)
   local merged = {}
   for _, t in ipairs(M.threads) do
      local c = t:get("counts") or {}
      for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
   end
   local secs = summary.duration / 1e6
   local parts = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_s":%.3f', secs),
      string.format('"rps":%.1f', summary.requests / secs),
      string.format('"p50_us":%d', latency:percentile(50)),
      string.format('"p90_us":%d', latency:percentile(90)),
      string.format('"p99_us":%d', latency:percentile(99)),
      string.format('"max_us":%d', latency.max),
      string.format('"mean_us":%.1f', latency.mean),
      string.format('"err_connect":%d', summary.errors.connect),
      string.format('"err_read":%d', summary.errors.read),
      string.format('"err_write":%d', summary.errors.write),
      string.format('"err_timeout":%d', summary.errors.timeout),
      string.format('"err_status":%d', summary.errors.status),
   }
   local cs = {}
   for k, v in pairs(merged) do
      table.insert(cs, string.format('"%s":%d', json_escape(k), v))
   end
   table.sort(cs)
   table.insert(parts, '"counts":{' .. table.concat(cs, ",") .. '}')
   io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end

return M
