-- wrk script for loadserver: each request is one MCP tools/call of "echo",
-- as a client sends it over the streamable HTTP transport. The bearer token
-- comes from the TOKEN environment variable (scripts/bench.sh sends it to
-- the open server too, which ignores it); without it none is sent.
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
