-- wrk script: a mix of chart URLs with random filters, authenticated.
--   TEAM=<slug> KEY=<api key> [HOT=1] [GZIP=1] wrk -t2 -c32 -d30s --timeout 10s -s benches/load.lua http://127.0.0.1:8000
-- With the cache on, the finite mix turns into cache hits after warm-up;
-- with `--cache-ttl 0` every request computes.
local team = os.getenv("TEAM")
local key = os.getenv("KEY")
local charts = {"overview", "active-participants", "session-analytics", "message-volume",
                "bot-performance", "user-engagement", "channel-breakdown", "tag-analytics"}
local ranges = {"7", "30", "90", "365"}
local grains = {"daily", "weekly", "monthly"}
local zones = {"UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"}
local channels = {"", "&channels=web", "&channels=whatsapp,telegram"}

-- HOT=1 narrows the mix to 24 URLs (30 days, UTC, all channels): the
-- dashboard's default views, which a warm cache answers.
if os.getenv("HOT") then
  ranges, zones, channels = {"30"}, {"UTC"}, {""}
end

math.randomseed(42)
wrk.headers["Authorization"] = "Bearer " .. key
-- GZIP=1 asks for gzip, as a browser does.
if os.getenv("GZIP") then
  wrk.headers["Accept-Encoding"] = "gzip"
end

-- Every URL of the mix, formatted once (the same uniform pick as choosing
-- each parameter at random), so that wrk, which shares the cores with the
-- server, spends little per request.
local requests = {}
for _, chart in ipairs(charts) do
  for _, range in ipairs(ranges) do
    for _, grain in ipairs(grains) do
      for _, zone in ipairs(zones) do
        for _, channel in ipairs(channels) do
          local path = string.format("/a/%s/dashboard/api/%s/?date_range=%s&granularity=%s&timezone=%s%s",
            team, chart, range, grain, zone, channel)
          requests[#requests + 1] = wrk.format("GET", path)
        end
      end
    end
  end
end

request = function()
  return requests[math.random(#requests)]
end

done = function(summary, latency, requests)
  io.write(string.format("requests %d, non-2xx/3xx %d, errors %d, p50 %.2f ms, p99 %.2f ms, %.0f req/s\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
