/**
 * LevelDB's failures as the `PirateError`s they mean, and the advice in their messages: shared by
 * the journal, its open-time checks and its repair.
 */
import { PirateError, errorCode, errorMessage, type ErrorCode } from "../errors.js"

export function howToRecover(dir: string): string {
  return `copy the directory aside (cp -a ${dir} ${dir}.bak), then run "npx pirate journal repair ${dir}" (it keeps what can still be read), or move the directory away and start with a new journal`
}

/** What a journal was doing when LevelDB failed, for the messages of its errors. */
export type Doing = "open" | "reopen" | "read" | "write to"

const THEN: Record<Doing, string> = {
  open: "then open it again",
  reopen: "then retry: the journal tries to reopen it on the next call, no restart needed",
  read: "then retry",
  "write to": "then retry: the journal reopens its database for the next write, no restart needed",
}

export function openFailure(dir: string, err: unknown): PirateError {
  return levelFailure(dir, "open", err)
}

/**
 * What a LevelDB failure means, the one classification of this library's LevelDB stores (the
 * journal, its checks and repair, the worker's dedupe store): `"locked"` (another process or
 * instance holds it), `"full"` (the disk or a quota is full), `"corrupt"` (damage: there is
 * something to repair), else `"io"` (a failure that is not damage: permissions, a failing disk).
 */
export type LevelFailureKind = "locked" | "full" | "corrupt" | "io"

export function classifyLevelFailure(err: unknown): LevelFailureKind {
  const code = levelCode(err)
  if (code === "LEVEL_LOCKED") return "locked"
  if (isDiskFull(err)) return "full"
  if (code === "LEVEL_CORRUPTION" || /No such file|not found/i.test(levelMessage(err)))
    return "corrupt"
  return "io"
}

/** The error code of each {@link LevelFailureKind}. */
export const LEVEL_FAILURE_CODES = {
  locked: "PIRATE_JOURNAL_LOCKED",
  full: "PIRATE_JOURNAL_FULL",
  corrupt: "PIRATE_JOURNAL_CORRUPT",
  io: "PIRATE_JOURNAL_IO",
} as const satisfies Record<LevelFailureKind, ErrorCode>

/**
 * A LevelDB failure as the `PirateError` it means (see {@link classifyLevelFailure}):
 * `PIRATE_JOURNAL_LOCKED`, `PIRATE_JOURNAL_CORRUPT`, `PIRATE_JOURNAL_FULL` or `PIRATE_JOURNAL_IO`.
 * `cause` is the level (or system) error.
 */
export function levelFailure(dir: string, doing: Doing, err: unknown): PirateError {
  const kind = classifyLevelFailure(err)
  const cause = innermostLevelError(err)
  const message = levelMessage(err)
  const text: Record<LevelFailureKind, () => string> = {
    locked: () =>
      `the journal in ${dir} is held by a running sender (another process, or another LevelJournal in this one); stop it first, or give this one another directory`,
    full: () =>
      `cannot ${doing} the journal in ${dir}: its disk is full (${message}); free space on that disk or move the journal to a bigger one, ${THEN[doing]}`,
    corrupt: () => `the journal in ${dir} is damaged (${message}); ${howToRecover(dir)}`,
    io: () =>
      `cannot ${doing} the journal in ${dir} (${message}); check the disk and that the directory is readable and writable, ${THEN[doing]}`,
  }
  return new PirateError(LEVEL_FAILURE_CODES[kind], text[kind](), { cause })
}

/** True for ENOSPC and EDQUOT, as a system error or in a LevelDB status message. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = errorCode(e)
    if (code === "ENOSPC" || code === "EDQUOT") return true
    if (
      /No space left|not enough space on the disk|quota exceeded|disk (is )?full/i.test(e.message)
    )
      return true
  }
  return false
}

/**
 * True for a failure LevelDB reported (classic-level gives some a `LEVEL_` code and leaves the
 * others their status message), as opposed to an error of this library's own.
 */
export function fromLevelDb(err: unknown): boolean {
  const inner = innermostLevelError(err)
  return (
    levelCode(err)?.startsWith("LEVEL_") === true ||
    (inner instanceof Error &&
      /^(IO error|NotFound|Corruption|Invalid argument|Not implemented): /.test(inner.message))
  )
}

/** The `LEVEL_*` code of a level error, looking through `LEVEL_DATABASE_NOT_OPEN` wrappers. */
export function levelCode(err: unknown): string | undefined {
  const inner = innermostLevelError(err)
  return inner instanceof Error ? errorCode(inner) : undefined
}

export function innermostLevelError(err: unknown): unknown {
  let e = err
  while (e instanceof Error && e.cause instanceof Error) e = e.cause
  return e
}

/** The message of the innermost error (LevelDB's status message). */
export function levelMessage(err: unknown): string {
  return errorMessage(innermostLevelError(err))
}

export function corruptValue(dir: string, key: string, why: string): PirateError {
  return new PirateError(
    "PIRATE_JOURNAL_CORRUPT",
    `the journal in ${dir} holds a damaged entry under "${key}" (${why}); ${howToRecover(dir)}`,
  )
}
