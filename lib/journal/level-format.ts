/**
 * The on-disk format of `LevelJournal`: its keys, the binary record of each value, and the state
 * record (`m:state`) that carries the counters. Pure functions, no I/O.
 */
import { crc32 } from "node:zlib"
import { joinBody } from "../body.js"
import { assertNonNegativeInt, describe } from "../validate.js"
import type { DeadLetter, JournalEntry } from "./types.js"

// Keys are utf8 strings: a prefix and 16 hex digits, so every range below sorts in id order and
// ends just before the next prefix character (":" + 1 = ";").
export const PENDING = "p:"
export const DEAD = "d:"
/** Entries moved aside by a repair: `q:` + the key they had (kept, never read). */
export const QUARANTINE = "q:"
export const META = "m:state"
/**
 * The format this version writes: 3 added batches (`b:`) and their bitmaps (`a:`, see
 * level-batch.ts); 4 keeps the values of new batches in the value log (`v:` records and the
 * `values/` directory, see level-values.ts). It reads formats 1 to 3 as they are (their values
 * are format 4 values too) and writes format 4 from its first write on.
 */
export const FORMAT = 4

export type Prefix = typeof PENDING | typeof DEAD

/** The counters every write batch stores under `m:state`. */
export interface Counters {
  pending: number
  dead: number
  /** The greatest id ever stored (pending, dead or since acked). */
  lastId: string | undefined
  /** The sum (mod 2^32) of `keyHash()` of every `p:`, `d:`, `b:` and `a:` key: what a key scan must find. */
  keySum: number
}

/** The state record as stored; format 1 had no key sum and no checksum. */
export interface Meta extends Counters {
  v: number
}

// ---------------------------------------------------------------------------------------------
// keys

const ID_LENGTH = 16
export const KEY_LENGTH = 2 + ID_LENGTH

/** True for a char code of a lower-case hex digit. */
function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
}

/**
 * Writes a stored id (16 lower-case hex digits, checked by `isStoredId`) as its 8 bytes at `off`;
 * returns the offset after them. The same bytes as `buf.write(id, off, 8, "hex")`, without a
 * call into C++ per id.
 */
export function writeId(buf: Buffer, id: string, off: number): number {
  for (let i = 0; i < ID_LENGTH; i += 2) {
    const hi = id.charCodeAt(i)
    const lo = id.charCodeAt(i + 1)
    buf[off++] = ((hi <= 57 ? hi - 48 : hi - 87) << 4) | (lo <= 57 ? lo - 48 : lo - 87)
  }
  return off
}

/** True for `p:` or `d:` followed by 16 lower-case hex digits. */
export function isEntryKey(key: string): boolean {
  if (key.length !== KEY_LENGTH || key.charCodeAt(1) !== 0x3a) return false
  const p = key.charCodeAt(0)
  if (p !== 0x70 && p !== 0x64) return false
  for (let i = 2; i < KEY_LENGTH; i++) if (!isHex(key.charCodeAt(i))) return false
  return true
}

/** True for a key a repair moved aside: `q:` + a key of the form `x:…`. */
export function isQuarantineKey(key: string): boolean {
  return key.startsWith(QUARANTINE) && key.length > 4 && key.charCodeAt(3) === 0x3a
}

/** True for a message id as the journal stores it: 16 lower-case hex digits. */
export function isStoredId(id: string): boolean {
  if (id.length !== ID_LENGTH) return false
  for (let i = 0; i < ID_LENGTH; i++) if (!isHex(id.charCodeAt(i))) return false
  return true
}

/**
 * A 32-bit hash of a key. Each step is a bijection of the state, so keys of one length that
 * differ in one character always hash differently: a sum of these over all keys changes when
 * one key does.
 */
export function keyHash(key: string): number {
  let h = 0x9747b28c
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h ^ key.charCodeAt(i), 0x5bd1e995)
    h ^= h >>> 15
  }
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export function addKey(sum: number, key: string): number {
  return (sum + keyHash(key)) >>> 0
}

export function removeKey(sum: number, key: string): number {
  return (sum - keyHash(key)) >>> 0
}

export function maxId(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a > b ? a : b
}

// ---------------------------------------------------------------------------------------------
// values

// Format 2: [kind u8][crc32 u32][flags u8][attempts u32][enqueuedAt f64][id 8 bytes]
//           [notBefore f64]? [deadAt f64]? [errorLength u32, error utf8]? [payload bytes…]
// The crc (zlib's CRC-32) covers the kind byte and everything after the crc, so a value can
// neither pass for another kind nor for another format, and the id inside it ties it to its key.
// Format 1 (kinds 1 and 2) had no id and its crc covered only what follows the crc; it is still
// read, as journals written by the previous release hold it. All little-endian. LevelDB only
// checks its block checksums when asked to (classic-level never asks), so this crc is what
// catches a damaged value instead of returning it.
const KIND_PENDING_1 = 1
const KIND_DEAD_1 = 2
const KIND_PENDING = 3
const KIND_DEAD = 4
/** Flags of an entry (here and in batches): it has a last error, a not-before time. */
export const FLAG_ERROR = 1
export const FLAG_NOT_BEFORE = 2
const FIXED_1 = 18
const FIXED = 26
const ID_AT = 18
const seeds = new Map<number, number>()

