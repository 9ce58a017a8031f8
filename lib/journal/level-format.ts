/**
 * The on-disk format of `LevelJournal`: the binary record of each value, and the checks of the
 * arguments of its calls. Its keys (level-keys.ts) and its state record (level-state.ts) are
 * re-exported from here. Pure functions, no I/O.
 */
import { crc32 } from "node:zlib"
import { joinBody } from "../body.js"
import {
  assertHeaders,
  checkQueueName,
  readStoredHeaders,
  storedHeadersSize,
  writeStoredHeaders,
} from "../headers.js"
import { assertNonNegativeInt, describe } from "../validate.js"
import type { DeadLetter, DedupeRecord, JournalEntry } from "./types.js"

import {
  DEAD,
  ID_LENGTH,
  MAX_DEDUPE_BYTES,
  PENDING,
  SCHEDULED,
  isEntryKey,
  isStoredId,
  parseDedupeKey,
  writeId,
  type Prefix,
} from "./level-keys.js"

export * from "./level-keys.js"
export * from "./level-state.js"

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
/** A scheduled entry (format 5): the layout of kind 3. Kinds 5 to 8 are batches and the value log's. */
const KIND_SCHEDULED = 9
/** A send id's record (format 6, under `k:`). */
const KIND_DEDUPE = 10
/**
 * Flags of an entry (here and in batches): it has a last error, a not-before time, and (format
 * 5) an expiry time, a priority, a key. The last three follow the error, in that order:
 * [expiresAt f64]? [priority u8]? [keyLength u16, key utf8]?, then (format 6) its send id
 * [dedupeIdLength u8, dedupeId utf8]?, then (format 7) its queue [queueLength u8, queue utf8]?
 * and its headers [headersLength u32, msgpack map]?, so an entry without them is stored byte for
 * byte as format 4 stored it.
 */
export const FLAG_ERROR = 1
export const FLAG_NOT_BEFORE = 2
export const FLAG_EXPIRES = 4
export const FLAG_PRIORITY = 8
export const FLAG_KEY = 16
export const FLAG_DEDUPE = 32
/** Format 7: the entry's named queue [queueLength u8, queue utf8] (absent: "default"). */
export const FLAG_QUEUE = 64
/**
 * Format 7: a second flags byte follows the queue, [more u8], with the flags below (the first
 * byte has no bit left for more fields).
 */
export const FLAG_MORE = 128
/** In the second flags byte: the entry's headers [headersLength u32, headers] (lib/headers.ts). */
export const MORE_HEADERS = 1
/** Every flag of the second byte this version knows: a value with another one is refused. */
export const KNOWN_MORE = MORE_HEADERS
/** The flags of the fields of formats 5 to 7. */
export const EXTRA_FLAGS =
  FLAG_EXPIRES | FLAG_PRIORITY | FLAG_KEY | FLAG_DEDUPE | FLAG_QUEUE | FLAG_MORE
/** Every flag this version knows: a value with another one is refused, never misread. */
export const KNOWN_FLAGS = FLAG_ERROR | FLAG_NOT_BEFORE | EXTRA_FLAGS
/** The most utf-8 bytes of an entry's `key`. */
export const MAX_KEY_BYTES = 1024
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
  if (
    e.expiresAt !== undefined ||
    e.priority !== undefined ||
    e.key !== undefined ||
    e.dedupeId !== undefined ||
    e.queue !== undefined ||
    e.headers !== undefined
  )
    checkExtras(e)
}

/**
 * Checks a send id: a non-empty string of at most MAX_DEDUPE_BYTES utf-8 bytes, without lone
 * surrogates (which utf-8 cannot carry: two send ids would share a record).
 *
 * @throws TypeError/RangeError naming the field
 */
export function checkDedupeId(dedupeId: unknown, name = "dedupeId"): string {
  if (typeof dedupeId !== "string" || dedupeId === "")
    throw new TypeError(`'${name}' must be a non-empty string, got ${describe(dedupeId)}`)
  const bytes = Buffer.byteLength(dedupeId)
  if (bytes > MAX_DEDUPE_BYTES)
    throw new RangeError(`'${name}' must be at most ${MAX_DEDUPE_BYTES} utf-8 bytes, got ${bytes}`)
  if (Buffer.from(dedupeId, "utf8").toString("utf8") !== dedupeId)
    throw new RangeError(`'${name}' must be well-formed unicode (no lone surrogate)`)
  return dedupeId
}

