//! The Lua scripts of the protocol.
//!
//! Each script touches only keys of one topic partition (one hash tag), so
//! it runs atomically in one Cluster slot. `docs/protocol.md` describes what
//! each does in words, for implementations in other languages.

use std::sync::LazyLock;

use redis::Script;

/// Adds a request unless its record already names an entry, so a re-sent
/// write after a lost reply cannot add the same request twice.
///
/// KEYS: request stream, request record. ARGV: record TTL ms, kind,
/// then the entry's field/value pairs. Returns the entry id.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local existing = redis.call('HGET', KEYS[2], 'entry')
if existing then return existing end
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[2], 'entry', entry, 'status', 'queued', 'kind', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return entry
"#,
    )
});

/// The lighter enqueue of calls: a marker string instead of a record hash,
/// since a call's answer goes to its reply stream.
///
/// KEYS: request stream, call marker. ARGV: marker TTL ms, then the
/// entry's field/value pairs. Returns the entry id, or nil when the call was
/// already queued.
pub(crate) static ENQUEUE_CALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
end
return false
"#,
    )
});

/// Copies the entry's fields plus the dead-letter fields into the
/// dead-letter stream and acknowledges the entry. Shared by [`DEAD_LETTER`]
/// and [`RECLAIM`].
const MOVE_TO_DEAD: &str = r#"
local function move_to_dead(stream, dead, group, id, reason, code, deliveries, now, maxlen)
  local found = redis.call('XRANGE', stream, id, id)
  local fields = {}
  if #found > 0 then
    for _, v in ipairs(found[1][2]) do fields[#fields + 1] = v end
  end
  local out = {}
  for _, v in ipairs(fields) do out[#out + 1] = v end
  out[#out + 1] = 'dead_reason'; out[#out + 1] = reason
  out[#out + 1] = 'dead_code'; out[#out + 1] = code
  out[#out + 1] = 'origin_id'; out[#out + 1] = id
  out[#out + 1] = 'deliveries'; out[#out + 1] = tostring(deliveries)
  out[#out + 1] = 'dead_at_ms'; out[#out + 1] = now
  redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', unpack(out))
  redis.call('XACK', stream, group, id)
  return fields
end
"#;

/// Moves one entry to the dead-letter stream at once (a malformed entry).
///
/// KEYS: request stream, dead-letter stream. ARGV: group, entry id,
/// reason, code, deliveries, now ms, dead-letter max length.
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{MOVE_TO_DEAD}\nmove_to_dead(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])\nreturn 1"
    ))
});

/// Claims entries idle past the claim timeout for this consumer, and moves
/// those delivered `max_deliveries` times to the dead-letter stream instead.
///
/// KEYS: request stream, dead-letter stream. ARGV: group, consumer,
/// min idle ms, count, max deliveries, now ms, dead-letter max length.
/// Returns `{claimed entries, fields of entries declared dead}`.
pub(crate) static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{MOVE_TO_DEAD}
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
local claim = {{}}
local dead = {{}}
for _, p in ipairs(pending) do
  local deliveries = tonumber(p[4])
  if deliveries >= tonumber(ARGV[5]) then
    local fields = move_to_dead(KEYS[1], KEYS[2], ARGV[1], p[1], 'max_deliveries', 'max_deliveries', deliveries, ARGV[6], ARGV[7])
    dead[#dead + 1] = fields
  else
    claim[#claim + 1] = p[1]
  end
end
local claimed = {{}}
if #claim > 0 then
  claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], unpack(claim))
end
return {{claimed, dead}}
"#
    ))
});

/// Trims the request stream below the oldest entry any group still needs:
/// the smallest pending id, or else the group's last delivered id. Entries
/// that are undelivered or pending are never removed.
///
/// KEYS: request stream. Returns the number of entries removed.
pub(crate) static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local keep = nil
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  local needed = last
  local summary = redis.call('XPENDING', KEYS[1], name)
  if tonumber(summary[1]) > 0 and less(summary[2], needed) then needed = summary[2] end
  if keep == nil or less(needed, keep) then keep = needed end
end
if keep == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', keep)
"#,
    )
});

/// Puts a dead letter back on its request stream with a fresh deadline and
/// removes it from the dead-letter stream.
///
/// KEYS: request stream, dead-letter stream. ARGV: dead-letter id, new
/// deadline ms. Returns the new entry id, or nil if the letter is gone.
pub(crate) static REPLAY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local found = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])
if #found == 0 then return false end
local skip = {dead_reason = true, dead_code = true, origin_id = true, deliveries = true, dead_at_ms = true}
local out = {}
local f = found[1][2]
for i = 1, #f, 2 do
  local name = f[i]
  if not skip[name] then
    out[#out + 1] = name
    if name == 'deadline_ms' then out[#out + 1] = ARGV[2] else out[#out + 1] = f[i + 1] end
  end
end
if #out == 0 then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(out))
redis.call('XDEL', KEYS[2], ARGV[1])
return id
"#,
    )
});
