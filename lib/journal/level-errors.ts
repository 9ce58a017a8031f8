/**
 * LevelDB's failures as the `PirateError`s they mean, and the advice in their messages: shared by
 * the journal, its open-time checks and its repair.
 */
import { PirateError, errorMessage } from "../errors.js"

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
 * A LevelDB failure as the `PirateError` it means: `PIRATE_JOURNAL_LOCKED`, `PIRATE_JOURNAL_CORRUPT`
 * (damage: there is something to repair), `PIRATE_JOURNAL_FULL` (the disk or a quota is full),
 * else `PIRATE_JOURNAL_IO`. `cause` is the level (or system) error.
 */
export function levelFailure(dir: string, doing: Doing, err: unknown): PirateError {
  const code = levelCode(err)
  const cause = innermostLevelError(err)
  if (code === "LEVEL_LOCKED") {
    return new PirateError(
      "PIRATE_JOURNAL_LOCKED",
      `the journal in ${dir} is held by a running sender (another process, or another LevelJournal in this one); stop it first, or give this one another directory`,
      { cause },
    )
  }
  const message = levelMessage(err)
  if (isDiskFull(err)) {
    return new PirateError(
      "PIRATE_JOURNAL_FULL",
      `cannot ${doing} the journal in ${dir}: its disk is full (${message}); free space on that disk or move the journal to a bigger one, ${THEN[doing]}`,
      { cause },
    )
  }
  if (code === "LEVEL_CORRUPTION" || /No such file|not found/i.test(message)) {
    return new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `the journal in ${dir} is damaged (${message}); ${howToRecover(dir)}`,
      { cause },
    )
  }
  return new PirateError(
    "PIRATE_JOURNAL_IO",
    `cannot ${doing} the journal in ${dir} (${message}); check the disk and that the directory is readable and writable, ${THEN[doing]}`,
    { cause },
  )
}

/** True for ENOSPC and EDQUOT, as a system error or in a LevelDB status message. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code
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
  return inner instanceof Error && "code" in inner && typeof inner.code === "string"
    ? inner.code
    : undefined
}

function innermostLevelError(err: unknown): unknown {
  let e = err
  while (e instanceof Error && e.cause instanceof Error) e = e.cause
  return e
}

function levelMessage(err: unknown): string {
  return errorMessage(innermostLevelError(err))
}

export function corruptValue(dir: string, key: string, why: string): PirateError {
  return new PirateError(
    "PIRATE_JOURNAL_CORRUPT",
    `the journal in ${dir} holds a damaged entry under "${key}" (${why}); ${howToRecover(dir)}`,
  )
}
