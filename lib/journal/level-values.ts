/**
 * The value log of a `LevelJournal` (format 4): the values of batches (`b:` keys, see
 * level-batch.ts) are appended to segment files in the journal's `values/` directory, and LevelDB
 * keeps under the batch's key a pointer to them (segment, offset, length). LevelDB writes every
 * value twice (its log, then a table) and copies it again in compactions; a value in a segment is
 * written once and deleted with its segment, once no pointer into it is left.
 *
 * What LevelDB keeps of each segment is a record under `v:<segment>` with how many pointers into
 * it are stored (`live`) and how many bytes of it they may reach (`end`). It changes in the same
 * atomic write as the pointers, so the counts on disk always match the pointers; a segment whose
 * count reaches 0 loses its record in that write and its file after it. `open()` checks that the
 * file of every record is there and long enough, and deletes segment files no record names
 * (written by an append whose LevelDB write never happened).
 *
 * A value in a segment is byte for byte what LevelDB would have held (its kind, checksum and the
 * key it belongs under included), so reading it back checks it as before.
 */
import { closeSync, openSync, readSync } from "node:fs"
import { mkdir, open, readdir, stat, unlink, type FileHandle } from "node:fs/promises"
import { join } from "node:path"
import { debug } from "../debug.js"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { howToRecover, levelFailure } from "./level-errors.js"
import { addKey, removeKey, valueCrc, type Counters } from "./level-format.js"

/** The directory of the segments, inside the journal's. */
export const VALUES_DIR = "values"
/** The prefix of segment records. */
export const SEGMENT = "v:"
const SEGMENT_KEY_LENGTH = SEGMENT.length + 8
/** A segment takes appends until it holds this many bytes; then a new one starts. */
export const SEGMENT_BYTES = 64 * 1024 * 1024
/** The active segment is deleted once nothing in it is pending and it holds this much. */
export const RECLAIM_ACTIVE_AT = 4 * 1024 * 1024
/**
 * A segment other than the active one with this many batches left, or fewer, has them moved to
 * the active segment so that it can go: a slow message must not keep 64 MiB on disk.
 */
export const COMPACT_LIVE = 4
/** ... when it holds at least this much. */
const COMPACT_BYTES = RECLAIM_ACTIVE_AT
/** The first bytes of every segment file. */
const MAGIC = Buffer.from("ZPVALS01", "latin1")

// Pointer (kind 7): [kind u8][crc32 u32][segment u32][offset u48][length u32]. Segment record
// (kind 8): [kind u8][crc32 u32][segment u32][live u32][end u48]. The crc covers the kind byte and
// everything after the crc, as in the other values of the journal.
const KIND_POINTER = 7
const KIND_SEGMENT = 8
const POINTER_BYTES = 19
const RECORD_BYTES = 19

export interface Pointer {
  segment: number
  offset: number
  length: number
}

export function encodePointer(p: Pointer): Buffer {
  const buf = Buffer.allocUnsafe(POINTER_BYTES)
  buf[0] = KIND_POINTER
  buf.writeUInt32LE(p.segment, 5)
  buf.writeUIntLE(p.offset, 9, 6)
  buf.writeUInt32LE(p.length, 15)
  buf.writeUInt32LE(valueCrc(buf, KIND_POINTER), 1)
  return buf
}

/** True when `value` is a pointer (sound or not): its first byte says so. */
export function isPointer(value: Buffer): boolean {
  return value[0] === KIND_POINTER
}

/** The pointer `value` holds; a description of the damage instead. */
export function decodePointer(value: Buffer): Pointer | string {
  if (value.length !== POINTER_BYTES) return `pointer of ${value.length} bytes`
  if (value.readUInt32LE(1) !== valueCrc(value, KIND_POINTER)) return "checksum mismatch"
  const p = {
    segment: value.readUInt32LE(5),
    offset: value.readUIntLE(9, 6),
    length: value.readUInt32LE(15),
  }
  if (p.segment === 0 || p.offset < MAGIC.length) return "it points outside any segment"
  return p
}

