/**
 * LevelDB's write-ahead logs (`*.log`), read as LevelDB reads them when it opens a database: what
 * it replays, what it drops and why, and what can still be read of what it drops.
 *
 * LevelDB, as classic-level opens it (without paranoid checks, which it does not expose), drops
 * any log record it cannot read, and with it the rest of its 32 KiB block, then deletes the log.
 * `LevelJournal` checks the logs before it opens (and refuses to open a damaged one, while nothing
 * is lost yet), and its repair reads the dropped parts to name the writes that are lost.
 *
 * Format (leveldb/doc/log_format.md): 32 KiB blocks of physical records [masked crc32c u32]
 * [length u16][type u8][data], the crc over type + data; a record never crosses a block boundary,
 * so a long one is cut into FIRST, MIDDLE…, LAST fragments. Each logical record is a write batch
 * (leveldb/db/write_batch.cc): [sequence u64][count u32] then per operation [tag u8: 1 put,
 * 0 delete][varint key length][key] and for a put [varint value length][value].
 */
import { readFile, readdir, stat } from "node:fs/promises"
import { join } from "node:path"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { howToRecover } from "./level-errors.js"
import { BATCH_KEY_LENGTH, parseBatchKey } from "./level-batch.js"
import { KEY_LENGTH, META, isEntryKey } from "./level-format.js"

const BLOCK = 32768
const HEADER = 7
const ZERO = 0
const FULL = 1
const FIRST = 2
const MIDDLE = 3
const LAST = 4
const BATCH_HEADER = 12

interface Range {
  start: number
  end: number
}

/** A log as LevelDB's reader sees it. */
interface LogRead {
  /** The logical records LevelDB replays, in file order. */
  records: { offset: number; data: Buffer }[]
  /** The ranges it drops, in file order, with the reason it logs (or would, for a silent skip). */
  dropped: (Range & { reason: string })[]
  /**
   * An unfinished last write (the writer died mid-record, or its block was never written back):
   * dropped too, but not damage, as the write never completed. `start` is where it starts,
   * `stop` where LevelDB stopped reading.
   */
  tail: { start: number; stop: number } | undefined
}

/** Follows leveldb/db/log_reader.cc (ReadRecord, ReadPhysicalRecord) with checksums on. */
function readLog(buf: Buffer): LogRead {
  const out: LogRead = { records: [], dropped: [], tail: undefined }
  // The fragments of the logical record being assembled (LevelDB's `scratch`).
  let scratch: { offset: number; frags: Buffer[]; ranges: Range[] } | undefined
  const dropScratch = (reason: string): void => {
    for (const r of scratch?.ranges ?? []) out.dropped.push({ ...r, reason })
    scratch = undefined
  }
  for (let block = 0; block < buf.length; block += BLOCK) {
    const end = Math.min(block + BLOCK, buf.length)
    // LevelDB learns that it is at the end of the file when a read returns less than a block.
    const last = end - block < BLOCK
    let off = block
    for (;;) {
      if (end - off < HEADER) {
        if (last) {
          if (scratch || off < end) out.tail = { start: scratch?.offset ?? off, stop: off }
          return out
        }
        break // the block's trailer: too short for a header
      }
      const length = buf.readUInt16LE(off + 4)
      const type = buf.readUInt8(off + 6)
      if (off + HEADER + length > end) {
        if (last) {
          // LevelDB takes this for the end of the log. A write cut short by a crash, unless the
          // header is impossible: LevelDB never writes a record across a block boundary.
          if (off + HEADER + length <= block + BLOCK && type >= FULL && type <= LAST) {
            out.tail = { start: scratch?.offset ?? off, stop: off }
            return out
          }
          const start = scratch?.offset ?? off
          out.dropped.push({ start, end: buf.length, reason: `bad record length at offset ${off}` })
          return out
        }
        dropScratch("error in middle of record")
        out.dropped.push({ start: off, end, reason: `bad record length at offset ${off}` })
        break
      }
      if (type === ZERO && length === 0) {
        // Preallocated or never written back: LevelDB skips the rest of the block unreported.
        dropScratch("error in middle of record")
        if (!allZero(buf, off, end)) {
          out.dropped.push({ start: off, end, reason: `zeroed record header at offset ${off}` })
        }
        break
      }
      if (unmask(buf.readUInt32LE(off)) !== crc32c(buf, off + 6, off + HEADER + length)) {
        // A record whose data was never written back (zeros to the end of the file) is the
        // tail of an unfinished write, not damage.
        if (allZero(buf, off + HEADER + length, buf.length)) {
          out.tail = { start: scratch?.offset ?? off, stop: off }
          return out
        }
        dropScratch("error in middle of record")
        out.dropped.push({ start: off, end, reason: `checksum mismatch at offset ${off}` })
        break
      }
      const frag = buf.subarray(off + HEADER, off + HEADER + length)
      const range = { start: off, end: off + HEADER + length }
      off = range.end
      switch (type) {
        case FULL:
          dropScratch(`partial record without end before offset ${range.start}`)
          out.records.push({ offset: range.start, data: frag })
          break
        case FIRST:
          dropScratch(`partial record without end before offset ${range.start}`)
          scratch = { offset: range.start, frags: [frag], ranges: [range] }
          break
        case MIDDLE:
        case LAST:
          if (!scratch) {
            out.dropped.push({
              ...range,
              reason: `record fragment without start at offset ${range.start}`,
            })
            break
          }
          scratch.frags.push(frag)
          scratch.ranges.push(range)
          if (type === LAST) {
            out.records.push({ offset: scratch.offset, data: Buffer.concat(scratch.frags) })
            scratch = undefined
          }
          break
        default:
          dropScratch("error in middle of record")
          out.dropped.push({ ...range, reason: `bad record type ${type} at offset ${range.start}` })
      }
    }
  }
  if (scratch) out.tail = { start: scratch.offset, stop: buf.length }
  return out
}

