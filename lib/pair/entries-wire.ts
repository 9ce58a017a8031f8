/**
 * Entries and ids as the pair link carries them (docs/pair.md, section 4): binary, in the
 * journal's own entry layout, so that the active streams a group commit with one copy of each
 * payload and the passive reads it back with views, not an object per field.
 *
 *   entries: [count u32] then per entry
 *            [id 8 bytes] [flags u8] [attempts u32] [enqueuedAt f64]
 *            [notBefore f64]? [lastError: u32 length, utf-8]? [the fields of formats 5 to 7]?
 *            [deadAt f64, dead letters only] [payload: u32 length, bytes]
 *   ids:     8 bytes each, in order
 *
 * The flags and the fields of formats 5 to 7 are those of `LevelJournal`'s values
 * (lib/journal/level-format.ts). A split body (lib/body.ts) is written whole: its prefix, then the
 * rest. Pure, no I/O.
 */
import { prefixOf } from "../body.js"
import {
  FLAG_ERROR,
  FLAG_NOT_BEFORE,
  KNOWN_FLAGS,
  checkEntry,
  extraFlags,
  extrasSize,
  readExtras,
  writeExtras,
} from "../journal/level-format.js"
import { writeId } from "../journal/level-keys.js"
import type { DeadLetter, JournalEntry } from "../journal/types.js"

const ID_BYTES = 8
/** id, flags, attempts, enqueuedAt. */
const ENTRY_HEAD = ID_BYTES + 1 + 4 + 8
const EMPTY = Buffer.alloc(0)

function entrySize(e: JournalEntry, dead: boolean): number {
  let size = ENTRY_HEAD + 4 + e.payload.length + (prefixOf(e.payload)?.length ?? 0)
  if (e.notBefore !== undefined) size += 8
  if (e.lastError !== undefined) size += 4 + Buffer.byteLength(e.lastError)
  const extras = extraFlags(e)
  if (extras !== 0) size += extrasSize(e, extras)
  if (dead) size += 8
  return size
}

/**
 * Encodes entries (dead letters with `dead`: their `deadAt` too). Their ids are the journal's (16
 * lower-case hex digits); their other fields were checked when the active's journal wrote them.
 */
export function encodeEntries(entries: readonly JournalEntry[], dead = false): Buffer {
  let size = 4
  for (const e of entries) size += entrySize(e, dead)
  const buf = Buffer.allocUnsafe(size)
  let off = buf.writeUInt32LE(entries.length, 0)
  for (const e of entries) {
    off = writeId(buf, e.id, off)
    const extras = extraFlags(e)
    buf[off] =
      (e.lastError === undefined ? 0 : FLAG_ERROR) |
      (e.notBefore === undefined ? 0 : FLAG_NOT_BEFORE) |
      extras
    off = buf.writeUInt32LE(e.attempts, off + 1)
    off = buf.writeDoubleLE(e.enqueuedAt, off)
    if (e.notBefore !== undefined) off = buf.writeDoubleLE(e.notBefore, off)
    if (e.lastError !== undefined) {
      const n = buf.write(e.lastError, off + 4, "utf8")
      buf.writeUInt32LE(n, off)
      off += 4 + n
    }
    if (extras !== 0) off = writeExtras(buf, e, extras, off)
    if (dead) off = buf.writeDoubleLE((e as DeadLetter).deadAt, off)
    const prefix = prefixOf(e.payload)
    off = buf.writeUInt32LE(e.payload.length + (prefix?.length ?? 0), off)
    if (prefix !== undefined) off += prefix.copy(buf, off)
    buf.set(e.payload, off)
    off += e.payload.length
  }
  return buf
}

/**
 * The entries `encodeEntries` wrote (dead letters with `dead`), their payloads views of `buf`;
 * undefined when `buf` does not read as such (truncated, bytes left over, an unknown flag, a time
 * that is not a finite number, a dead letter without its error).
 */
export function decodeEntries(buf: Buffer, dead: true): DeadLetter[] | undefined
export function decodeEntries(buf: Buffer, dead: boolean): JournalEntry[] | undefined
export function decodeEntries(buf: Buffer, dead: boolean): JournalEntry[] | undefined {
  const count = countOf(buf)
  if (count === undefined) return undefined
  const out: JournalEntry[] = []
  let off = 4
  for (let i = 0; i < count; i++) {
    const read = readEntry(buf, off, dead)
    if (read === undefined) return undefined
    out.push(read.entry)
    off = read.end
  }
  return off === buf.length ? out : undefined
}

/** The ids of encoded entries, and which have a send id, read without decoding the entries. */
export interface EntryKeys {
  count: number
  /** Each id as two u32, its high and low halves (see `idKey`). */
  keys: Uint32Array
  /** 1 for an entry with a send id; undefined when none has one. */
  dedupe: Uint8Array | undefined
}

/**
 * Checks encoded entries (not dead letters) as `decodeEntries` and the journal (`checkEntry`)
 * would, and gives their ids as keys, without an object per entry for the common ones (an id, an
 * attempt count, times and a payload): a passive holds these (docs/pair.md, section 3.6).
 * Undefined when `buf` does not read or an entry would not be written.
 */
