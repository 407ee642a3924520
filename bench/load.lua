-- wrk script for the intake benchmark: POSTs one signed webhook body with a unique
-- X-GitHub-Delivery per request, counts answers by status and prints one JSON line.
-- Arguments after `--`: body file, X-Hub-Signature-256 value, delivery id prefix
-- (8 hex digits), event name.

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

local head, tail, prefix
sent = 0  -- globals: done() reads them from each thread
statuses = {}

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  prefix = args[3]
  local path = wrk.path
  -- The body is constant, so one signature serves every request; only the delivery id
  -- changes, which keeps request() to one string concatenation.
  head = "POST " .. path .. " HTTP/1.1\r\n"
    .. "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n"
    .. "User-Agent: GitHub-Hookshot/bench\r\n"
    .. "Accept: */*\r\n"
    .. "Content-Type: application/json\r\n"
    .. "X-GitHub-Event: " .. args[4] .. "\r\n"
    .. "X-GitHub-Hook-ID: 471028364\r\n"
    .. "X-GitHub-Hook-Installation-Target-Type: integration\r\n"
    .. "X-GitHub-Hook-Installation-Target-ID: 902117\r\n"
    .. "X-Hub-Signature-256: " .. args[2] .. "\r\n"
    .. "Content-Length: " .. #body .. "\r\n"
    .. "X-GitHub-Delivery: "
  tail = "\r\n\r\n" .. body
end

function request()
  sent = sent + 1
  -- A UUID-shaped id, unique per run, thread and request, as GitHub's GUIDs are.
  local id = string.format("%s-%04x-4000-8000-%012x", prefix, tid, sent)
  return head .. id .. tail
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local sent_total, by_status = 0, {}
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(by_status) do
    table.insert(parts, string.format('"%d":%d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    '{"duration_us":%d,"requests":%d,"sent":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"statuses":{%s},'
      .. '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, sent_total, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","),
    latency.mean, latency.stdev, latency.max, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