/** The crc32 of a kind byte alone, from which the crc of the rest of its value continues. */
export function kindSeed(kind: number): number {
  let seed = seeds.get(kind)
  if (seed === undefined) {
    seed = crc32(Buffer.from([kind]))
    seeds.set(kind, seed)
  }
  return seed
}

/**
 * The crc every value of the journal carries in its bytes 1–4: of its kind byte (byte 0) and of
 * everything after the crc.
 */
export function valueCrc(buf: Buffer, kind: number): number {
  return crc32(buf.subarray(5), kindSeed(kind))
}

/**
 * Checks that the journal can store an entry (its id is checked by the caller).
 *
 * @throws TypeError/RangeError naming the field
 */
export function checkEntry(e: JournalEntry): void {
  const payload: unknown = e.payload
  if (!(payload instanceof Uint8Array)) {
    throw new TypeError(`'payload' must be a Buffer, got ${describe(payload)}`)
  }
  assertNonNegativeInt("attempts", e.attempts)
  if (e.attempts > 0xffffffff)
    throw new RangeError(`'attempts' must be below 2^32, got ${e.attempts}`)
  if (typeof e.enqueuedAt !== "number") {
    throw new TypeError(`'enqueuedAt' must be a number, got ${describe(e.enqueuedAt)}`)
  }
  if (e.notBefore !== undefined && typeof e.notBefore !== "number") {
    throw new TypeError(`'notBefore' must be a number, got ${describe(e.notBefore)}`)
  }
}

/** Encodes a pending entry (`deadAt` undefined) or a dead letter in format 2. */
export function encodeEntry(e: JournalEntry, deadAt: number | undefined): Buffer {
  checkEntry(e)
  const payload = joinBody(e.payload)
  const kind = deadAt === undefined ? KIND_PENDING : KIND_DEAD
  const error = e.lastError
  const errorLength = error === undefined ? 0 : Buffer.byteLength(error)
  let flags = 0
  let size = FIXED + payload.length
  if (e.notBefore !== undefined) {
    flags |= FLAG_NOT_BEFORE
    size += 8
  }
  if (deadAt !== undefined) size += 8
  if (error !== undefined) {
    flags |= FLAG_ERROR
    size += 4 + errorLength
  }
  const buf = Buffer.allocUnsafe(size)
  buf.writeUInt8(kind, 0)
  buf.writeUInt8(flags, 5)
  buf.writeUInt32LE(e.attempts, 6)
  buf.writeDoubleLE(e.enqueuedAt, 10)
  writeId(buf, e.id, ID_AT)
  let off = FIXED
  if (e.notBefore !== undefined) off = buf.writeDoubleLE(e.notBefore, off)
  if (deadAt !== undefined) off = buf.writeDoubleLE(deadAt, off)
  if (error !== undefined) {
    off = buf.writeUInt32LE(errorLength, off)
    off += buf.write(error, off, "utf8")
  }
  buf.set(payload, off)
  buf.writeUInt32LE(valueCrc(buf, kind), 1)
  return buf
}

/** What a value says about itself, before it is checked against its key. */
export interface ValueIdentity {
  /** The prefix of the key it belongs under (from its kind). */
  prefix: Prefix
  /** The id inside it; undefined in format 1, which did not store it. */
  id: string | undefined
}

/**
 * Checks a value's length, kind and checksum; returns its kind and the id stored in it, or a
 * description of the damage.
 */
export function identifyValue(buf: Buffer): ValueIdentity | string {
  if (buf.length < FIXED_1) return `value of ${buf.length} bytes is too short`
  const kind = buf.readUInt8(0)
  const stored = buf.readUInt32LE(1)
  if (kind === KIND_PENDING_1 || kind === KIND_DEAD_1) {
    if (stored !== crc32(buf.subarray(5))) return "checksum mismatch"
    return { prefix: kind === KIND_PENDING_1 ? PENDING : DEAD, id: undefined }
  }
  if (kind !== KIND_PENDING && kind !== KIND_DEAD) return `unknown value kind ${kind}`
  if (buf.length < FIXED) return `value of ${buf.length} bytes is too short`
  if (stored !== valueCrc(buf, kind)) return "checksum mismatch"
  return {
    prefix: kind === KIND_PENDING ? PENDING : DEAD,
    id: buf.toString("hex", ID_AT, ID_AT + ID_LENGTH / 2),
  }
}

/**
 * Decodes the value stored under `key` (`p:<id>` or `d:<id>`); returns a description of the
 * damage instead when the key has another shape, or the value is damaged or belongs under
 * another key.
 */
