/**
 * The pair file (docs/pair.md, section 6.4): what a node of a sender pair keeps of the pair
 * across restarts, next to its journal. Its format, its reading, and `PairFileStore`, which holds
 * it in memory and writes it atomically (a temporary file renamed), one write at a time.
 */
import { open, readFile, rename } from "node:fs/promises"
import { join } from "node:path"
import { PirateError, errorCode, errorMessage } from "../errors.js"

/** The pair file's name, next to the journal (docs/pair.md, section 6.4). */
export const PAIR_FILE = "PAIR"

/** What a node keeps of the pair across restarts (docs/pair.md, section 6.4). */
export interface PairFile {
  /** The pair's epoch as this node last knew it (section 2.3). */
  epoch: number
  /** The stream this node last applied as a passive; absent after it was active or mid-copy. */
  stream?: string
  /**
   * The last seq of `stream` in the journal; the log holds the records after it that the passive
   * acked (section 3.6).
   */
  applied: number
  /** The greatest of this node's own ids that the peer holds (section 3.5). */
  watermark?: string
  /** The pair's sender id (section 6.2). */
  sender?: string
  /**
   * The greatest id this node's journal may not show though it held it: a full copy's COPY_END
   * `lastId`, or an id appended and acked while the passive held it (section 3.6). This node's
   * ids stay above it.
   */
  lastId?: string
}

/** The pair file is written at most this often while the stream moves. */
const SAVE_DELAY = 100

/**
 * A node's pair file: `file` in memory, written to `dir` at transitions (`save()`) and at most
 * every 100 ms while the stream moves (`saveSoon()`); with no `dir`, in memory only.
 */
export class PairFileStore {
  file: PairFile = { epoch: 0, applied: 0 }
  readonly #dir: string | undefined
  readonly #sync: boolean
  readonly #epoch: () => number
  readonly #onError: (err: Error) => void
  #saveTimer: NodeJS.Timeout | undefined
  #saving: Promise<void> = Promise.resolve()

  /**
   * @param epoch - the link's epoch, written with the file when greater
   * @param onError - a write that failed (`PIRATE_JOURNAL_IO`)
   */
  constructor(
    dir: string | undefined,
    options: { sync: boolean; epoch: () => number; onError: (err: Error) => void },
  ) {
    this.#dir = dir
    this.#sync = options.sync
    this.#epoch = options.epoch
    this.#onError = options.onError
  }

  /**
   * Reads the file kept in `dir`, if any, keeping the greater epoch.
   * @throws PirateError as `readPairFile()`
   */
  async load(): Promise<void> {
    if (this.#dir === undefined) return
    const file = await readPairFile(this.#dir)
    if (file !== undefined) this.file = { ...file, epoch: Math.max(file.epoch, this.file.epoch) }
  }

  saveSoon(): void {
    if (this.#saveTimer !== undefined || this.#dir === undefined) return
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined
      void this.save()
    }, SAVE_DELAY)
  }

  /** Writes the pair file (one write at a time, each of the state at its start). */
  save(): Promise<void> {
    const dir = this.#dir
    if (dir === undefined) return Promise.resolve()
    clearTimeout(this.#saveTimer)
    this.#saveTimer = undefined
    const run = this.#saving.then(async () => {
      this.file.epoch = Math.max(this.file.epoch, this.#epoch())
      try {
        await writePairFile(dir, this.file, this.#sync)
      } catch (err) {
        this.#onError(
          new PirateError(
            "PIRATE_JOURNAL_IO",
            `cannot write the pair file in ${dir}: ${errorMessage(err)}`,
            { cause: err },
          ),
        )
      }
    })
    this.#saving = run
    return run
  }
}

/**
 * Reads the pair file kept in `dir` (docs/pair.md, section 6.4).
 * @returns undefined when there is none
 * @throws PirateError `PIRATE_JOURNAL_CORRUPT` when it does not hold a pair file,
 *   `PIRATE_JOURNAL_IO` when it cannot be read
 */
export async function readPairFile(dir: string): Promise<PairFile | undefined> {
  const file = join(dir, PAIR_FILE)
  let text: string
  try {
    text = await readFile(file, "utf8")
  } catch (err) {
    if (errorCode(err) === "ENOENT") return undefined
    throw new PirateError("PIRATE_JOURNAL_IO", `cannot read ${file}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  const corrupt = (): PirateError =>
    new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `${file} does not hold a pair file; delete it (this node then hands over more and catches up by a full copy)`,
    )
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw corrupt()
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw corrupt()
  const m = v as Record<string, unknown>
  const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
  const isStr = (x: unknown): boolean => x === undefined || typeof x === "string"
  if (!isCount(m["epoch"]) || !isCount(m["applied"])) throw corrupt()
  if (!isStr(m["stream"]) || !isStr(m["watermark"]) || !isStr(m["sender"]) || !isStr(m["lastId"]))
    throw corrupt()
  const out: PairFile = { epoch: m["epoch"], applied: m["applied"] }
  for (const key of ["stream", "watermark", "sender", "lastId"] as const) {
    const value = m[key]
    if (typeof value === "string") out[key] = value
  }
  return out
}

/** Writes the pair file atomically (a temporary file renamed), synced when `sync`. */
async function writePairFile(dir: string, pair: PairFile, sync: boolean): Promise<void> {
  const file = join(dir, PAIR_FILE)
  const tmp = `${file}.tmp`
  const handle = await open(tmp, "w")
  try {
    await handle.writeFile(`${JSON.stringify(pair)}\n`, "utf8")
    if (sync) await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, file)
  if (sync) {
    const d = await open(dir, "r")
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  }
}