export function scanEntries(buf: Buffer): EntryKeys | undefined {
  const count = countOf(buf)
  if (count === undefined) return undefined
  const keys = new Uint32Array(2 * count)
  let dedupe: Uint8Array | undefined
  let off = 4
  for (let i = 0; i < count; i++) {
    if (buf.length < off + ENTRY_HEAD) return undefined
    keys[2 * i] = buf.readUInt32BE(off)
    keys[2 * i + 1] = buf.readUInt32BE(off + 4)
    const flags = buf[off + ID_BYTES] as number
    if ((flags & ~FLAG_NOT_BEFORE) !== 0) {
      // An error or the fields of formats 5 to 7: read whole, checked as the journal would.
      const read = readEntry(buf, off, false)
      if (read === undefined || !writable(read.entry)) return undefined
      if (read.entry.dedupeId !== undefined) (dedupe ??= new Uint8Array(count))[i] = 1
      off = read.end
      continue
    }
    if (!Number.isFinite(buf.readDoubleLE(off + ID_BYTES + 5))) return undefined
    off += ENTRY_HEAD
    if (flags & FLAG_NOT_BEFORE) {
      if (buf.length < off + 8 || !Number.isFinite(buf.readDoubleLE(off))) return undefined
      off += 8
    }
    off = lengthPrefixedEnd(buf, off)
    if (off < 0) return undefined
  }
  return off === buf.length ? { count, keys, dedupe } : undefined
}

function writable(e: JournalEntry): boolean {
  try {
    checkEntry(e)
    return true
  } catch {
    return false
  }
}

/** The count of encoded entries, undefined when `buf` cannot hold that many. */
function countOf(buf: Buffer): number | undefined {
  if (buf.length < 4) return undefined
  const count = buf.readUInt32LE(0)
  // Every entry takes at least its head: a count beyond that is garbage, not an allocation.
  return count > (buf.length - 4) / ENTRY_HEAD ? undefined : count
}

/** The entry at `off` and the offset after it; undefined when it does not read. */
function readEntry(
  buf: Buffer,
  off: number,
  dead: boolean,
): { entry: JournalEntry; end: number } | undefined {
  if (buf.length < off + ENTRY_HEAD) return undefined
  const flags = buf[off + ID_BYTES] as number
  if ((flags & ~KNOWN_FLAGS) !== 0) return undefined
  const e: JournalEntry = {
    id: buf.toString("hex", off, off + ID_BYTES),
    payload: EMPTY,
    attempts: buf.readUInt32LE(off + ID_BYTES + 1),
    enqueuedAt: buf.readDoubleLE(off + ID_BYTES + 5),
  }
  off += ENTRY_HEAD
  if (flags & FLAG_NOT_BEFORE) {
    if (buf.length < off + 8) return undefined
    e.notBefore = buf.readDoubleLE(off)
    off += 8
  }
  if (flags & FLAG_ERROR) {
    const end = lengthPrefixedEnd(buf, off)
    if (end < 0) return undefined
    e.lastError = buf.toString("utf8", off + 4, end)
    off = end
  } else if (dead) return undefined
  off = readExtras(buf, off, flags, e)
  if (off < 0) return undefined
  if (dead) {
    if (buf.length < off + 8) return undefined
    ;(e as DeadLetter).deadAt = buf.readDoubleLE(off)
    off += 8
  }
  const end = lengthPrefixedEnd(buf, off)
  if (end < 0 || !times(e, dead)) return undefined
  e.payload = buf.subarray(off + 4, end)
  return { entry: e, end }
}

/** The end of the bytes at `off` after their u32 length, -1 when they run past `buf`. */
function lengthPrefixedEnd(buf: Buffer, off: number): number {
  if (buf.length < off + 4) return -1
  const end = off + 4 + buf.readUInt32LE(off)
  return end <= buf.length ? end : -1
}

function times(e: JournalEntry, dead: boolean): boolean {
  return (
    Number.isFinite(e.enqueuedAt) &&
    (e.notBefore === undefined || Number.isFinite(e.notBefore)) &&
    (e.expiresAt === undefined || Number.isFinite(e.expiresAt)) &&
    (!dead || Number.isFinite((e as DeadLetter).deadAt))
  )
}

/** Encodes journal ids (16 lower-case hex digits each), 8 bytes each. */
export function encodeIds(ids: readonly string[]): Buffer {
  const buf = Buffer.allocUnsafe(ids.length * ID_BYTES)
  let off = 0
  for (const id of ids) off = writeId(buf, id, off)
  return buf
}

/** The ids `encodeIds` wrote as keys (see `EntryKeys`); undefined when they are not whole. */
export function idKeys(buf: Buffer): Uint32Array | undefined {
  if (buf.length % ID_BYTES !== 0) return undefined
  const keys = new Uint32Array(buf.length / 4)
  for (let i = 0; i < keys.length; i++) keys[i] = buf.readUInt32BE(i * 4)
  return keys
}

/** An id (16 lower-case hex digits) as a key: its high and low halves. */
export function idKey(id: string): [number, number] {
  return [Number.parseInt(id.slice(0, 8), 16), Number.parseInt(id.slice(8, 16), 16)]
}

/** The ids `encodeIds` wrote; undefined when `buf` is not a whole number of them. */
export function decodeIds(buf: Buffer): string[] | undefined {
  if (buf.length % ID_BYTES !== 0) return undefined
  const out = new Array<string>(buf.length / ID_BYTES)
  for (let i = 0; i < out.length; i++)
    out[i] = buf.toString("hex", i * ID_BYTES, (i + 1) * ID_BYTES)
  return out
}
