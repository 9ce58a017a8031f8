/**
 * Reads LevelDB's table files (`*.ldb`, `*.sst`) byte by byte, for a repair: every entry in file
 * order, whatever its key. LevelDB's own iterator trusts each table to be sorted: after a key that
 * a damaged byte made too large (`p:0006…` → `p:f006…`, or `p:` → `q:`), it takes every smaller
 * key that follows in the table for an older version and skips it, so those entries are on disk
 * but out of its reach. Read here, they can be put back.
 *
 * Format (leveldb/doc/table_format.md): data blocks, a meta index, an index, then a 48-byte footer
 * [meta index handle][index handle][padding][magic u64]; a handle is [varint offset][varint size].
 * Each block is followed by [type u8: 0 raw, 1 snappy][masked crc32c u32 of block + type]. Inside
 * a block, entries [varint shared][varint unshared][varint value length][key suffix][value] share
 * their key's first `shared` bytes with the previous key; the block ends with its restart offsets
 * [u32…][count u32]. A key is the user key and 8 bytes [sequence << 8 | type: 1 put, 0 delete].
 */
import { open, readFile } from "node:fs/promises"
import { join } from "node:path"
import { CRC_INIT, crc32c, crcByte, crcEnd, logRecords, unmask } from "./level-log.js"

const FOOTER = 48
const TRAILER = 5
const MAGIC_LOW = 0x8b80fb57
const MAGIC_HIGH = 0xdb477524

/** One entry of a table: a put (`value` set) or a deletion of `key` at `sequence`. */
export interface TableEntry {
  key: string
  sequence: number
  value: Buffer | undefined
}

/** See {@link readTable}. */
export interface EntryReader {
  keyOf: (value: Buffer) => string | undefined
  plausible: (key: string, value: Buffer) => boolean
  /** True when the entry is certainly what was written (its value's checksum says so). */
  verified: (key: string, value: Buffer) => boolean
}

const ANY: EntryReader = { keyOf: () => undefined, plausible: () => true, verified: () => true }

/** What a table holds, and what is wrong with it. */
export interface TableRead {
  entries: TableEntry[]
  /**
   * Damage found: blocks whose checksum fails (still read), blocks that cannot be read, keys out
   * of order. LevelDB must not meet such a table again: it asserts that a table it writes is in
   * order, and classic-level's build aborts the process when a compaction (or its repair) copies
   * one whose keys are not.
   */
  problems: string[]
  /** The greatest sequence number in the table. */
  maxSequence: number
}

/**
 * Reads every entry of a table file, in file order.
 *
 * @param reader - what the caller knows of its keys and values: `keyOf`, the user key a value
 *   names (a journal value carries its id under its own checksum), lets reading resume in a block
 *   damaged mid-way, at the next entry whose value names its key (its key's first bytes are
 *   shared with a key that cannot be read); `plausible` tells whether an entry read from a block
 *   whose checksum fails can be what was written, or is bytes read out of step; `verified`
 *   tells data blocks from the others when the index is damaged and blocks are found without it
 */
export async function readTable(file: string, reader: EntryReader = ANY): Promise<TableRead> {
  const buf = await readFile(file)
  const out: TableRead = { entries: [], problems: [], maxSequence: 0 }
  let handles = indexHandles(buf, out.problems)
  // Without a sound index, find the data blocks by their checksums: they come one after the
  // other from the start of the file, each followed by its type and checksum.
  const found = handles === undefined
  if (found) handles = findBlocks(buf)
  let previous: Buffer | undefined
  for (const handle of handles ?? []) {
    const read = block(buf, handle, "data", found ? [] : out.problems)
    const check = read.damaged ? reader : { ...reader, plausible: ANY.plausible }
    const entries = blockEntries(read.data, out.problems, "data", check, read.partial)
    // A block found that way may be the filter or an index: keep data blocks only.
    if (
      found &&
      entries.filter(([k, v]) => reader.verified(userKey(k), v)).length * 2 <= entries.length
    ) {
      continue
    }
    for (const [key, value] of entries) {
      const low = key.readUInt32LE(key.length - 8)
      const high = key.readUInt32LE(key.length - 4)
      const type = low & 0xff
      const sequence = high * 2 ** 24 + (low >>> 8)
      if (previous !== undefined && compareInternal(previous, key) >= 0) {
        out.problems.push(`key out of order: ${JSON.stringify(userKey(key))}`)
      }
      previous = key
      out.maxSequence = Math.max(out.maxSequence, sequence)
      out.entries.push({ key: userKey(key), sequence, value: type === 1 ? value : undefined })
    }
  }
  return out
}

