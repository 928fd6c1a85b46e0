-- keymesh-bench wrk script: one bearer token per request, cycling through a pool file (one token per line).
--   wrk -s pool.lua http://127.0.0.1:PORT/ -- tokens/eddsa-fresh.txt
-- Every request is formatted once in init, so the per-request Lua cost is one table lookup, the same for a
-- pool of one token (the cached case) and of many (the uncached and attack cases).
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s pool.lua URL -- TOKENS_FILE")
  end
  requests = {}
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  if #requests == 0 then
    error("no tokens in " .. path)
  end
  -- Threads start far apart in the pool, so they never send the same token at the same moment.
  next_index = ((thread_index or 0) * 7919) % #requests + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