function checkExtras(e: JournalEntry): void {
  const { expiresAt, priority, key, dedupeId, queue, headers } = e
  if (dedupeId !== undefined) checkDedupeId(dedupeId)
  if (queue !== undefined) checkQueueName(queue)
  if (headers !== undefined) assertHeaders(headers)
  if (expiresAt !== undefined) {
    if (typeof expiresAt !== "number")
      throw new TypeError(`'expiresAt' must be a number, got ${describe(expiresAt)}`)
    if (Number.isNaN(expiresAt)) throw new RangeError(`'expiresAt' must not be NaN`)
  }
  if (priority !== undefined) {
    if (typeof priority !== "number")
      throw new TypeError(`'priority' must be a number, got ${describe(priority)}`)
    if (!Number.isInteger(priority) || priority < 0 || priority > 9)
      throw new RangeError(`'priority' must be an integer from 0 to 9, got ${priority}`)
  }
  if (key !== undefined) {
    if (typeof key !== "string") throw new TypeError(`'key' must be a string, got ${describe(key)}`)
    const bytes = Buffer.byteLength(key)
    if (bytes > MAX_KEY_BYTES)
      throw new RangeError(`'key' must be at most ${MAX_KEY_BYTES} utf-8 bytes, got ${bytes}`)
  }
}

/** The flags of the format 5 fields an entry has (0 for most). */
export function extraFlags(e: JournalEntry): number {
  let flags = 0
  if (e.expiresAt !== undefined) flags |= FLAG_EXPIRES
  if (e.priority !== undefined) flags |= FLAG_PRIORITY
  if (e.key !== undefined) flags |= FLAG_KEY
  if (e.dedupeId !== undefined) flags |= FLAG_DEDUPE
  if (e.queue !== undefined) flags |= FLAG_QUEUE
  if (e.headers !== undefined) flags |= FLAG_MORE
  return flags
}

/** The bytes of the format 5 fields of an entry with these flags. */
export function extrasSize(e: JournalEntry, flags: number): number {
  let size = 0
  if (flags & FLAG_EXPIRES) size += 8
  if (flags & FLAG_PRIORITY) size += 1
  if (flags & FLAG_KEY) size += 2 + Buffer.byteLength(e.key as string)
  if (flags & FLAG_DEDUPE) size += 1 + Buffer.byteLength(e.dedupeId as string)
  if (flags & FLAG_QUEUE) size += 1 + Buffer.byteLength(e.queue as string)
  if (flags & FLAG_MORE) size += 5 + storedHeadersSize(e.headers as Record<string, string>)
  return size
}

/** Writes the format 5 fields of an entry at `off`; returns the offset after them. */
export function writeExtras(buf: Buffer, e: JournalEntry, flags: number, off: number): number {
  if (flags & FLAG_EXPIRES) off = buf.writeDoubleLE(e.expiresAt as number, off)
  if (flags & FLAG_PRIORITY) off = buf.writeUInt8(e.priority as number, off)
  if (flags & FLAG_KEY) {
    const n = buf.write(e.key as string, off + 2, "utf8")
    buf.writeUInt16LE(n, off)
    off += 2 + n
  }
  if (flags & FLAG_DEDUPE) {
    // Its length less one: a send id is never empty, and may be 256 bytes long.
    const n = buf.write(e.dedupeId as string, off + 1, "utf8")
    buf.writeUInt8(n - 1, off)
    off += 1 + n
  }
  if (flags & FLAG_QUEUE) {
    const n = buf.write(e.queue as string, off + 1, "utf8")
    buf.writeUInt8(n, off)
    off += 1 + n
  }
  if (flags & FLAG_MORE) {
    off = buf.writeUInt8(MORE_HEADERS, off)
    const end = writeStoredHeaders(buf, e.headers as Record<string, string>, off + 4)
    buf.writeUInt32LE(end - off - 4, off)
    off = end
  }
  return off
}

/**
 * Reads the format 5 to 7 fields into `entry`; returns the offset after them, -1 when truncated,
 * -2 when its second flags byte has a flag this version does not know.
 */