type Handle = { offset: number; size: number }

/**
 * The data blocks the index lists, after checking the footer, the meta index, the filter and
 * the index; undefined (with the problem noted) when the index cannot be trusted.
 */
function indexHandles(buf: Buffer, problems: string[]): Handle[] | undefined {
  if (buf.length < FOOTER || !hasMagic(buf)) {
    problems.push("not a table (bad magic number)")
    return undefined
  }
  try {
    const footer = new Cursor(buf, buf.length - FOOTER)
    const meta = block(buf, footer.handle(), "meta index", problems).data
    const index = block(buf, footer.handle(), "index", problems)
    // The meta blocks (the Bloom filter) are only checked: a damaged filter makes LevelDB miss keys.
    for (const [name, handle] of blockEntries(meta, problems, "meta index", ANY)) {
      block(buf, new Cursor(handle, 0).handle(), name.toString("latin1"), problems)
    }
    if (index.damaged) return undefined
    const handles = blockEntries(index.data, problems, "index", ANY).map(([, h]) =>
      new Cursor(h, 0).handle(),
    )
    for (const h of handles) {
      if (h.offset + h.size + TRAILER > buf.length) throw new Error("a block past the end")
    }
    return handles
  } catch (err) {
    problems.push(`unreadable index: ${(err as Error).message}`)
    return undefined
  }
}

/** The blocks of a table, found from its start by their trailers (type and checksum). */
function findBlocks(buf: Buffer): Handle[] {
  const out: Handle[] = []
  const end = buf.length - FOOTER
  for (let start = 0; start + TRAILER <= end;) {
    let crc = CRC_INIT
    let size = -1
    for (let e = start; e + TRAILER <= end; e++) {
      const type = buf[e] ?? 0
      if (type <= 1 && crcEnd(crcByte(crc, type)) === unmask(buf.readUInt32LE(e + 1))) {
        size = e - start
        break
      }
      crc = crcByte(crc, type)
    }
    if (size < 0) break // a damaged block: what follows it cannot be told apart
    out.push({ offset: start, size })
    start += size + TRAILER
  }
  return out
}

/**
 * Checks what LevelDB relies on to find a key, without reading the data: the footer, the index
 * block (a damaged separator makes a seek skip whole blocks, silently), the meta index and the
 * filter (a damaged filter makes LevelDB miss keys). These blocks are a small part of a table.
 *
 * @param expected - the size the MANIFEST gives it, when known
 * @returns what is wrong, or undefined
 */
export async function checkTableIndex(
  file: string,
  expected?: number,
): Promise<string | undefined> {
  const fh = await open(file, "r")
  try {
    const { size } = await fh.stat()
    if (expected !== undefined && size !== expected) {
      return `${size} bytes where LevelDB wrote ${expected}`
    }
    if (size < FOOTER) return "not a table (too short)"
    const read = async (offset: number, length: number): Promise<Buffer> => {
      if (offset + length > size) throw new Error("a block past the end of the file")
      const buf = Buffer.alloc(length)
      await fh.read(buf, 0, length, offset)
      return buf
    }
    const footer = await read(size - FOOTER, FOOTER)
    if (!hasMagic(footer)) return "not a table (bad magic number)"
    const problems: string[] = []
    const c = new Cursor(footer, 0)
    const blockAt = async (
      handle: { offset: number; size: number },
      what: string,
    ): Promise<Buffer> => {
      const raw = await read(handle.offset, handle.size + TRAILER)
      return block(raw, { offset: 0, size: handle.size }, what, problems).data
    }
    const meta = await blockAt(c.handle(), "meta index")
    await blockAt(c.handle(), "index")
    for (const [name, handle] of blockEntries(meta, problems, "meta index", ANY)) {
      await blockAt(new Cursor(handle, 0).handle(), name.toString("latin1"))
    }
    return problems[0]
  } catch (err) {
    return `unreadable index: ${(err as Error).message}`
  } finally {
    await fh.close()
  }
}

function userKey(key: Buffer): string {
  return key.toString("utf8", 0, key.length - 8)
}

