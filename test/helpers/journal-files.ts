/** Journal directories for tests, and the bytes of the LevelDB files in them. */
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Level } from "level"
import { onTestFinished } from "vitest"
import { LevelJournal, type LevelJournalOptions } from "../../lib/journal/level.js"
import { decodePointer, segmentFiles } from "../../lib/journal/level-values.js"

/** A fresh directory, removed when the test finishes. */
export async function tempDir(prefix = "pirate-journal-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The counts of the journal in `dir`, opened and closed again (no process may hold it). */
export async function journalStats(dir: string): Promise<{ pending: number; dead: number }> {
  const journal = new LevelJournal(dir)
  await journal.open()
  try {
    return await journal.stats()
  } finally {
    await journal.close()
  }
}

/** An open journal, closed when the test finishes. */
export async function openJournal(
  dir: string,
  options: Omit<LevelJournalOptions, "path"> = {},
): Promise<LevelJournal> {
  const journal = new LevelJournal({ path: dir, ...options })
  onTestFinished(() => journal.close())
  await journal.open()
  return journal
}

/** The paths of the files in `dir` whose names end with `ext` (".log", ".ldb"). */
export async function filesEnding(dir: string, ext: string): Promise<string[]> {
  return (await readdir(dir))
    .filter((n) => n.endsWith(ext))
    .sort()
    .map((n) => join(dir, n))
}

/** Applies `change` to the bytes of `file` and writes them back. */
export async function patchFile(file: string, change: (buf: Buffer) => void): Promise<void> {
  const buf = await readFile(file)
  change(buf)
  await writeFile(file, buf)
}

/** Runs `fn` on the raw LevelDB database under a closed journal. */
export async function raw<T>(
  dir: string,
  fn: (db: Level<string, Buffer>) => Promise<T>,
): Promise<T> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: "utf8", valueEncoding: "buffer" })
  await db.open()
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}

/** Where the value of a batch is (format 4 keeps it in a value-log segment). */
export async function batchValueAt(
  dir: string,
  key: string,
): Promise<{ file: string; offset: number; length: number }> {
  const pointer = await raw(dir, (db) => db.get(key))
  const p = decodePointer(pointer)
  if (typeof p === "string") throw new Error(`${key} holds no pointer: ${p}`)
  const file = (await segmentFiles(dir)).get(p.segment)
  if (file === undefined) throw new Error(`segment ${p.segment} of ${key} is not there`)
  return { file, offset: p.offset, length: p.length }
}

/** Changes the value of a batch where it is stored (its segment file). */
export async function patchBatchValue(
  dir: string,
  key: string,
  change: (value: Buffer) => void,
): Promise<void> {
  const { file, offset, length } = await batchValueAt(dir, key)
  await patchFile(file, (buf) => change(buf.subarray(offset, offset + length)))
}
