/**
 * The log-structured part of `LevelJournal`'s format (format 3): new messages appended together
 * are stored as one value, a batch, under `b:<first id><last id><count>`, and the entries of a
 * batch that are no longer pending (acked, dead-lettered, or moved to a `p:` key of their own by
 * a failed attempt) as a bitmap under `a:` and the same suffix. A batch and its bitmap are deleted
 * when no entry of it is pending. So an append of N messages is one LevelDB put instead of N, and
 * an ack is a bit in a bitmap that is written once per batch of acks, instead of a look-up and a
 * deletion per message.
 *
 * This file holds the binary records and the in-memory index of the batches; pure, no I/O.
 */
import { crc32 } from "node:zlib"
import { prefixOf } from "../body.js"
import {
  EXTRA_FLAGS,
  FLAG_ERROR,
  FLAG_NOT_BEFORE,
  extraFlags,
  extrasSize,
  kindSeed,
  readExtras,
  writeExtras,
  lengthPrefixed,
  valueCrc,
  writeId,
} from "./level-format.js"
export { checkEntry } from "./level-format.js"
import type { JournalEntry } from "./types.js"

export const BATCH = "b:"
export const ACKS = "a:"
const ID_HEX = 16
const COUNT_HEX = 8
/** `b:` or `a:`, the first and the last id, and the count in 8 hex digits. */
export const BATCH_KEY_LENGTH = 2 + 2 * ID_HEX + COUNT_HEX

// Batch (kind 5): [kind u8][crc32 u32][count u32][first id 8 bytes][last id 8 bytes], then per
// entry [id 8 bytes][flags u8][attempts u32][enqueuedAt f64][notBefore f64]?
// [errorLength u32, error utf8]? [expiresAt f64]? [priority u8]? [keyLength u16, key utf8]?
// [payloadLength u32][payload] (the three before the payload from format 5 on, see FLAG_EXPIRES
// in level-format.ts). Bitmap (kind 6): the same header,
// then ceil(count / 8) bytes, bit i (of byte i >> 3, bit i & 7) set when entry i is not pending.
// The crc covers the kind byte and everything after the crc, as in the entries of format 2.
const KIND_BATCH = 5
const KIND_ACKS = 6
const HEAD = 25
const ENTRY_HEAD = 8 + 1 + 4 + 8

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
}

/** The key of a batch of `count` entries from `first` to `last`. */
export function batchKey(first: string, last: string, count: number): string {
  return BATCH + first + last + count.toString(16).padStart(COUNT_HEX, "0")
}

/** The key of the bitmap of the batch under `key`. */
export function acksKeyOf(key: string): string {
  return ACKS + key.slice(2)
}

export interface BatchName {
  first: string
  last: string
  count: number
}

/** Parses a `b:` or `a:` key; undefined when it has another shape. */
export function parseBatchKey(key: string): BatchName | undefined {
  if (key.length !== BATCH_KEY_LENGTH || key.charCodeAt(1) !== 0x3a) return undefined
  const p = key.charCodeAt(0)
  if (p !== 0x62 && p !== 0x61) return undefined
  for (let i = 2; i < BATCH_KEY_LENGTH; i++) if (!isHex(key.charCodeAt(i))) return undefined
  const first = key.slice(2, 2 + ID_HEX)
  const last = key.slice(2 + ID_HEX, 2 + 2 * ID_HEX)
  const count = parseInt(key.slice(2 + 2 * ID_HEX), 16)
  if (count === 0 || first > last || (count === 1 && first !== last)) return undefined
  return { first, last, count }
}

export function isBatchKey(key: string): boolean {
  return key.startsWith(BATCH) && parseBatchKey(key) !== undefined
}

export function isAcksKey(key: string): boolean {
  return key.startsWith(ACKS) && parseBatchKey(key) !== undefined
}

/**
 * Encodes entries (checked with `checkEntry`), sorted by id with no id twice, as one batch;
 * returns its key and value.
 */
export function encodeBatch(entries: readonly JournalEntry[]): {
  key: string
  value: Buffer
  name: BatchName
} {
  const { key, parts, name } = encodeBatchParts(entries, Infinity)
  return { key, value: parts[0] as Buffer, name }
}

/**
 * Encodes a batch as `encodeBatch` does, as the parts of its value in order, without copying a
 * payload of `copyBelow` bytes or more: such a payload is a part of its own (the very Buffer of
 * the entry), written to disk from where it is.
 */