/** LevelDB's order of internal keys: user key (bytes) ascending, then sequence descending. */
function compareInternal(a: Buffer, b: Buffer): number {
  const byKey = Buffer.compare(a.subarray(0, a.length - 8), b.subarray(0, b.length - 8))
  if (byKey !== 0) return byKey
  // The trailers, fixed64 little-endian [sequence << 8 | type], compared as numbers.
  const high = b.readUInt32LE(b.length - 4) - a.readUInt32LE(a.length - 4)
  return high !== 0 ? high : b.readUInt32LE(b.length - 8) - a.readUInt32LE(a.length - 8)
}

function hasMagic(buf: Buffer): boolean {
  return (
    buf.readUInt32LE(buf.length - 8) === MAGIC_LOW &&
    buf.readUInt32LE(buf.length - 4) === MAGIC_HIGH
  )
}

/** The contents of the block at `handle`, uncompressed, and whether its checksum fails. */
function block(
  buf: Buffer,
  handle: { offset: number; size: number },
  what: string,
  problems: string[],
): { data: Buffer; damaged: boolean; partial: boolean } {
  const { offset, size } = handle
  if (offset + size + TRAILER > buf.length) throw new Error(`${what} block past the end`)
  const stored = unmask(buf.readUInt32LE(offset + size + 1))
  const damaged = stored !== crc32c(buf, offset, offset + size + 1)
  if (damaged) problems.push(`${what} block at offset ${offset}: checksum mismatch`)
  const data = buf.subarray(offset, offset + size)
  const type = buf[offset + size]
  if (type === 0) return { data, damaged, partial: false }
  if (type !== 1) throw new Error(`bad block type ${type}`)
  const { out, error } = unsnappy(data)
  // What was decoded before the damage is still good; the entry cut short there is not read.
  if (error !== undefined) problems.push(`${what} block at offset ${offset}: ${error}`)
  return { data: out, damaged, partial: error !== undefined }
}

/**
 * The [key, value] entries of a block (of what is left of it, when `partial`, up to the last
 * whole entry). Where an entry makes no sense (the block is damaged), it
 * notes why and looks further on for an entry whose value names its key (`reader.keyOf`), to go
 * on from there; without one, the rest of the block is not read.
 */
function blockEntries(
  data: Buffer,
  problems: string[],
  what: string,
  reader: EntryReader,
  partial = false,
): [Buffer, Buffer][] {
  const out: [Buffer, Buffer][] = []
  // A block cut short (its decompression failed) has lost the restart offsets at its end.
  let end = data.length
  if (!partial) {
    const restarts = data.length < 4 ? -1 : data.readUInt32LE(data.length - 4)
    end = data.length - 4 * (restarts + 1)
    if (restarts < 0 || end < 0) {
      problems.push(`${what} block with a bad restart count`)
      return out
    }
  }
  const c = new Cursor(data, 0)
  let key: Buffer | undefined = Buffer.alloc(0)
  while (c.off < end) {
    const at = c.off
    const entry = readEntry(c, end, key, reader)
    if (entry !== undefined) {
      key = entry[0]
      out.push(entry)
      continue
    }
    if (key !== undefined) problems.push(`${what} block: an entry at offset ${at} makes no sense`)
    key = undefined // from here on, only an entry whose value names its key can be read
    c.off = at + 1
  }
  return out
}

/**
 * The entry at the cursor, or undefined when it makes no sense. With `previous` undefined (after
 * damage), only an entry whose value names its key qualifies; its sequence number and type, the
 * last 8 bytes of the key, are its own.
 */
function readEntry(
  c: Cursor,
  end: number,
  previous: Buffer | undefined,
  reader: EntryReader,
): [Buffer, Buffer] | undefined {
  try {
    const shared = c.varint()
    const unshared = c.varint()
    const valueLength = c.varint()
    if (c.off + unshared + valueLength > end) return undefined
    const suffix = c.take(unshared)
    const value = c.take(valueLength)
    if (previous !== undefined) {
      if (shared > previous.length) return undefined
      const key = Buffer.concat([previous.subarray(0, shared), suffix])
      if (key.length < 8 || !reader.plausible(userKey(key), value)) return undefined
      return [key, value]
    }
    const named = unshared >= 8 ? reader.keyOf(value) : undefined
    if (named === undefined) return undefined
    return [Buffer.concat([Buffer.from(named), suffix.subarray(unshared - 8)]), value]
  } catch {
    return undefined
  }
}

/** Reads varints and handles from a buffer. */
class Cursor {
  readonly buf: Buffer
  off: number

