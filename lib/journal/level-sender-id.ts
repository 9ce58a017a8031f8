/**
 * The file that keeps a `LevelJournal`'s sender id (see sender-id.ts), written atomically and
 * synced: a temporary file, renamed, then the directory synced.
 */
import { open, rename } from "node:fs/promises"
import { join } from "node:path"
import { describe } from "../validate.js"

/** The file in a `LevelJournal`'s directory that holds the sender id. */
export const SENDER_ID_FILE = "SENDER_ID"

/**
 * Checks a sender id: 32 lower-case hex digits.
 * @throws TypeError naming the argument
 */
export function checkSenderId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id))
    throw new TypeError(`'id' must be 32 lower-case hex digits, got ${describe(id)}`)
}

/** Writes `id` as the sender id kept in `dir`; fs errors are left to the caller. */
export async function writeSenderIdFile(dir: string, id: string): Promise<void> {
  const file = join(dir, SENDER_ID_FILE)
  const tmp = `${file}.tmp`
  const handle = await open(tmp, "w")
  try {
    await handle.writeFile(`${id}\n`, "latin1")
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, file)
  // The rename is durable once the directory is synced.
  const dirHandle = await open(dir, "r")
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}
