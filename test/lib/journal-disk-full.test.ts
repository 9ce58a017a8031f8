/**
 * A journal on a disk that fills up: on a real, small tmpfs (see test/helpers/tmpfs.ts), because
 * what LevelDB does after ENOSPC (a torn log record, a sticky background error) cannot be faked.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { once } from "node:events"
import { mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { describe, expect, onTestFinished, test, type TestContext } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import type { JournalEntry } from "../../lib/journal/types.js"
import { IdGenerator } from "../../lib/journal/ids.js"
import { forkFixture } from "../helpers/processes.js"
import { tmpfs } from "../helpers/tmpfs.js"

const MiB = 1024 * 1024
const run = promisify(execFile)

/** An open journal in `dir`, closed when the test finishes. */
async function openJournal(dir: string): Promise<LevelJournal> {
  const journal = new LevelJournal(dir)
  onTestFinished(() => journal.close())
  await journal.open()
  return journal
}

/** Makes entries with `size` random (incompressible) bytes each, ids in order. */
function entries(size: number): () => JournalEntry {
  const ids = new IdGenerator(undefined)
  return () => ({ id: ids.next(), payload: randomBytes(size), attempts: 0, enqueuedAt: Date.now() })
}

/** Appends entries one at a time until one rejects (at most 1000). */
async function appendUntilFailure(
  journal: LevelJournal,
  entry: () => JournalEntry,
): Promise<{ resolved: string[]; failure: unknown }> {
  const resolved: string[] = []
  for (let i = 0; i < 1000; i++) {
    const e = entry()
    try {
      await journal.append([e], { sync: false })
    } catch (failure) {
      return { resolved, failure }
    }
    resolved.push(e.id)
  }
  return { resolved, failure: undefined }
}

/** A journal directory and a filler file's path on a new 8 MiB tmpfs. */
async function smallDisk(ctx: TestContext): Promise<{ dir: string; filler: string }> {
  const disk = await tmpfs(ctx, 8)
  return { dir: join(disk, "journal"), filler: join(disk, "filler") }
}

/**
 * Opens a journal on a new 8 MiB tmpfs, fills the disk with a filler file but for `free` bytes,
 * then appends entries of `size` random bytes until one fails.
 */
async function fillUntilFailure(ctx: TestContext, free: number, size: number) {
  const { dir, filler } = await smallDisk(ctx)
  const journal = await openJournal(dir)
  await writeFile(filler, Buffer.alloc(8 * MiB - free))
  const entry = entries(size)
  return { dir, filler, journal, entry, ...(await appendUntilFailure(journal, entry)) }
}

async function pendingIds(journal: LevelJournal): Promise<string[]> {
  return (await journal.pending({ limit: Infinity })).map((e) => e.id)
}

/**
 * Runs test/fixtures/journal-disk-full.ts on `dir`: `limit()` before it fills the journal, `free()`
 * after its first failed append; then it appends 400 more and is SIGKILLed. Returns its first
 * failure and every id whose append resolved.
 */
async function fillFreeKill(
  dir: string,
  limit: (pid: number) => Promise<unknown>,
  free: (pid: number) => Promise<unknown>,
): Promise<{ failed: Record<string, unknown>; resolved: string[] }> {
  const child = forkFixture("journal-disk-full.ts", [dir, "400"])
  const pid = child.process.pid ?? 0
  await child.waitFor((m) => m["type"] === "open")
  await limit(pid)
  child.process.send({ type: "fill" })
  const failed = await child.waitFor((m) => m["type"] === "failed")
  await free(pid)
  const exit = once(child.process, "exit")
  child.process.send({ type: "freed" })
  const appended = await child.waitFor((m) => m["type"] === "appended")
  const [, signal] = (await exit) as [number | null, string | null]
  expect(signal).toBe("SIGKILL")
  return {
    failed,
    resolved: [...(failed["resolved"] as string[]), ...(appended["ids"] as string[])],
  }
}

