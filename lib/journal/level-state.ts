/**
 * The state record of `LevelJournal` (`m:state`): the format this version writes, the counters
 * every write batch stores, and how a write counts the keys it adds and deletes. Pure, no I/O.
 */
import { crc32 } from "node:zlib"
import { addKey, removeKey } from "./level-keys.js"

/**
 * The format this version writes: 3 added batches (`b:`) and their bitmaps (`a:`, see
 * level-batch.ts); 4 keeps the values of new batches in the value log (`v:` records and the
 * `values/` directory, see level-values.ts); 5 adds the scheduled entries (`s:`, `t:`, and
 * `scheduled` in the state record) and the flags FLAG_EXPIRES, FLAG_PRIORITY and FLAG_KEY of an
 * entry; 6 adds the flag FLAG_DEDUPE of an entry (its send id), the send-id records (`k:`, `K:`,
 * and `dedupe` in the state record); 7 adds the flags FLAG_QUEUE and FLAG_HEADERS of an entry (its
 * named queue and its headers). It reads formats 1 to 6 as they are (their values are format 7
 * values too) and writes format 7 from its first write on; a release that reads up to 6 refuses a
 * format 7 journal (it would take a queue name for the start of the payload).
 */
export const FORMAT = 7

/** The counters every write batch stores under `m:state`. */
export interface Counters {
  pending: number
  dead: number
  /** `s:` keys (each with its `t:` key). */
  scheduled: number
  /** `k:` keys (each acked one with its `K:` key). */
  dedupe: number
  /** The greatest id ever stored (pending, dead or since acked). */
  lastId: string | undefined
  /**
   * The sum (mod 2^32) of `keyHash()` of every `p:`, `d:`, `s:`, `t:`, `b:`, `a:`, `v:`, `k:` and
   * `K:` key:
   * what a key scan must find.
   */
  keySum: number
}

/** The state record as stored; format 1 had no key sum and no checksum. */
export interface Meta extends Counters {
  v: number
}

// ---------------------------------------------------------------------------------------------
// the state record

// JSON, so that a person can read it: {"v":6,"lastId":…,"pending":…,"dead":…,"scheduled":…,
// "dedupe":…,"keySum":…,"crc":…}, where crc is the CRC-32 of the same JSON without it. Formats 2
// to 4 wrote the same record without "scheduled" and "dedupe", format 5 without "dedupe".
function metaJson(c: Counters, v = FORMAT): string {
  // In this key order, which the crc covers.
  const record: Record<string, unknown> = {
    v,
    lastId: c.lastId ?? null,
    pending: c.pending,
    dead: c.dead,
  }
  if (v >= 5) record["scheduled"] = c.scheduled
  if (v >= 6) record["dedupe"] = c.dedupe
  record["keySum"] = c.keySum
  return JSON.stringify(record)
}

/**
 * The state record of these counters, in the format this version writes (`v`, an older one from
 * 2 on, is for tests that make journals of an older format).
 */
export function encodeMeta(c: Counters, v = FORMAT): Buffer {
  const json = metaJson(c, v)
  return Buffer.from(`${json.slice(0, -1)},"crc":${crc32(json)}}`)
}

/**
 * Parses a state record: format 2 or 3 (checked), format 1 (no key sum: `keySum` is undefined), or a
 * description of the damage. A newer format is returned as it is, for the caller to refuse.
 */
export function decodeMeta(raw: Buffer): (Omit<Meta, "keySum"> & { keySum?: number }) | string {
  let value: unknown
  try {
    value = JSON.parse(raw.toString("utf8"))
  } catch {
    return "not a valid state record"
  }
  if (typeof value !== "object" || value === null) return "not a valid state record"
  const m = value as Record<string, unknown>
  const v = m["v"]
  const lastId = m["lastId"]
  const pending = m["pending"]
  const dead = m["dead"]
  if (
    typeof v !== "number" ||
    (lastId !== null && typeof lastId !== "string") ||
    !isCount(pending) ||
    !isCount(dead)
  )
    return "not a valid state record"
  const scheduled = v >= 5 ? m["scheduled"] : 0
  const dedupe = v >= 6 ? m["dedupe"] : 0
  const counters = { v, lastId: lastId ?? undefined, pending, dead, scheduled: 0, dedupe: 0 }
  if (v < 2) return counters
  if (v > FORMAT) return counters
  if (!isCount(scheduled) || !isCount(dedupe)) return "not a valid state record"
  counters.scheduled = scheduled
  counters.dedupe = dedupe
  const keySum = m["keySum"]
  if (!isCount(keySum) || keySum > 0xffffffff) return "not a valid state record"
  if (m["crc"] !== crc32(metaJson({ ...counters, keySum }, v))) return "checksum mismatch"
  return { ...counters, keySum }
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** Counts a key the write adds to the journal (an entry's, a send id's, or a `t:` or `K:` key). */
export function added(c: Counters, key: string): void {
  c.keySum = addKey(c.keySum, key)
  const p = key.charCodeAt(0)
  if (p === 0x74 || p === 0x4b) return // t: and K:, counted with their s: and k: keys
  if (p === 0x6b) {
    c.dedupe++
    return
  }
  if (p === 0x70) c.pending++
  else if (p === 0x64) c.dead++
  else c.scheduled++
  const id = key.slice(2)
  if (c.lastId === undefined || id > c.lastId) c.lastId = id
}

/** Counts a key the write deletes from the journal (an entry's, a send id's, or a `t:` or `K:` key). */
export function removed(c: Counters, key: string): void {
  c.keySum = removeKey(c.keySum, key)
  const p = key.charCodeAt(0)
  if (p === 0x70) c.pending--
  else if (p === 0x64) c.dead--
  else if (p === 0x73) c.scheduled--
  else if (p === 0x6b) c.dedupe--
}