/** The logical records of a log file that LevelDB reads (a MANIFEST is one too). */
export function logRecords(buf: Buffer): Buffer[] {
  return readLog(buf).records.map((r) => r.data)
}

/**
 * What is wrong with a log, or undefined. The unfinished tail of the last write is not damage,
 * unless a complete record follows it: then a damaged length made LevelDB take the rest of the
 * log for a tail, and it would silently drop the records in it.
 */
export function checkLog(buf: Buffer): string | undefined {
  const read = readLog(buf)
  const first = read.dropped[0]
  if (first !== undefined) return first.reason
  if (hidesRecords(buf, read)) {
    return `bad record length at offset ${read.tail?.stop ?? 0} (complete records follow it)`
  }
  return undefined
}

/** True when a physical record with a valid checksum follows where LevelDB saw the end. */
function hidesRecords(buf: Buffer, read: LogRead): boolean {
  return read.tail !== undefined && recordAfter(buf, read.tail.stop) !== undefined
}

/** The offset of the first physical record with a valid checksum after `from`, if any. */
function recordAfter(buf: Buffer, from: number): number | undefined {
  for (let p = from + 1; p + HEADER <= buf.length; p++) {
    const length = buf.readUInt16LE(p + 4)
    const type = buf.readUInt8(p + 6)
    const blockEnd = Math.min(buf.length, (Math.floor(p / BLOCK) + 1) * BLOCK)
    if (type < FULL || type > LAST || p + HEADER + length > blockEnd) continue
    if (unmask(buf.readUInt32LE(p)) === crc32c(buf, p + 6, p + HEADER + length)) return p
  }
  return undefined
}

/** Refuses to open a journal whose logs LevelDB would replay with losses (see the top). */
export async function verifyLogs(dir: string): Promise<void> {
  for (const { name, buf } of await readLogs(dir)) {
    const problem = checkLog(buf)
    if (problem !== undefined) {
      throw new PirateError(
        "PIRATE_JOURNAL_CORRUPT",
        `the journal in ${dir} is damaged (${name}: ${problem}); LevelDB would drop the unreadable writes, so it was not opened; ${howToRecover(dir)}`,
      )
    }
  }
}