export function encodeBatchParts(
  entries: readonly JournalEntry[],
  copyBelow: number,
  into?: Buffer,
): { key: string; parts: Buffer[]; length: number; name: BatchName; into: boolean } {
  let size = HEAD
  let length = HEAD
  const errors: (Buffer | undefined)[] = []
  for (const e of entries) {
    // A split body (lib/body.ts): its prefix is copied, its rest is the payload here.
    let own = ENTRY_HEAD + 4 + (prefixOf(e.payload)?.length ?? 0)
    if (e.notBefore !== undefined) own += 8
    const error = e.lastError === undefined ? undefined : Buffer.from(e.lastError)
    if (error !== undefined) own += 4 + error.length
    // Format 5's fields cost plain entries three property reads, here and below.
    const extras = extraFlags(e)
    if (extras !== 0) own += extrasSize(e, extras)
    errors.push(error)
    size += own + (e.payload.length < copyBelow ? e.payload.length : 0)
    length += own + e.payload.length
  }
  const first = entries[0]?.id ?? ""
  const last = entries[entries.length - 1]?.id ?? ""
  const buf =
    into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size)
  buf[0] = KIND_BATCH
  buf.writeUInt32LE(entries.length, 5)
  writeId(buf, first, 9)
  writeId(buf, last, 17)
  const parts: Buffer[] = []
  let from = 0
  let off = HEAD
  entries.forEach((e, i) => {
    const error = errors[i]
    writeId(buf, e.id, off)
    const extras = extraFlags(e)
    buf[off + 8] =
      (error === undefined ? 0 : FLAG_ERROR) |
      (e.notBefore === undefined ? 0 : FLAG_NOT_BEFORE) |
      extras
    buf.writeUInt32LE(e.attempts, off + 9)
    buf.writeDoubleLE(e.enqueuedAt, off + 13)
    off += ENTRY_HEAD
    if (e.notBefore !== undefined) off = buf.writeDoubleLE(e.notBefore, off)
    if (error !== undefined) {
      off = buf.writeUInt32LE(error.length, off)
      off += error.copy(buf, off)
    }
    if (extras !== 0) off = writeExtras(buf, e, extras, off)
    const prefix = prefixOf(e.payload)
    off = buf.writeUInt32LE(e.payload.length + (prefix?.length ?? 0), off)
    if (prefix !== undefined) off += prefix.copy(buf, off)
    if (e.payload.length < copyBelow) off += e.payload.copy(buf, off)
    else {
      parts.push(buf.subarray(from, off), e.payload)
      from = off
    }
  })
  if (from < off || parts.length === 0) parts.push(buf.subarray(from, off))
  // The crc covers the kind byte and everything after the crc, across the parts.
  let crc = kindSeed(KIND_BATCH)
  parts.forEach((part, i) => {
    crc = crc32(i === 0 ? part.subarray(5) : part, crc)
  })
  buf.writeUInt32LE(crc, 1)
  const count = entries.length
  return {
    key: batchKey(first, last, count),
    parts,
    length,
    name: { first, last, count },
    into: buf.buffer === into?.buffer,
  }
}

/** What a `b:` or `a:` value says about itself: the key it belongs under. */
export function batchValueKey(buf: Buffer): string | undefined {
  if (buf.length < HEAD) return undefined
  const kind = buf[0]
  if (kind !== KIND_BATCH && kind !== KIND_ACKS) return undefined
  if (buf.readUInt32LE(1) !== valueCrc(buf, kind)) return undefined
  const count = buf.readUInt32LE(5)
  const key = batchKey(buf.toString("hex", 9, 17), buf.toString("hex", 17, 25), count)
  if (parseBatchKey(key) === undefined) return undefined
  return (kind === KIND_BATCH ? BATCH : ACKS) + key.slice(2)
}

/** True when `value` is a sound value of kind 5 or 6 and belongs under `key`. */
export function checkBatchValue(key: string, value: Buffer): string | undefined {
  if (value.length < HEAD) return `value of ${value.length} bytes is too short`
  const kind = value[0]
  if (kind !== KIND_BATCH && kind !== KIND_ACKS) return `unknown value kind ${kind}`
  if (value.readUInt32LE(1) !== valueCrc(value, kind)) return "checksum mismatch"
  if (batchValueKey(value) !== key) return "the value belongs to another key: the key is damaged"
  return undefined
}

/**
 * The entries of a batch, in slot order; a description of the damage instead when it does not
 * check out. Their payloads are views of `buf`: copy one that is to outlive the others.
 */