export interface SegmentRecord {
  /** Pointers into it that LevelDB holds. */
  live: number
  /** The bytes of it that they may reach. */
  end: number
}

export function segmentKey(segment: number): string {
  return SEGMENT + segment.toString(16).padStart(8, "0")
}

/** The segment a `v:` key names; undefined for another key. */
export function parseSegmentKey(key: string): number | undefined {
  if (key.length !== SEGMENT_KEY_LENGTH || !key.startsWith(SEGMENT)) return undefined
  const hex = key.slice(SEGMENT.length)
  if (!/^[0-9a-f]{8}$/.test(hex)) return undefined
  const n = parseInt(hex, 16)
  return n > 0 ? n : undefined
}

export function encodeSegmentRecord(segment: number, r: SegmentRecord): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_BYTES)
  buf[0] = KIND_SEGMENT
  buf.writeUInt32LE(segment, 5)
  buf.writeUInt32LE(r.live, 9)
  buf.writeUIntLE(r.end, 13, 6)
  buf.writeUInt32LE(valueCrc(buf, KIND_SEGMENT), 1)
  return buf
}

export function decodeSegmentRecord(key: string, value: Buffer): SegmentRecord | string {
  if (value.length !== RECORD_BYTES || value[0] !== KIND_SEGMENT) return "not a segment record"
  if (value.readUInt32LE(1) !== valueCrc(value, KIND_SEGMENT)) return "checksum mismatch"
  if (parseSegmentKey(key) !== value.readUInt32LE(5))
    return "the record belongs to another key: the key is damaged"
  return { live: value.readUInt32LE(9), end: value.readUIntLE(13, 6) }
}

function fileName(segment: number): string {
  return `${String(segment).padStart(6, "0")}.vlog`
}

function segmentOf(name: string): number | undefined {
  const m = /^(\d{6,})\.vlog$/.exec(name)
  return m ? Number(m[1]) : undefined
}

/** The changes one write makes to the segments: new pointers, pointers gone, the active end. */
export class SegmentChanges {
  readonly delta = new Map<number, number>()
  /** The active segment and its end after this write's appends, when it appended. */
  end: { segment: number; end: number } | undefined

  add(segment: number, n = 1): void {
    this.delta.set(segment, (this.delta.get(segment) ?? 0) + n)
  }

  drop(segment: number): void {
    this.add(segment, -1)
  }
}

interface Active {
  segment: number
  file: FileHandle
  end: number
  /** Whether its directory entry is synced (done before the first synced write into it). */
  synced: boolean
}

export class ValueLog {
  readonly #dir: string
  readonly #journal: string
  /** The records as committed. */
  #records = new Map<number, SegmentRecord>()
  #active: Active | undefined
  /** Segments never to append to again (a write into them failed, or they were full). */
  #highest = 0
  readonly #readers = new Map<number, Promise<FileHandle>>()
  /** Segments deleted by this process: a read of one finds its batch gone, not damaged. */
  readonly #deleted = new Set<number>()
  /** Retired segments with no pointer left: their records go with the next write. */
  readonly #sweep = new Set<number>()
  /** Segments a compaction skipped, with their counts then. */
  readonly #tried = new Map<number, number>()
  /** The most batches each segment has held (since the journal opened). */
  readonly #peak = new Map<number, number>()

  /** @param journal - the journal's directory */
  constructor(journal: string) {
    this.#journal = journal
    this.#dir = join(journal, VALUES_DIR)
  }

  /** The segments and their records (tests, tools). */
  get records(): ReadonlyMap<number, SegmentRecord> {
    return this.#records
  }

