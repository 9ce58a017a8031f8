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
import { readFile } from "node:fs/promises"
import { crc32c, unmask } from "./level-log.js"

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

/** What a table holds, and what is wrong with it. */
export interface TableRead {
  entries: TableEntry[]
  /** Damage found: blocks whose checksum fails (still read), or that cannot be read at all. */
  problems: string[]
}

/** Reads every entry of a table file, in file order. */
export async function readTable(file: string): Promise<TableRead> {
  const buf = await readFile(file)
  const out: TableRead = { entries: [], problems: [] }
  if (buf.length < FOOTER || !hasMagic(buf)) {
    out.problems.push("not a table (bad magic number)")
    return out
  }
  let index: Buffer
  try {
    const footer = new Cursor(buf, buf.length - FOOTER)
    footer.handle() // the meta index: only the filter, which a repair does not need
    index = block(buf, footer.handle(), "index", out.problems)
  } catch (err) {
    out.problems.push(`unreadable index: ${(err as Error).message}`)
    return out
  }
  for (const [, handle] of blockEntries(index, out.problems, "index")) {
    try {
      const data = block(buf, new Cursor(handle, 0).handle(), "data", out.problems)
      for (const [key, value] of blockEntries(data, out.problems, "data")) {
        if (key.length < 8) {
          out.problems.push(`a key of ${key.length} bytes`)
          continue
        }
        const low = key.readUInt32LE(key.length - 8)
        const high = key.readUInt32LE(key.length - 4)
        const type = low & 0xff
        out.entries.push({
          key: key.toString("utf8", 0, key.length - 8),
          sequence: high * 2 ** 24 + (low >>> 8),
          value: type === 1 ? value : undefined,
        })
      }
    } catch (err) {
      out.problems.push(`unreadable data block: ${(err as Error).message}`)
    }
  }
  return out
}

function hasMagic(buf: Buffer): boolean {
  return (
    buf.readUInt32LE(buf.length - 8) === MAGIC_LOW &&
    buf.readUInt32LE(buf.length - 4) === MAGIC_HIGH
  )
}

/** The contents of the block at `handle`, uncompressed; notes a failed checksum. */
function block(
  buf: Buffer,
  handle: { offset: number; size: number },
  what: string,
  problems: string[],
): Buffer {
  const { offset, size } = handle
  if (offset + size + TRAILER > buf.length) throw new Error(`${what} block past the end`)
  const stored = unmask(buf.readUInt32LE(offset + size + 1))
  if (stored !== crc32c(buf, offset, offset + size + 1)) {
    problems.push(`${what} block at offset ${offset}: checksum mismatch`)
  }
  const data = buf.subarray(offset, offset + size)
  const type = buf[offset + size]
  if (type === 0) return data
  if (type === 1) return unsnappy(data)
  throw new Error(`bad block type ${type}`)
}

/** The [key, value] entries of a block; stops (noting why) where it stops making sense. */
function blockEntries(data: Buffer, problems: string[], what: string): [Buffer, Buffer][] {
  const out: [Buffer, Buffer][] = []
  if (data.length < 4) {
    problems.push(`${what} block too short`)
    return out
  }
  const restarts = data.readUInt32LE(data.length - 4)
  const end = data.length - 4 * (restarts + 1)
  if (end < 0) {
    problems.push(`${what} block with a bad restart count`)
    return out
  }
  const c = new Cursor(data, 0)
  let key = Buffer.alloc(0)
  try {
    while (c.off < end) {
      const shared = c.varint()
      const unshared = c.varint()
      const valueLength = c.varint()
      if (shared > key.length || c.off + unshared + valueLength > end) {
        throw new Error("an entry runs past its block")
      }
      key = Buffer.concat([key.subarray(0, shared), c.take(unshared)])
      out.push([key, c.take(valueLength)])
    }
  } catch (err) {
    problems.push(`${what} block: ${(err as Error).message}`)
  }
  return out
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

/** Snappy decompression (google/snappy: format_description.txt). */
export function unsnappy(src: Buffer): Buffer {
  const c = new Cursor(src, 0)
  const length = c.varint()
  if (length > 64 * 1024 * 1024) throw new Error("snappy block too large")
  const out = Buffer.alloc(length)
  let o = 0
  while (c.off < src.length) {
    const tag = src[c.off++] ?? 0
    let n: number
    let distance: number
    switch (tag & 3) {
      case 0: {
        n = tag >>> 2
        if (n >= 60) {
          const bytes = n - 59
          n = src.readUIntLE(c.off, bytes)
          c.off += bytes
        }
        n += 1
        if (o + n > length) throw new Error("snappy literal past the end")
        c.take(n).copy(out, o)
        o += n
        continue
      }
      case 1:
        n = ((tag >>> 2) & 7) + 4
        distance = ((tag >>> 5) << 8) | (src[c.off++] ?? 0)
        break
      case 2:
        n = (tag >>> 2) + 1
        distance = src.readUInt16LE(c.off)
        c.off += 2
        break
      default:
        n = (tag >>> 2) + 1
        distance = src.readUInt32LE(c.off)
        c.off += 4
    }
    if (distance === 0 || distance > o || o + n > length) throw new Error("bad snappy copy")
    for (let i = 0; i < n; i++, o++) out[o] = out[o - distance] ?? 0
  }
  if (o !== length) throw new Error("snappy block shorter than it says")
  return out
}
