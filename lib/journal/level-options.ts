/** The options of a `LevelJournal`, and their checks. */
import { resolve } from "node:path"
import { assertKnownOptions, assertNonNegativeInt, describe } from "../validate.js"
import { MIN_BATCH } from "./level-batch-store.js"

/** Options of `LevelJournal`. */
export interface LevelJournalOptions {
  /** Directory of the LevelDB database; created (recursively) when missing. */
  path: string
  /**
   * Appends of at least this many new entries are stored as one batch (one value, see
   * docs/journal.md); smaller ones as one value per entry. Default 8; `Infinity` stores every
   * entry under a key of its own, as format 2 did (slower, but a damaged value loses one entry).
   */
  minBatch?: number
}

/** The option names of {@link LevelJournalOptions}, to refuse unknown ones. */
const LEVEL_JOURNAL_OPTIONS = { path: true, minBatch: true } satisfies Record<
  keyof LevelJournalOptions,
  true
>

/**
 * Checks a `LevelJournal`'s options (a directory, or {@link LevelJournalOptions}).
 *
 * @returns the absolute path and the batch threshold
 * @throws TypeError when the path is not a non-empty string, or for an unknown option;
 *   TypeError or RangeError for a wrong `minBatch`
 */
export function resolveLevelJournalOptions(options: string | LevelJournalOptions): {
  path: string
  minBatch: number
} {
  const isObject = typeof options === "object" && (options as unknown) !== null
  if (isObject) assertKnownOptions("LevelJournal", options, LEVEL_JOURNAL_OPTIONS)
  const path: unknown = isObject ? options.path : options
  if (typeof path !== "string" || path === "") {
    throw new TypeError(`'path' must be a non-empty string, got ${describe(path)}`)
  }
  const minBatch: unknown = isObject ? options.minBatch : undefined
  if (minBatch === undefined) return { path: resolve(path), minBatch: MIN_BATCH }
  if (minBatch !== Infinity) assertNonNegativeInt("minBatch", minBatch)
  return { path: resolve(path), minBatch: Math.max(1, minBatch) }
}