export function readExtras(buf: Buffer, off: number, flags: number, entry: JournalEntry): number {
  if (flags & FLAG_EXPIRES) {
    if (buf.length < off + 8) return -1
    entry.expiresAt = buf.readDoubleLE(off)
    off += 8
  }
  if (flags & FLAG_PRIORITY) {
    if (buf.length < off + 1) return -1
    entry.priority = buf.readUInt8(off)
    off += 1
  }
  if (flags & FLAG_KEY) {
    if (buf.length < off + 2) return -1
    const end = off + 2 + buf.readUInt16LE(off)
    if (buf.length < end) return -1
    entry.key = buf.toString("utf8", off + 2, end)
    off = end
  }
  if (flags & FLAG_DEDUPE) {
    if (buf.length < off + 1) return -1
    const end = off + 2 + buf.readUInt8(off)
    if (buf.length < end) return -1
    entry.dedupeId = buf.toString("utf8", off + 1, end)
    off = end
  }
  if (flags & FLAG_QUEUE) {
    if (buf.length < off + 1) return -1
    const end = off + 1 + buf.readUInt8(off)
    if (buf.length < end) return -1
    entry.queue = buf.toString("utf8", off + 1, end)
    off = end
  }
  let more = 0
  if (flags & FLAG_MORE) {
    if (buf.length < off + 1) return -1
    more = buf.readUInt8(off)
    if (more & ~KNOWN_MORE) return -2
    off += 1
  }
  if (more & MORE_HEADERS) {
    if (buf.length < off + 4) return -1
    const end = off + 4 + buf.readUInt32LE(off)
    if (buf.length < end) return -1
    const headers = readStoredHeaders(buf, off + 4, end)
    if (headers === undefined) return -1
    entry.headers = headers
    off = end
  }
  return off
}

/** Encodes a pending entry (`deadAt` undefined) or a dead letter in format 2. */
export function encodeEntry(e: JournalEntry, deadAt: number | undefined): Buffer {
  return encodeValue(e, deadAt === undefined ? KIND_PENDING : KIND_DEAD, deadAt)
}

/** Encodes a scheduled entry (for an `s:` key): a pending entry's layout under a kind of its own. */
export function encodeScheduled(e: JournalEntry): Buffer {
  return encodeValue(e, KIND_SCHEDULED, undefined)
}

/**
 * The value of a scheduled entry as a pending entry's (for its `p:` key): the same bytes under
 * the pending kind, with their crc.
 */
export function scheduledToPending(value: Buffer): Buffer {
  const buf = Buffer.from(value)
  buf[0] = KIND_PENDING
  buf.writeUInt32LE(valueCrc(buf, KIND_PENDING), 1)
  return buf
}

function encodeValue(e: JournalEntry, kind: number, deadAt: number | undefined): Buffer {
  checkEntry(e)
  const payload = joinBody(e.payload)
  const error = e.lastError
  const errorLength = error === undefined ? 0 : Buffer.byteLength(error)
  const extras = extraFlags(e)
  let flags = extras
  let size = FIXED + payload.length + (extras === 0 ? 0 : extrasSize(e, extras))
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
  if (extras !== 0) off = writeExtras(buf, e, extras, off)
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
  if (kind !== KIND_PENDING && kind !== KIND_DEAD && kind !== KIND_SCHEDULED)
    return `unknown value kind ${kind}`
  if (buf.length < FIXED) return `value of ${buf.length} bytes is too short`
  if (stored !== valueCrc(buf, kind)) return "checksum mismatch"
  return {
    prefix: kind === KIND_PENDING ? PENDING : kind === KIND_DEAD ? DEAD : SCHEDULED,
    id: buf.toString("hex", ID_AT, ID_AT + ID_LENGTH / 2),
  }
}

/** What a value under a key with this prefix is, in words. */
function kindName(prefix: string): string {
  return prefix === PENDING ? "pending entry" : prefix === DEAD ? "dead letter" : "scheduled entry"
}

/**
 * Decodes the value stored under `key` (`p:<id>`, `d:<id>` or `s:<id>`); returns a description of the
 * damage instead when the key has another shape, or the value is damaged or belongs under
 * another key.
 */
