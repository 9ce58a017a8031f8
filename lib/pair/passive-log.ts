/**
 * The passive's log of the stream (docs/pair.md, section 3.6): each RECORDS body the passive
 * acks is first appended here, as it came, so that the ack means "written" (synced with
 * `pair.sync`) without a journal write per record. The journal takes the records later, in one
 * go, with the changes that cancel out left out (see held-records.ts); the log's segments go once
 * the pair file says the journal holds what they held.
 *
 * Files: `<journal>/pair-log/<n>.log`, n growing by one per segment. A segment starts with
 * [magic 8 bytes]["stream" length u8][stream, ascii], then holds entries
 * [body length u32][first seq f64][crc32 u32 of the first seq's 8 bytes and the body][body].
 * A cut entry at the end of a segment is a write that never completed (a crash, a full disk: the
 * next write starts a new segment), so it was never acked: not damage. A segment whose checksum
 * fails is damage: it is renamed `<n>.log.damaged` and reported.
 */
import { mkdir, open, readFile, readdir, rename, unlink, type FileHandle } from "node:fs/promises"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import { PirateError, errorMessage } from "../errors.js"
import { isDiskFull } from "../journal/level-errors.js"
import { syncDir } from "../journal/level-values.js"

export const PAIR_LOG_DIR = "pair-log"
const MAGIC = Buffer.from("PPLOG\x00\x00\x01", "latin1")
const ENTRY_HEAD = 4 + 8 + 4

/** A RECORDS body read back: its records are numbered from `first`. */
export interface LoggedBody {
  first: number
  body: Buffer
}

interface Segment {
  n: number
  path: string
  /** The seq of the last record it holds. */
  last: number
}

function segmentName(n: number): string {
  return `${String(n).padStart(12, "0")}.log`
}

/** The passive's log: segments in `<dir>/pair-log`; with no `dir`, nothing is kept. */
export class PassiveLog {
  readonly #dir: string | undefined
  readonly #sync: boolean
  /** Segments written before the last `rotate()`: deleted by `removeRotated()`. */
  #rotated: Segment[] = []
  #current: { segment: Segment; handle: FileHandle; stream: string } | undefined
  #next = 1
  #dirMade = false

  constructor(dir: string | undefined, options: { sync: boolean }) {
    this.#dir = dir === undefined ? undefined : join(dir, PAIR_LOG_DIR)
    this.#sync = options.sync
  }

  /**
   * The bodies the segments hold for `stream`, in order; segments of another stream are
   * deleted. Stops at damage (an entry whose checksum fails), described in `damage`: the bodies
   * after it are not given, and the damaged segment is renamed `<n>.log.damaged`.
   */
  async recover(stream: string | undefined): Promise<{ bodies: LoggedBody[]; damage?: string }> {
    const dir = this.#dir
    if (dir === undefined) return { bodies: [] }
    let names: string[]
    try {
      names = (await readdir(dir)).filter((n) => /^\d{12}\.log$/.test(n)).sort()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { bodies: [] }
      throw logError(dir, "read", err)
    }
    const bodies: LoggedBody[] = []
    let damage: string | undefined
    for (const name of names) {
      const n = Number(name.slice(0, 12))
      this.#next = Math.max(this.#next, n + 1)
      const segment = { n, path: join(dir, name), last: Infinity }
      if (damage !== undefined) {
        this.#rotated.push(segment)
        continue
      }
      const buf = await readFile(segment.path).catch((err: unknown) => {
        throw logError(dir, "read", err)
      })
      const read = readSegment(buf, stream)
      if (read.damage !== undefined) {
        // Kept aside for a look, out of the way of the next start.
        damage = `${segment.path}.damaged: ${read.damage}`
        await rename(segment.path, `${segment.path}.damaged`).catch((err: unknown) => {
          throw logError(dir, "read", err)
        })
      } else this.#rotated.push(segment)
      if (read.stream === stream) bodies.push(...read.bodies)
    }
    return damage === undefined ? { bodies } : { bodies, damage }
  }