/** The non-empty logs of a directory, oldest first. */
async function readLogs(dir: string): Promise<{ name: string; buf: Buffer }[]> {
  const names = (await readdir(dir)).filter((n) => /^\d+\.log$/.test(n))
  names.sort((a, b) => parseInt(a, 10) - parseInt(b, 10))
  const logs: { name: string; buf: Buffer }[] = []
  for (const name of names) {
    const file = join(dir, name)
    try {
      if ((await stat(file)).size === 0) continue
      logs.push({ name, buf: await readFile(file) })
    } catch (err) {
      // Another process holding the journal may just have rolled its log; open() will then
      // report the lock.
      if (errorCode(err) === "ENOENT") continue
      throw new PirateError(
        "PIRATE_JOURNAL_IO",
        `cannot read ${file}: ${errorMessage(err)}; check the journal directory's permissions`,
        { cause: err },
      )
    }
  }
  return logs
}

// ---------------------------------------------------------------------------------------------
// what a repair can learn from the logs

/** One operation of a write batch; `value` is undefined for a deletion. */
export interface LogOp {
  key: string
  value: Buffer | undefined
}

/** The writes of the logs, in the order LevelDB applied (or would have applied) them. */
export interface LogHistory {
  /** Operations LevelDB replays, and those it drops that could still be read (`dropped`). */
  ops: (LogOp & { dropped: boolean })[]
  /** Bytes LevelDB drops because they are damaged (not counting an unfinished last write). */
  droppedBytes: number
  /** Why, one line per damaged place: `000005.log: checksum mismatch at offset 4242`. */
  problems: string[]
}

/**
 * Reads every log of a journal before LevelDB replays them: what LevelDB will keep, and what can
 * still be read of the writes it will drop. Those are read without their (failed) checksums, so
 * a caller must only trust what it can check otherwise (a value's own checksum and id).
 */
export async function readLogHistory(dir: string): Promise<LogHistory> {
  const history: LogHistory = { ops: [], droppedBytes: 0, problems: [] }
  for (const { name, buf } of await readLogs(dir)) {
    const read = readLog(buf)
    const dropped = read.dropped.slice()
    if (read.tail !== undefined && hidesRecords(buf, read)) {
      const { start, stop } = read.tail
      dropped.push({ start, end: buf.length, reason: `bad record length at offset ${stop}` })
    }
    for (const d of dropped) history.problems.push(`${name}: ${d.reason}`)
    history.droppedBytes += dropped.reduce((sum, d) => sum + d.end - d.start, 0)
    const kept = read.records.map((r) => ({
      offset: r.offset,
      ops: parseBatch(r.data) ?? [],
      dropped: false,
    }))
    const salvaged = salvage(buf, dropped).map((s) => ({ ...s, dropped: true }))
    for (const batch of [...kept, ...salvaged].sort((a, b) => a.offset - b.offset)) {
      for (const op of batch.ops) history.ops.push({ ...op, dropped: batch.dropped })
    }
  }
  return history
}

/**
 * Reads what it can of the dropped ranges: walks their physical records without checking their
 * checksums, reassembles fragments and parses the batches; where a header makes no sense (or a
 * batch does not parse), looks for the operations' byte patterns instead.
 */
function salvage(buf: Buffer, dropped: Range[]): { offset: number; ops: LogOp[] }[] {
  const out: { offset: number; ops: LogOp[] }[] = []
  let pending: { offset: number; frags: Buffer[] } | undefined
  const flush = (): void => {
    if (pending) out.push({ offset: pending.offset, ops: readOps(Buffer.concat(pending.frags)) })
    pending = undefined
  }
  for (const range of dropped) {
    let off = range.start
    while (off < range.end) {
      const blockEnd = Math.min(range.end, (Math.floor(off / BLOCK) + 1) * BLOCK)
      const length = blockEnd - off >= HEADER ? buf.readUInt16LE(off + 4) : 0
      const type = blockEnd - off >= HEADER ? buf.readUInt8(off + 6) : 0
      if (type < FULL || type > LAST || off + HEADER + length > blockEnd) {
        // No sense to be made of the headers here: take the rest of the block as raw bytes.
        flush()
        out.push({ offset: off, ops: findOps(buf.subarray(off, blockEnd)) })
        off = blockEnd
        continue
      }
      const frag = buf.subarray(off + HEADER, off + HEADER + length)
      if (type === FULL || type === FIRST) flush()
      if (pending) pending.frags.push(frag)
      else pending = { offset: off, frags: [frag] }
      if (type === FULL || type === LAST) flush()
      off += HEADER + length
    }
  }
  flush()
  return out
}

