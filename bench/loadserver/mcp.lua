-- wrk script for loadserver: each request is one MCP tools/call of "echo",
-- as a client sends it over the streamable HTTP transport. The bearer token
-- comes from the TOKEN environment variable (scripts/bench.sh sends it to
-- the open server too, which ignores it); without it none is sent. With
-- loadserver -handler=session, SESSION holds the Mcp-Session-Ids of the
-- sessions loadserver opened through the listener wrk loads,
-- comma-separated: each request goes in the next one, as from that many
-- clients, with an id of its own.
local call = '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
wrk.method = "POST"
wrk.body = string.format(call, "1")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local sessions = {}
for id in string.gmatch(os.getenv("SESSION") or "", "[^,]+") do
  sessions[#sessions + 1] = id
end
if #sessions > 0 then
  local threads = 0
  function setup(thread)
    thread:set("tid", threads)
    threads = threads + 1
  end
  local n = 0
  local headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  function request()
    n = n + 1
    headers["Mcp-Session-Id"] = sessions[n % #sessions + 1]
    return wrk.format(nil, nil, headers, string.format(call, string.format('"%d-%d"', tid or 0, n)))
  end
end
-- With WRK_HIST set, wrk's latency histogram of the run (as its
-- percentiles read it) goes to that file as one line of "µs count" pairs,
-- for bench/pooled; a run with no response writes nothing (the deep step
-- then stops, rather than pool an empty run).
local hist = os.getenv("WRK_HIST")
if hist ~= nil and hist ~= "" then
  function done(summary, latency, requests)
    if #latency == 0 then return end
    local f = assert(io.open(hist, "w"))
    for i = 1, #latency do
      local v, n = latency(i)
      f:write(string.format("%d %d ", v, n))
    end
    f:write("\n")
    f:close()
  end
end