export function decodeEntry(key: string, buf: Buffer): JournalEntry | DeadLetter | string {
  if (!isEntryKey(key)) return "not a journal key"
  const identity = identifyValue(buf)
  if (typeof identity === "string") return identity
  const id = key.slice(2)
  if (identity.prefix !== key.slice(0, 2)) {
    return `a ${identity.prefix === PENDING ? "pending entry" : "dead letter"} under a ${key.startsWith(PENDING) ? "pending" : "dead"} key`
  }
  if (identity.id !== undefined && identity.id !== id) {
    return `the value belongs to id ${identity.id}: the key is damaged`
  }
  const dead = identity.prefix === DEAD
  const flags = buf.readUInt8(5)
  const entry: JournalEntry = {
    id,
    payload: Buffer.alloc(0),
    attempts: buf.readUInt32LE(6),
    enqueuedAt: buf.readDoubleLE(10),
  }
  let off = identity.id === undefined ? FIXED_1 : FIXED
  if (flags & FLAG_NOT_BEFORE) {
    if (buf.length < off + 8) return "value is truncated"
    entry.notBefore = buf.readDoubleLE(off)
    off += 8
  }
  let deadAt: number | undefined
  if (dead) {
    if (buf.length < off + 8) return "value is truncated"
    deadAt = buf.readDoubleLE(off)
    off += 8
  }
  if (flags & FLAG_ERROR) {
    const error = lengthPrefixed(buf, off)
    if (error === undefined) return "value is truncated"
    entry.lastError = buf.toString("utf8", error.start, error.end)
    off = error.end
  }
  // The value buffer is this entry's own (classic-level copies each one), so a view is safe.
  entry.payload = buf.subarray(off)
  if (deadAt === undefined) return entry
  return { ...entry, lastError: entry.lastError ?? "", deadAt }
}

/** The bytes at `off` after their u32 length, or undefined when they run past the end. */
export function lengthPrefixed(
  buf: Buffer,
  off: number,
): { start: number; end: number } | undefined {
  if (buf.length < off + 4) return undefined
  const start = off + 4
  const end = start + buf.readUInt32LE(off)
  return end <= buf.length ? { start, end } : undefined
}

// ---------------------------------------------------------------------------------------------
// the state record

// JSON, so that a person can read it: {"v":3,"lastId":…,"pending":…,"dead":…,"keySum":…,"crc":…},
// where crc is the CRC-32 of the same JSON without it. Format 2 wrote the same record.
function metaJson(c: Counters, v = FORMAT): string {
  return JSON.stringify({
    v,
    lastId: c.lastId ?? null,
    pending: c.pending,
    dead: c.dead,
    keySum: c.keySum,
  })
}

export function encodeMeta(c: Counters): Buffer {
  const json = metaJson(c)
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
  const counters = { v, lastId: lastId ?? undefined, pending, dead }
  if (v < 2) return counters
  if (v > FORMAT) return counters
  const keySum = m["keySum"]
  if (!isCount(keySum) || keySum > 0xffffffff) return "not a valid state record"
  if (m["crc"] !== crc32(metaJson({ ...counters, keySum }, v))) return "checksum mismatch"
  return { ...counters, keySum }
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

// Arguments of the journal's calls, and the counters a write changes.

export function checkId(id: unknown): string {
  if (typeof id !== "string" || id === "")
    throw new TypeError(`'id' must be a non-empty string, got ${describe(id)}`)
  return id
}

/** An id to store: 16 lower-case hex digits (what `IdGenerator` makes), so keys can be checked. */
export function checkStoredId(id: unknown): string {
  if (!isStoredId(checkId(id))) {
    throw new TypeError(
      `'id' must be 16 lower-case hex digits (an IdGenerator id), got ${describe(id)}`,
    )
  }
  return id as string
}

export function checkLimit(limit: unknown): number {
  if (limit === Infinity) return limit
  assertNonNegativeInt("limit", limit)
  return limit
}

/** The distinct ids, leaving out those that cannot be stored (so cannot be there). */
export function unique(ids: readonly string[]): string[] {
  // Acks come in increasing order, mostly: then they are unique without a set.
  let increasing = true
  for (let i = 0; i < ids.length; i++) {
    const id = checkId(ids[i])
    if (i > 0 && id <= (ids[i - 1] as string)) increasing = false
  }
  return (increasing ? ids : [...new Set(ids)]).filter(isStoredId)
}

/** Counts a key the write adds to the journal. */
export function added(c: Counters, key: string): void {
  if (key.startsWith(PENDING)) c.pending++
  else c.dead++
  c.keySum = addKey(c.keySum, key)
  const id = key.slice(2)
  if (c.lastId === undefined || id > c.lastId) c.lastId = id
}

/** Counts a key the write deletes from the journal. */
export function removed(c: Counters, key: string): void {
  if (key.startsWith(PENDING)) c.pending--
  else c.dead--
  c.keySum = removeKey(c.keySum, key)
}