export function decodeBatch(key: string, buf: Buffer): JournalEntry[] | string {
  const damage = checkBatchValue(key, buf)
  if (damage !== undefined) return damage
  if (buf[0] !== KIND_BATCH) return "not a batch"
  const count = buf.readUInt32LE(5)
  const out: JournalEntry[] = []
  let off = HEAD
  let previous = ""
  for (let i = 0; i < count; i++) {
    if (buf.length < off + ENTRY_HEAD) return "value is truncated"
    const id = buf.toString("hex", off, off + 8)
    const flags = buf[off + 8] ?? 0
    const entry: JournalEntry = {
      id,
      payload: buf,
      attempts: buf.readUInt32LE(off + 9),
      enqueuedAt: buf.readDoubleLE(off + 13),
    }
    off += ENTRY_HEAD
    if (flags & FLAG_NOT_BEFORE) {
      if (buf.length < off + 8) return "value is truncated"
      entry.notBefore = buf.readDoubleLE(off)
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
    const payload = lengthPrefixed(buf, off)
    if (payload === undefined) return "value is truncated"
    entry.payload = buf.subarray(payload.start, payload.end)
    off = payload.end
    if (id <= previous) return "its ids are out of order"
    previous = id
    out.push(entry)
  }
  if (off !== buf.length) return "value has bytes after its last entry"
  const first = out[0]?.id
  if (first !== key.slice(2, 2 + ID_HEX) || previous !== key.slice(2 + ID_HEX, 2 + 2 * ID_HEX))
    return "its ids disagree with its key"
  return out
}

/** Encodes the bitmap of the batch under `key` (a `b:` key). */
export function encodeAcks(key: string, acked: Uint8Array): Buffer {
  const name = parseBatchKey(key)
  if (name === undefined) throw new TypeError(`not a batch key: ${key}`)
  const buf = Buffer.alloc(HEAD + acked.length)
  buf[0] = KIND_ACKS
  buf.writeUInt32LE(name.count, 5)
  writeId(buf, name.first, 9)
  writeId(buf, name.last, 17)
  buf.set(acked, HEAD)
  buf.writeUInt32LE(valueCrc(buf, KIND_ACKS), 1)
  return buf
}

/** The bitmap stored under `key` (an `a:` key); a description of the damage instead. */
export function decodeAcks(key: string, buf: Buffer): Uint8Array | string {
  const damage = checkBatchValue(key, buf)
  if (damage !== undefined) return damage
  if (buf[0] !== KIND_ACKS) return "not a bitmap"
  const count = buf.readUInt32LE(5)
  if (buf.length !== HEAD + bitmapBytes(count)) return "its length disagrees with its count"
  return new Uint8Array(buf.subarray(HEAD)) // a copy: the index keeps it
}

export function bitmapBytes(count: number): number {
  return (count + 7) >>> 3
}

export function popcount(bits: Uint8Array): number {
  let n = 0
  for (const byte of bits) {
    let b = byte
    while (b !== 0) {
      b &= b - 1
      n++
    }
  }
  return n
}

// ---------------------------------------------------------------------------------------------
// the in-memory index

/** A batch on disk, as the journal keeps it in memory. */
export interface Batch {
  readonly key: string
  readonly first: string
  readonly last: string
  readonly count: number
  /**
   * The ids of its entries, as distances from `first` (ids are 16 hex digits of one counter, so
   * those of one batch are close), or as strings when one is too far; undefined until needed.
   */
  slots: Uint32Array | string[] | undefined
  /** The bitmap of its entries that are no longer pending; undefined while all are (no `a:` key). */
  acked: Uint8Array | undefined
  /** Its entries still pending. */
  live: number
  /** `first` as a number, once needed. */
  base?: number
  /** The value log's segment that holds its value, once known (format 4). */
  segment?: number | undefined
}

/** An id as a number, exact below 2^53 (ids of `IdGenerator` are: µs since 1970). */
function idNumber(id: string): number {
  return hexNumber(id, 0, 8) * 0x100000000 + hexNumber(id, 8, 16)
}

/** The number the hex digits `id[from, to)` spell (lower-case, as stored ids are), without slicing the string. */
function hexNumber(id: string, from: number, to: number): number {
  let n = 0
  for (let i = from; i < to; i++) {
    const c = id.charCodeAt(i)
    n = n * 16 + (c <= 57 ? c - 48 : c - 87)
  }
  return n
}

/** The distance from `first` to `id`, exact while it is below 2^53 (it is within a batch). */
function distance(id: string, first: string): number {
  const hi = parseInt(id.slice(0, 8), 16) - parseInt(first.slice(0, 8), 16)
  const lo = parseInt(id.slice(8), 16) - parseInt(first.slice(8), 16)
  return hi * 0x100000000 + lo
}

/** The slots of a batch with these ids (sorted): compact when they are close together. */
export function slotsOf(ids: readonly string[]): Uint32Array | string[] {
  const first = ids[0] ?? ""
  const base = idNumber(first)
  const slots = new Uint32Array(ids.length)
  for (let i = 0; i < ids.length; i++) {
    const d = offset(ids[i] as string, first, base)
    if (d > 0xffffffff) return [...ids]
    slots[i] = d
  }
  return slots
}

/** `id`'s distance from `first` (whose number is `base`), through numbers while they are exact. */
function offset(id: string, first: string, base: number): number {
  const n = idNumber(id)
  return base < Number.MAX_SAFE_INTEGER && n < Number.MAX_SAFE_INTEGER
    ? n - base
    : distance(id, first)
}

/** The slot of `id` in the batch (whose slots are loaded), or -1. */
export function slotOf(batch: Batch, id: string): number {
  const slots = batch.slots
  if (slots === undefined) throw new Error("the batch's slots are not loaded")
  let target: string | number = id
  if (!Array.isArray(slots)) {
    batch.base ??= idNumber(batch.first)
    target = offset(id, batch.first, batch.base)
  }
  const list: ArrayLike<string | number> = slots
  let lo = 0
  let hi = list.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const at = list[mid] as string | number
    if (at === target) return mid
    if (at < target) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

export function isAcked(acked: Uint8Array | undefined, slot: number): boolean {
  return acked !== undefined && ((acked[slot >>> 3] ?? 0) & (1 << (slot & 7))) !== 0
}

/** The batches of a journal, sorted by first id; their id ranges never overlap. */
export class BatchIndex {
  #batches: Batch[] = []

  get size(): number {
    return this.#batches.length
  }

  /** Every batch, in id order (the array itself: do not change it). */
  get all(): readonly Batch[] {
    return this.#batches
  }

  /** Adds a batch (at the end when its ids are above every other batch's, as new ones are). */
  add(batch: Batch): void {
    const list = this.#batches
    const lastBatch = list[list.length - 1]
    if (lastBatch === undefined || lastBatch.last < batch.first) list.push(batch)
    else list.splice(this.#firstEndingAfter(batch.first, true), 0, batch)
  }

  delete(batch: Batch): void {
    const list = this.#batches
    const i = this.#firstEndingAfter(batch.first, true)
    if (list[i] === batch) list.splice(i, 1)
  }

  /** The batch whose id range holds `id`, if any. */
  find(id: string): Batch | undefined {
    const b = this.#batches[this.#firstEndingAfter(id, true)]
    return b !== undefined && b.first <= id ? b : undefined
  }

  /** The position of the first batch whose last id is > `id` (or ≥ `id` when `inclusive`). */
  #firstEndingAfter(id: string, inclusive = false): number {
    const list = this.#batches
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const last = (list[mid] as Batch).last
      if (inclusive ? last < id : last <= id) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /**
   * The batches that may hold ids in (`after`, `until`], in id order, until they hold `need`
   * pending entries between them (a copy: the index may change while they are read).
   */
  collect(after: string | undefined, until: string | undefined, need: number): Batch[] {
    const list = this.#batches
    const out: Batch[] = []
    let live = 0
    for (let i = after === undefined ? 0 : this.#firstEndingAfter(after); i < list.length; i++) {
      const b = list[i] as Batch
      if ((until !== undefined && b.first > until) || live >= need) break
      out.push(b)
      live += b.live
    }
    return out
  }
}

/**
 * The batch entries one write takes out of the pending set: per batch, a copy of its bitmap with
 * the new bits set. The index changes only once the write is committed (`apply`).
 */
export class SlotChanges {
  readonly #changes = new Map<Batch, { acked: Uint8Array; cleared: number }>()

  get size(): number {
    return this.#changes.size
  }

  /** Takes the entry in `slot` out; false when it is not pending (or already taken in this write). */
  clear(batch: Batch, slot: number): boolean {
    let change = this.#changes.get(batch)
    if (change === undefined) {
      const acked = new Uint8Array(bitmapBytes(batch.count))
      if (batch.acked !== undefined) acked.set(batch.acked)
      change = { acked, cleared: 0 }
      this.#changes.set(batch, change)
    }
    if (isAcked(change.acked, slot)) return false
    change.acked[slot >>> 3] = (change.acked[slot >>> 3] ?? 0) | (1 << (slot & 7))
    change.cleared++
    return true
  }

  /** True when the entry in `slot` is pending, counting this write's changes. */
  pending(batch: Batch, slot: number): boolean {
    return !isAcked(this.#changes.get(batch)?.acked ?? batch.acked, slot)
  }

  /** Each changed batch with its new bitmap and the entries still pending in it. */
  *entries(): Generator<{ batch: Batch; acked: Uint8Array; live: number; cleared: number }> {
    for (const [batch, c] of this.#changes)
      yield { batch, acked: c.acked, live: batch.live - c.cleared, cleared: c.cleared }
  }

  /** Makes the committed changes the index's; returns the batches that are gone. */
  apply(index: BatchIndex): Batch[] {
    const gone: Batch[] = []
    for (const [batch, c] of this.#changes) {
      batch.live -= c.cleared
      if (batch.live <= 0) {
        index.delete(batch)
        gone.push(batch)
      } else batch.acked = c.acked
    }
    return gone
  }
}