  /** Appends a RECORDS body of `stream`, its records `first` to `last` (synced with `pair.sync`). */
  async append(stream: string, first: number, body: Buffer, last: number): Promise<void> {
    const dir = this.#dir
    if (dir === undefined) return
    try {
      const current = await this.#segmentFor(dir, stream)
      const head = Buffer.allocUnsafe(ENTRY_HEAD)
      head.writeUInt32LE(body.length, 0)
      head.writeDoubleLE(first, 4)
      head.writeUInt32LE(crc32(body, crc32(head.subarray(4, 12))), 12)
      current.segment.last = last
      await current.handle.writev([head, body])
      if (this.#sync) await current.handle.datasync()
    } catch (err) {
      // What this segment holds after a failed write is unknown: the next append starts another.
      this.rotate()
      throw logError(dir, "write", err)
    }
  }

  async #segmentFor(
    dir: string,
    stream: string,
  ): Promise<{ handle: FileHandle; stream: string; segment: Segment }> {
    if (this.#current?.stream === stream) return this.#current
    this.rotate()
    if (!this.#dirMade) {
      await mkdir(dir, { recursive: true })
      this.#dirMade = true
    }
    let segment: Segment
    let handle: FileHandle
    for (;;) {
      segment = { n: this.#next, path: join(dir, segmentName(this.#next)), last: 0 }
      this.#next++
      try {
        handle = await open(segment.path, "wx")
        break
      } catch (err) {
        // A segment this log did not read (a number taken): the next one.
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err
      }
    }
    this.#current = { segment, handle, stream }
    const id = Buffer.from(stream, "latin1")
    await handle.writev([MAGIC, Buffer.from([id.length]), id])
    if (this.#sync) {
      await handle.datasync()
      await syncDir(dir)
    }
    return this.#current
  }

  /** The next append starts a new segment; the ones before it can go (see `removeRotated()`). */
  rotate(): void {
    const current = this.#current
    if (current === undefined) return
    this.#current = undefined
    this.#rotated.push(current.segment)
    void current.handle.close().catch(() => undefined)
  }

  /**
   * Deletes the segments written before the last `rotate()` whose records are all at or below
   * seq `upTo` (the journal holds them); `Infinity`: all of them.
   */
  async removeRotated(upTo: number): Promise<void> {
    const dir = this.#dir
    const gone = this.#rotated.filter((s) => upTo === Infinity || s.last <= upTo)
    this.#rotated = this.#rotated.filter((s) => !gone.includes(s))
    if (dir === undefined || gone.length === 0) return
    for (const s of gone) {
      await unlink(s.path).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw logError(dir, "delete", err)
      })
    }
    if (this.#sync) await syncDir(dir)
  }

  /** Closes the current segment (it stays, for the next start to read). */
  async close(): Promise<void> {
    const current = this.#current
    this.#current = undefined
    if (current !== undefined) {
      this.#rotated.push(current.segment)
      await current.handle.close().catch(() => undefined)
    }
  }
}

/**
 * A segment's stream and bodies (see the file's comment). A segment cut in its header (its
 * creation interrupted) holds nothing; one cut in an entry holds the entries before it.
 */
function readSegment(
  buf: Buffer,
  wanted: string | undefined,
): { stream: string | undefined; bodies: LoggedBody[]; damage?: string } {
  if (buf.length < MAGIC.length + 1) return { stream: wanted, bodies: [] }
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC))
    return { stream: wanted, bodies: [], damage: "not a pair log segment (its magic is wrong)" }
  const idEnd = MAGIC.length + 1 + (buf[MAGIC.length] as number)
  if (buf.length < idEnd) return { stream: wanted, bodies: [] }
  const stream = buf.toString("latin1", MAGIC.length + 1, idEnd)
  const bodies: LoggedBody[] = []
  let off = idEnd
  while (off < buf.length) {
    const end = off + ENTRY_HEAD + (buf.length >= off + 4 ? buf.readUInt32LE(off) : 0)
    if (buf.length < off + ENTRY_HEAD || buf.length < end) return { stream, bodies }
    const body = buf.subarray(off + ENTRY_HEAD, end)
    const crc = crc32(body, crc32(buf.subarray(off + 4, off + 12)))
    if (crc !== buf.readUInt32LE(off + 12))
      return { stream, bodies, damage: `the entry at byte ${off} fails its checksum` }
    const first = buf.readDoubleLE(off + 4)
    if (!Number.isSafeInteger(first) || first < 1)
      return { stream, bodies, damage: `the entry at byte ${off} has no valid seq` }
    bodies.push({ first, body })
    off = end
  }
  return { stream, bodies }
}

function logError(dir: string, doing: "read" | "write" | "delete", err: unknown): PirateError {
  const full = doing === "write" && isDiskFull(err)
  return new PirateError(
    full ? "PIRATE_JOURNAL_FULL" : "PIRATE_JOURNAL_IO",
    `cannot ${doing} the pair's log in ${dir}: ${errorMessage(err)}${full ? "; free some space: the passive acks nothing meanwhile" : ""}`,
    { cause: err },
  )
}