export function decodeEntry(key: string, buf: Buffer): JournalEntry | DeadLetter | string {
  if (!isEntryKey(key)) return "not a journal key"
  const identity = identifyValue(buf)
  if (typeof identity === "string") return identity
  const id = key.slice(2)
  if (identity.prefix !== key.slice(0, 2)) {
    return `a ${kindName(identity.prefix)} under the key of a ${kindName(key.slice(0, 2))}`
  }
  if (identity.id !== undefined && identity.id !== id) {
    return `the value belongs to id ${identity.id}: the key is damaged`
  }
  const dead = identity.prefix === DEAD
  const flags = buf.readUInt8(5)
  if (flags & ~KNOWN_FLAGS) return `unknown flags ${flags & ~KNOWN_FLAGS}`
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
  if (flags & EXTRA_FLAGS) {
    off = readExtras(buf, off, flags, entry)
    if (off === -2) return "unknown flags in its second flags byte"
    if (off < 0) return "value is truncated"
  }
  // The value buffer is this entry's own (classic-level copies each one), so a view is safe.
  entry.payload = buf.subarray(off)
  if (deadAt === undefined) return entry
  return { ...entry, lastError: entry.lastError ?? "", deadAt }
}

// A send id's record (kind 10, under `k:<hex>`): [kind u8][crc u32][message id 8 bytes]
// [flags u8: 1 = acked][ackedAt f64]? [send id utf8…]. The send id inside ties it to its key.
const DEDUPE_FIXED = 14
const DEDUPE_ACKED = 1

/** Encodes the record of a send id (`hex`: the digits of its `k:` key). */
export function encodeDedupe(hex: string, record: DedupeRecord): Buffer {
  const acked = record.ackedAt !== undefined
  const size = DEDUPE_FIXED + (acked ? 8 : 0) + hex.length / 2
  const buf = Buffer.allocUnsafe(size)
  buf[0] = KIND_DEDUPE
  let off = writeId(buf, record.id, 5)
  buf[off++] = acked ? DEDUPE_ACKED : 0
  if (acked) off = buf.writeDoubleLE(record.ackedAt as number, off)
  buf.write(hex, off, "hex")
  buf.writeUInt32LE(valueCrc(buf, KIND_DEDUPE), 1)
  return buf
}

/**
 * Decodes the value stored under a `k:` key; returns a description of the damage instead when
 * the key has another shape, or the value is damaged or belongs under another key.
 */
export function decodeDedupe(key: string, buf: Buffer): DedupeRecord | string {
  const hex = parseDedupeKey(key)
  if (hex === undefined) return "not a send-id key"
  if (buf.length < DEDUPE_FIXED) return `value of ${buf.length} bytes is too short`
  if (buf[0] !== KIND_DEDUPE) return `unknown value kind ${buf[0]}`
  if (buf.readUInt32LE(1) !== valueCrc(buf, KIND_DEDUPE)) return "checksum mismatch"
  const flags = buf[13] as number
  if (flags & ~DEDUPE_ACKED) return `unknown flags ${flags & ~DEDUPE_ACKED}`
  const at = flags & DEDUPE_ACKED ? DEDUPE_FIXED + 8 : DEDUPE_FIXED
  if (buf.length < at) return "value is truncated"
  if (buf.toString("hex", at) !== hex)
    return "the value belongs to another send id: the key is damaged"
  const record: DedupeRecord = { id: buf.toString("hex", 5, 13) }
  if (flags & DEDUPE_ACKED) record.ackedAt = buf.readDoubleLE(DEDUPE_FIXED)
  return record
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

/** Checks the `dedupe` argument of `remove()`. */
export function checkDedupeChanges(dedupe: {
  acked: readonly string[]
  forget: readonly string[]
  at: number
}): void {
  if (typeof dedupe !== "object" || dedupe === null)
    throw new TypeError(`'dedupe' must be an object, got ${describe(dedupe)}`)
  for (const name of ["acked", "forget"] as const) {
    const list: unknown = dedupe[name]
    if (!Array.isArray(list))
      throw new TypeError(`'dedupe.${name}' must be an array, got ${describe(list)}`)
    for (const d of list as unknown[])
      if (typeof d !== "string")
        throw new TypeError(`'dedupe.${name}' must hold strings, got ${describe(d)}`)
  }
  checkTime("dedupe.at", dedupe.at)
}

/** A time the journal stores (sortable in its index): a finite number. */
export function checkTime(name: string, t: unknown): void {
  if (typeof t !== "number") throw new TypeError(`'${name}' must be a number, got ${describe(t)}`)
  if (!Number.isFinite(t)) throw new RangeError(`'${name}' must be finite, got ${t}`)
}
