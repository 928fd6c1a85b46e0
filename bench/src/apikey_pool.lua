-- keymesh-bench wrk script for API keys: one `x-api-key` per request, cycling through a pool file (one key per
-- line). Same shape as pool.lua: every request is formatted once in init, so a request costs wrk one table lookup.
--   wrk -s apikey_pool.lua http://127.0.0.1:PORT/ -- keys/valid.txt
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s apikey_pool.lua URL -- KEYS_FILE")
  end
  requests = {}
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("GET", nil, { ["x-api-key"] = line })
    end
  end
  if #requests == 0 then
    error("no keys in " .. path)
  end
  -- Threads start far apart in the pool, so they never send the same key at the same moment.
  next_index = ((thread_index or 0) * 7919) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