describe("LevelJournal write failures", { timeout: 15_000 }, () => {
  test("an append that finds the disk full rejects PIRATE_JOURNAL_FULL; once space is freed appends resolve again, and all of them survive a SIGKILL", async (ctx) => {
    const { dir, filler } = await smallDisk(ctx)
    const { failed, resolved } = await fillFreeKill(
      dir,
      () => writeFile(filler, Buffer.alloc(7 * MiB)),
      () => rm(filler),
    )
    expect(failed).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect(failed["message"]).toContain(dir)
    const journal = await openJournal(dir)
    expect(await pendingIds(journal)).toEqual(resolved)
    expect(await journal.stats()).toEqual({ pending: resolved.length, dead: 0, scheduled: 0 })
  })

  test("another I/O failure (a file too large) rejects PIRATE_JOURNAL_IO, and is survived the same way", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pirate-journal-"))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const fsize = (pid: number, limit: string): Promise<unknown> =>
      run("prlimit", [`--pid=${pid}`, `--fsize=${limit}:`]) // the soft limit only: no privilege needed
    const { failed, resolved } = await fillFreeKill(
      dir,
      (pid) => fsize(pid, String(MiB)),
      (pid) => fsize(pid, "unlimited"),
    )
    expect(failed).toMatchObject({ code: "PIRATE_JOURNAL_IO" })
    expect(failed["message"]).toMatch(/file too large/i)
    expect(failed["message"]).toContain(dir)
    const journal = await openJournal(dir)
    expect(await pendingIds(journal)).toEqual(resolved)
  })

  test("a memtable flush that finds the disk full: writes reject PIRATE_JOURNAL_FULL, and once space is freed they succeed in the same process, a failed remove included", async (ctx) => {
    // 3 MiB free: room for LevelDB's first log (its 2 MiB memtable), not for that log and the
    // table the memtable is then flushed to. The appends that follow the switch to a new log may
    // meet the full disk before the flush does, or after: the flush fails either way.
    const { dir, filler, journal, entry, resolved, failure } = await fillUntilFailure(
      ctx,
      3 * MiB,
      12 * 1024, // below LARGE_PAYLOAD: these stay in LevelDB, whose memtable flush is what fails
    )
    expect(failure).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect((failure as Error).message).toContain(dir)
    expect((failure as Error).cause).toBeInstanceOf(Error)
    const acked = resolved.slice(0, 10)
    await expect(journal.remove(acked)).rejects.toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    expect(await journal.stats()).toEqual({ pending: resolved.length, dead: 0, scheduled: 0 })

    await rm(filler)
    // The read waits for the database the remove reopens (the failed remove left none).
    const [, page] = await Promise.all([journal.remove(acked), journal.pending({ limit: 20 })])
    expect(page.map((e) => e.id)).toEqual(expect.arrayContaining(resolved.slice(10, 20)))
    const more = Array.from({ length: 50 }, entry)
    for (const e of more) await journal.append([e], { sync: false })
    const expected = [...resolved.slice(10), ...more.map((e) => e.id)]
    expect(await pendingIds(journal)).toEqual(expected)
    expect(await journal.stats()).toEqual({ pending: expected.length, dead: 0, scheduled: 0 })

    await journal.close()
    const reopened = await openJournal(dir)
    expect(await pendingIds(reopened)).toEqual(expected)
    expect(await reopened.stats()).toEqual({ pending: expected.length, dead: 0, scheduled: 0 })
    expect(await reopened.lastId()).toBe(more.at(-1)?.id)
  })

  test("the reopen after a failed write still refuses a log damaged in its middle", async (ctx) => {
    const { dir, filler, journal, entry, resolved, failure } = await fillUntilFailure(
      ctx,
      MiB,
      4096,
    )
    expect(failure).toMatchObject({ code: "PIRATE_JOURNAL_FULL" })
    const [log, ...others] = (await readdir(dir)).filter((n) => n.endsWith(".log"))
    expect(others).toEqual([])
    const file = await open(join(dir, log ?? ""), "r+")
    await file.write(Buffer.from([0xff]), 0, 1, 20) // inside the first record, the one open() wrote
    await file.close()
    await rm(filler)
    await expect(journal.append([entry()], { sync: false })).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(`${log}: checksum mismatch at offset 0`) as string,
    })
    expect(await journal.stats()).toEqual({ pending: resolved.length, dead: 0, scheduled: 0 })
  })
})
