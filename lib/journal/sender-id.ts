/**
 * The identity a sender announces to its workers (the `sender` key of WELCOME), kept with its
 * journal so that it survives restarts: a worker's dedupe store keys completed messages on it,
 * whatever address the worker used to reach the sender.
 */
import { randomBytes } from "node:crypto"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { SENDER_ID_FILE, writeSenderIdFile } from "./level-sender-id.js"
import { LevelJournal } from "./level.js"
import type { Journal } from "./types.js"

export { SENDER_ID_FILE }

const SENDER_ID = /^[0-9a-f]{32}$/

/** A new random sender id: 32 lower-case hex digits (128 bits). */
export function newSenderId(): string {
  return randomBytes(16).toString("hex")
}

/**
 * The sender id of a journal: its own `senderId()` when it has one, the one kept in a
 * `LevelJournal`'s directory (created on first use), or else a new one for this process (a
 * journal of your own without `senderId()` gets a new identity on each start).
 * Call it once the journal is open: the journal's lock keeps two processes from creating it.
 * @throws PirateError `PIRATE_JOURNAL_IO` when the file cannot be read or written,
 *   `PIRATE_JOURNAL_CORRUPT` when it does not hold an id
 */
export async function journalSenderId(journal: Journal): Promise<string> {
  if (journal.senderId) return journal.senderId()
  if (journal instanceof LevelJournal) return senderIdIn(journal.path)
  return newSenderId()
}

/** Reads the sender id kept in `dir`, or creates one there (written atomically and synced). */
export async function senderIdIn(dir: string): Promise<string> {
  const file = join(dir, SENDER_ID_FILE)
  let text: string | undefined
  try {
    text = (await readFile(file, "latin1")).trim()
  } catch (err) {
    if (errorCode(err) !== "ENOENT") throw ioError(file, err)
  }
  if (text !== undefined) {
    if (SENDER_ID.test(text)) return text
    throw new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `${file} does not hold a sender id (32 hex digits); delete it to give this sender a new identity (workers' dedupe records of the old one will then no longer match)`,
    )
  }
  const id = newSenderId()
  try {
    await writeSenderIdFile(dir, id)
  } catch (err) {
    throw ioError(file, err)
  }
  return id
}

function ioError(file: string, err: unknown): PirateError {
  return new PirateError(
    "PIRATE_JOURNAL_IO",
    `cannot keep the sender id in ${file}: ${errorMessage(err)}; check the journal directory's permissions and free space`,
    { cause: err },
  )
}
