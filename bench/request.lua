-- wrk script for bench/compare's egress, ingress and noisy modes: the request
-- comes from the environment, the result line from percentiles.lua.
--   BENCH_METHOD        request method (default GET)
--   BENCH_BODY          request body (default none)
--   BENCH_CONTENT_TYPE  Content-Type of the body
--   BENCH_DELAY_MS      wait this long between a connection's requests (an
--                       open pace for a "modest rate" client; latency is
--                       measured from each send, so the wait is not in it)
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type then
  wrk.headers["Content-Type"] = content_type
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end
dofile("bench/percentiles.lua")