/** The operations of a batch: parsed when it is well formed, else found by their patterns. */
function readOps(data: Buffer): LogOp[] {
  return parseBatch(data) ?? findOps(data)
}

/** Parses a whole write batch; undefined when it is not one. */
function parseBatch(data: Buffer): LogOp[] | undefined {
  if (data.length < BATCH_HEADER) return undefined
  const count = data.readUInt32LE(8)
  const ops: LogOp[] = []
  let off = BATCH_HEADER
  while (off < data.length) {
    const tag = data[off++]
    if (tag !== 0 && tag !== 1) return undefined
    const key = readSlice(data, off)
    if (key === undefined) return undefined
    off = key.end
    let value: Buffer | undefined
    if (tag === 1) {
      const v = readSlice(data, off)
      if (v === undefined) return undefined
      off = v.end
      value = v.bytes
    }
    ops.push({ key: key.bytes.toString("latin1"), value })
  }
  return ops.length === count ? ops : undefined
}

/** A varint-prefixed slice at `off`, or undefined when it runs past the end. */
function readSlice(data: Buffer, off: number): { bytes: Buffer; end: number } | undefined {
  let length = 0
  for (let shift = 0; shift <= 28; shift += 7) {
    const b = data[off++]
    if (b === undefined) return undefined
    length |= (b & 0x7f) << shift
    if (b < 0x80) {
      length >>>= 0
      if (off + length > data.length) return undefined
      return { bytes: data.subarray(off, off + length), end: off + length }
    }
  }
  return undefined
}

/**
 * The journal's operations found in raw bytes by their patterns: tag 1 or 0, key length 18, a
 * key `p:` or `d:` and 16 hex digits (or 42, a `b:` or `a:` key) (then, for a put, its value when it is all there), and puts
 * of `m:state`.
 */
function findOps(data: Buffer): LogOp[] {
  const ops: LogOp[] = []
  for (let i = 0; i + 2 < data.length; i++) {
    const tag = data[i]
    if (tag !== 0 && tag !== 1) continue
    const length = data[i + 1] ?? 0
    const key = data.toString("latin1", i + 2, i + 2 + length)
    const known =
      length === KEY_LENGTH
        ? isEntryKey(key)
        : length === BATCH_KEY_LENGTH
          ? parseBatchKey(key) !== undefined
          : length === META.length && key === META
    if (!known) continue
    const end = i + 2 + length
    if (tag === 1) ops.push({ key, value: readSlice(data, end)?.bytes ?? Buffer.alloc(0) })
    else if (key !== META) ops.push({ key, value: undefined })
    i = end - 1
  }
  return ops
}

// ---------------------------------------------------------------------------------------------
// checksums

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[i] = c >>> 0
  }
  return table
})()

export function crc32c(buf: Buffer, start: number, end: number): number {
  let c = CRC_INIT
  for (let i = start; i < end; i++) c = crcByte(c, buf[i] ?? 0)
  return crcEnd(c)
}

/** A crc32c computed byte by byte: start from CRC_INIT, add bytes, then crcEnd(). */
export const CRC_INIT = 0xffffffff

export function crcByte(c: number, byte: number): number {
  return (CRC32C_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8)
}

export function crcEnd(c: number): number {
  return (c ^ 0xffffffff) >>> 0
}

export function unmask(masked: number): number {
  const rot = (masked - 0xa282ead8) >>> 0
  return ((rot >>> 17) | (rot << 15)) >>> 0
}

function allZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false
  return true
}