  constructor(buf: Buffer, off: number) {
    this.buf = buf
    this.off = off
  }

  /** A varint of up to 64 bits (exact up to 2^53). */
  varint(): number {
    let value = 0
    for (let scale = 1; scale < 2 ** 64; scale *= 128) {
      const b = this.buf[this.off++]
      if (b === undefined) throw new Error("truncated varint")
      value += (b & 0x7f) * scale
      if (b < 0x80) return value
    }
    throw new Error("varint too long")
  }

  handle(): { offset: number; size: number } {
    return { offset: this.varint(), size: this.varint() }
  }

  take(n: number): Buffer {
    if (this.off + n > this.buf.length) throw new Error("truncated")
    const slice = this.buf.subarray(this.off, this.off + n)
    this.off += n
    return slice
  }
}

/**
 * Snappy decompression (google/snappy: format_description.txt). On damage it returns what it
 * decoded up to there, and why it stopped.
 */
export function unsnappy(src: Buffer): { out: Buffer; error: string | undefined } {
  const c = new Cursor(src, 0)
  let length: number
  try {
    length = c.varint()
  } catch {
    return { out: Buffer.alloc(0), error: "bad snappy length" }
  }
  if (length > 64 * 1024 * 1024) return { out: Buffer.alloc(0), error: "snappy block too large" }
  const out = Buffer.alloc(length)
  let o = 0
  const stop = (error: string): { out: Buffer; error: string } => ({
    out: out.subarray(0, o),
    error,
  })
  while (c.off < src.length) {
    const tag = src[c.off++] ?? 0
    let n: number
    let distance: number
    switch (tag & 3) {
      case 0: {
        n = tag >>> 2
        if (n >= 60) {
          const bytes = n - 59
          if (c.off + bytes > src.length) return stop("truncated snappy literal")
          n = src.readUIntLE(c.off, bytes)
          c.off += bytes
        }
        n += 1
        if (o + n > length || c.off + n > src.length) return stop("snappy literal past the end")
        src.copy(out, o, c.off, c.off + n)
        c.off += n
        o += n
        continue
      }
      case 1:
        n = ((tag >>> 2) & 7) + 4
        distance = ((tag >>> 5) << 8) | (src[c.off++] ?? 0)
        break
      case 2:
        n = (tag >>> 2) + 1
        if (c.off + 2 > src.length) return stop("truncated snappy copy")
        distance = src.readUInt16LE(c.off)
        c.off += 2
        break
      default:
        n = (tag >>> 2) + 1
        if (c.off + 4 > src.length) return stop("truncated snappy copy")
        distance = src.readUInt32LE(c.off)
        c.off += 4
    }
    if (distance === 0 || distance > o || o + n > length) return stop("bad snappy copy")
    for (let i = 0; i < n; i++, o++) out[o] = out[o - distance] ?? 0
  }
  if (o !== length) return stop("snappy block shorter than it says")
  return { out, error: undefined }
}

/**
 * The tables of a database, by file number, with the size each must have, as its MANIFEST says
 * (leveldb/db/version_edit.cc: a log of edits that add and delete files). Other table files are
 * left over (a compaction cut short by a crash) and LevelDB deletes them when it opens. Undefined
 * when the MANIFEST cannot be read (LevelDB's open then fails too).
 */
export async function liveTables(dir: string): Promise<Map<number, number> | undefined> {
  try {
    const current = (await readFile(join(dir, "CURRENT"), "utf8")).trim()
    if (!/^MANIFEST-\d+$/.test(current)) return undefined
    const live = new Map<number, number>()
    for (const record of logRecords(await readFile(join(dir, current)))) {
      const c = new Cursor(record, 0)
      while (c.off < record.length) {
        const tag = c.varint()
        if (tag === 1)
          c.take(c.varint()) // comparator
        else if (tag === 2 || tag === 3 || tag === 4 || tag === 9)
          c.varint() // numbers
        else if (tag === 5) {
          c.varint() // compaction pointer: level, key
          c.take(c.varint())
        } else if (tag === 6) {
          c.varint() // level
          live.delete(c.varint())
        } else if (tag === 7) {
          c.varint() // level
          const number = c.varint()
          live.set(number, c.varint())
          c.take(c.varint()) // smallest key
          c.take(c.varint()) // largest key
        } else return undefined
      }
    }
    return live
  } catch {
    return undefined
  }
}