  /**
   * Takes the committed records (all `v:` values), checks that each one's file is there and long
   * enough, and deletes the segment files that no record names.
   *
   * @throws PirateError `PIRATE_JOURNAL_CORRUPT` naming a segment that is missing or cut short
   */
  async load(rows: readonly [string, Buffer | undefined][]): Promise<void> {
    const records = this.#parse(rows)
    let names: string[] = []
    try {
      names = await readdir(this.#dir)
    } catch (err) {
      if (errorCode(err) !== "ENOENT") throw err
    }
    const files = new Map<number, string>()
    for (const name of names) {
      const n = segmentOf(name)
      if (n !== undefined) files.set(n, name)
    }
    for (const [segment, r] of records) {
      const name = files.get(segment)
      const size =
        name === undefined
          ? undefined
          : await stat(join(this.#dir, name)).then(
              (s) => s.size,
              () => undefined,
            )
      if (size === undefined)
        throw this.#damaged(
          `its value segment ${VALUES_DIR}/${fileName(segment)} is missing, with ${r.live} ${r.live === 1 ? "batch" : "batches"} in it`,
        )
      if (size < r.end)
        throw this.#damaged(
          `its value segment ${VALUES_DIR}/${fileName(segment)} is cut short: ${size} bytes where ${r.end} were written`,
        )
    }
    for (const [segment, name] of files) {
      this.#highest = Math.max(this.#highest, segment)
      if (records.has(segment)) continue
      debug("journal %s: deleting value segment %s, which holds no batch", this.#journal, name)
      await unlink(join(this.#dir, name)).catch(() => undefined)
    }
    for (const [segment, r] of records) {
      this.#highest = Math.max(this.#highest, segment)
      this.#peak.set(segment, r.live)
      if (r.live === 0) this.#sweep.add(segment)
    }
    this.#records = records
  }

  /**
   * Appends values to the active segment (a new one when there is none or it is full), synced
   * when `sync`; returns their pointers. Nothing changes in the records until `applied()`.
   */
  async append(
    values: readonly { parts: readonly Buffer[]; length: number }[],
    sync: boolean,
    changes: SegmentChanges,
  ): Promise<Pointer[]> {
    let bytes = 0
    for (const v of values) bytes += v.length
    let active = this.#active
    if (active === undefined || (active.end > MAGIC.length && active.end + bytes > SEGMENT_BYTES)) {
      if (active !== undefined) this.#retire(active)
      active = await this.#create().catch((err: unknown) => {
        throw levelFailure(this.#journal, "write to", err)
      })
    }
    const at = active.end
    try {
      if (sync && !active.synced) {
        await syncDir(this.#dir)
        active.synced = true
      }
      await writeAll(
        active.file,
        values.flatMap((v) => v.parts),
        at,
      )
      if (sync) await active.file.datasync()
    } catch (err) {
      // Never write into it again: what the failed write left there may be referenced after all.
      this.#retire(active)
      throw levelFailure(this.#journal, "write to", err)
    }
    active.end = at + bytes
    const pointers: Pointer[] = []
    let offset = at
    for (const v of values) {
      pointers.push({ segment: active.segment, offset, length: v.length })
      offset += v.length
    }
    changes.add(active.segment, values.length)
    changes.end = { segment: active.segment, end: active.end }
    return pointers
  }

  /**
   * Adds to a write the puts and deletes of the records its changes touch (and to `next` their
   * keys); returns the segments whose files go once the write is committed.
   */
  ops(
    changes: SegmentChanges,
    ops: { type: "put" | "del"; key: string; value?: Buffer }[],
    next: Counters,
  ): number[] {
    const gone: number[] = []
    for (const segment of this.#sweep)
      if (!changes.delta.has(segment)) changes.delta.set(segment, 0)
    for (const [segment, delta] of changes.delta) {
      const old = this.#records.get(segment)
      const live = (old?.live ?? 0) + delta
      const end = changes.end?.segment === segment ? changes.end.end : (old?.end ?? 0)
      const key = segmentKey(segment)
      // An empty active segment is kept for the next appends while it is small: a new file per
      // group commit would cost more than the few MiB it holds.
      const keep = segment === this.#active?.segment && end < RECLAIM_ACTIVE_AT
      if (live <= 0 && !keep) {
        if (old !== undefined) {
          ops.push({ type: "del", key })
          next.keySum = removeKey(next.keySum, key)
        }
        gone.push(segment)
        continue
      }
      if (old === undefined) next.keySum = addKey(next.keySum, key)
      ops.push({
        type: "put",
        key,
        value: encodeSegmentRecord(segment, { live: Math.max(0, live), end }),
      })
    }
    return gone
  }

  /** Makes a committed write's changes the records', and deletes the files of `gone`. */
  applied(changes: SegmentChanges, gone: readonly number[]): void {
    for (const [segment, delta] of changes.delta) {
      const old = this.#records.get(segment)
      const end = changes.end?.segment === segment ? changes.end.end : (old?.end ?? 0)
      const live = Math.max(0, (old?.live ?? 0) + delta)
      this.#records.set(segment, { live, end })
      if (live > (this.#peak.get(segment) ?? 0)) this.#peak.set(segment, live)
    }
    for (const segment of gone) {
      this.#sweep.delete(segment)
      const active = this.#active
      if (active?.segment === segment) {
        // Every batch in it is gone: a new one starts with the next append.
        this.#active = undefined
        void active.file.close().catch(() => undefined)
      }
      this.#delete(segment)
    }
  }

  /**
   * Segments worth compacting (see COMPACT_LIVE), each with its count of batches; one that could
   * not be compacted is not offered again until its count changes.
   */
  compactable(): Map<number, number> {
    const out = new Map<number, number>()
    for (const [segment, r] of this.#records) {
      if (segment === this.#active?.segment || r.live === 0 || r.live > COMPACT_LIVE) continue
      // Only a segment most of whose batches are gone: moving a full one would only copy it.
      if (r.live * 4 > (this.#peak.get(segment) ?? r.live)) continue
      if (r.end < COMPACT_BYTES || this.#tried.get(segment) === r.live) continue
      out.set(segment, r.live)
    }
    return out
  }

  /** A compaction of `segment` was tried with `live` batches in it. */
  tried(segment: number, live: number): void {
    this.#tried.set(segment, live)
  }

  /** The records are read again from disk (after a failed write, which may have been kept). */
  reload(rows: readonly [string, Buffer | undefined][]): void {
    this.#records = this.#parse(rows)
  }

  #parse(rows: readonly [string, Buffer | undefined][]): Map<number, SegmentRecord> {
    const records = new Map<number, SegmentRecord>()
    for (const [key, value] of rows) {
      const r = value === undefined ? "it is missing" : decodeSegmentRecord(key, value)
      if (typeof r === "string") throw this.#damaged(`its segment record ${key}: ${r}`)
      records.set(parseSegmentKey(key) as number, r)
    }
    return records
  }

  /** The value a pointer points to; undefined when its segment was deleted meanwhile. */
  async read(p: Pointer): Promise<Buffer | undefined> {
    let reader = this.#readers.get(p.segment)
    if (reader === undefined) {
      reader = open(join(this.#dir, fileName(p.segment)), "r")
      this.#readers.set(p.segment, reader)
      reader.catch(() => this.#readers.delete(p.segment))
    }
    let file: FileHandle
    try {
      file = await reader
    } catch (err) {
      if (this.#deleted.has(p.segment)) return undefined
      if (errorCode(err) === "ENOENT")
        throw this.#damaged(`its value segment ${VALUES_DIR}/${fileName(p.segment)} is missing`)
      throw err
    }
    const buf = Buffer.allocUnsafe(p.length)
    try {
      const { bytesRead } = await file.read(buf, 0, p.length, p.offset)
      return bytesRead === p.length ? buf : buf.subarray(0, bytesRead)
    } catch (err) {
      if (this.#deleted.has(p.segment)) return undefined // closed as it was deleted
      throw err
    }
  }

  /** Closes every file. */
  async close(): Promise<void> {
    const active = this.#active
    this.#active = undefined
    if (active) await active.file.close().catch(() => undefined)
    const readers = [...this.#readers.values()]
    this.#readers.clear()
    for (const r of readers) await (await r.catch(() => undefined))?.close().catch(() => undefined)
  }

  async #create(): Promise<Active> {
    await mkdir(this.#dir, { recursive: true })
    const segment = ++this.#highest
    const file = await open(join(this.#dir, fileName(segment)), "wx+")
    try {
      await file.write(MAGIC, 0, MAGIC.length, 0)
    } catch (err) {
      await file.close().catch(() => undefined)
      await unlink(join(this.#dir, fileName(segment))).catch(() => undefined)
      throw err
    }
    const active: Active = { segment, file, end: MAGIC.length, synced: false }
    this.#active = active
    return active
  }

  /** Stops appending to a segment; deletes it at once when nothing points into it. */
  #retire(active: Active): void {
    if (this.#active === active) this.#active = undefined
    void active.file.close().catch(() => undefined)
    // A segment with no record is left to the next open (which deletes it when no record names
    // it then): a failed write may have been kept after all, and pointed into it.
    if ((this.#records.get(active.segment)?.live ?? 1) === 0) this.#sweep.add(active.segment)
  }

  #delete(segment: number): void {
    this.#tried.delete(segment)
    this.#peak.delete(segment)
    this.#deleted.add(segment)
    // Only a read that raced with the deletion asks: the last few are enough.
    if (this.#deleted.size > 256)
      this.#deleted.delete(this.#deleted.values().next().value as number)
    this.#records.delete(segment)
    const reader = this.#readers.get(segment)
    this.#readers.delete(segment)
    void reader?.then((f) => f.close()).catch(() => undefined)
    void unlink(join(this.#dir, fileName(segment))).catch((err: unknown) =>
      debug(
        "journal %s: value segment %d not deleted: %s",
        this.#journal,
        segment,
        errorMessage(err),
      ),
    )
  }

  #damaged(what: string): PirateError {
    return new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${this.#journal} is damaged (${what}); ${howToRecover(this.#journal)}`,
    )
  }
}

/**
 * Reads a pointed value synchronously (repair, an offline tool); a description of why it cannot
 * be read instead.
 */
export function readPointedSync(journal: string, p: Pointer): Buffer | string {
  let fd: number
  try {
    fd = openSync(join(journal, VALUES_DIR, fileName(p.segment)), "r")
  } catch (err) {
    return `its value segment ${VALUES_DIR}/${fileName(p.segment)} cannot be read (${errorMessage(err)})`
  }
  try {
    const buf = Buffer.alloc(p.length)
    const n = readSync(fd, buf, 0, p.length, p.offset)
    if (n !== p.length) return `its value segment ${VALUES_DIR}/${fileName(p.segment)} is cut short`
    return buf
  } finally {
    closeSync(fd)
  }
}

/**
 * A value as LevelDB would hold it inline: what a pointer points to (read synchronously, for
 * repair), any other value as it is; a description of why a pointed value cannot be read.
 */
export function inlineValue(journal: string, value: Buffer): Buffer | string {
  if (!isPointer(value)) return value
  const p = decodePointer(value)
  if (typeof p === "string") return `its pointer: ${p}`
  return readPointedSync(journal, p)
}

/** The segment files in a journal's value directory, by number. */
export async function segmentFiles(journal: string): Promise<Map<number, string>> {
  const out = new Map<number, string>()
  const names = await readdir(join(journal, VALUES_DIR)).catch(() => [] as string[])
  for (const name of names) {
    const n = segmentOf(name)
    if (n !== undefined) out.set(n, join(journal, VALUES_DIR, name))
  }
  return out
}

/** Writes every buffer at `position` on, one after the other, however many calls it takes. */
async function writeAll(
  file: FileHandle,
  buffers: readonly Buffer[],
  position: number,
): Promise<void> {
  const rest = buffers.slice()
  let at = position
  while (rest.length > 0) {
    const { bytesWritten } = await file.writev(rest, at)
    if (bytesWritten === 0) throw new Error("a value segment took no bytes")
    at += bytesWritten
    let n = bytesWritten
    while (n > 0 && rest.length > 0) {
      const first = rest[0] as Buffer
      if (first.length <= n) {
        n -= first.length
        rest.shift()
      } else {
        rest[0] = first.subarray(n)
        n = 0
      }
    }
  }
}

/** Syncs a directory, so that a file created or deleted in it stays so after a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r")
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
