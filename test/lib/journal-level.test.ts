import { once } from "node:events"
import { existsSync } from "node:fs"
import { mkdir, readFile, readdir, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { describe, expect, onTestFinished, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { filesEnding, openJournal, raw, tempDir } from "../helpers/journal-files.js"
import { forkFixture } from "../helpers/processes.js"
import type { JournalEntry } from "../../lib/journal/types.js"
import { entry, id, idRange, journalSuite, letter } from "../suites/journal.js"

journalSuite("LevelJournal", async () => {
  const dir = await tempDir()
  return { journal: new LevelJournal(dir), reopen: () => new LevelJournal({ path: dir }) }
})

// Every append a batch, and every entry under a key of its own: both layouts of format 3.
journalSuite("LevelJournal (minBatch 1)", async () => {
  const dir = await tempDir()
  const open = (): LevelJournal => new LevelJournal({ path: dir, minBatch: 1 })
  return { journal: open(), reopen: open }
})

journalSuite("LevelJournal (minBatch Infinity)", async () => {
  const dir = await tempDir()
  const open = (): LevelJournal => new LevelJournal({ path: dir, minBatch: Infinity })
  return { journal: open(), reopen: open }
})

describe("LevelJournal", () => {
  describe("lifecycle", () => {
    test("the constructor validates only and does no I/O", async () => {
      expect(() => new LevelJournal("")).toThrow(TypeError)
      expect(() => new LevelJournal(42 as unknown as string)).toThrow(
        "'path' must be a non-empty string, got 42",
      )
      expect(() => new LevelJournal({} as { path: string })).toThrow(TypeError)
      const dir = join(await tempDir(), "a", "b")
      const journal = new LevelJournal({ path: dir })
      expect(journal.status).toBe("new")
      expect(existsSync(dir)).toBe(false)
    })

    test("open() creates the directory, recursively", async () => {
      const dir = join(await tempDir(), "a", "b", "journal")
      const journal = await openJournal(dir)
      expect(journal.status).toBe("open")
      expect(journal.path).toBe(dir)
      expect(existsSync(join(dir, "CURRENT"))).toBe(true)
    })

    test("calls before open() reject with PIRATE_NOT_OPEN, after close() with PIRATE_CLOSED", async () => {
      const journal = new LevelJournal(await tempDir())
      await expect(journal.stats()).rejects.toMatchObject({ code: "PIRATE_NOT_OPEN" })
      await expect(journal.append([entry(1)], { sync: false })).rejects.toMatchObject({
        code: "PIRATE_NOT_OPEN",
      })
      await expect(journal.pending({ limit: 1 })).rejects.toMatchObject({ code: "PIRATE_NOT_OPEN" })
      await journal.open()
      await journal.close()
      expect(journal.status).toBe("closed")
      await expect(journal.stats()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
      await expect(journal.remove([id(1)])).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
      await expect(journal.dead()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
      await expect(journal.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
    })

    test("calls made while opening wait for it", async () => {
      const journal = new LevelJournal(await tempDir())
      onTestFinished(() => journal.close())
      const opening = journal.open()
      const appended = journal.append([entry(1)], { sync: false })
      await Promise.all([opening, appended])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
    })

    test("close() waits for the writes in progress", async () => {
      const dir = await tempDir()
      const journal = await openJournal(dir)
      const writes = Array.from({ length: 50 }, (_, i) =>
        journal.append([entry(i + 1)], { sync: false }),
      )
      await journal.close()
      await Promise.all(writes)
      const again = await openJournal(dir)
      expect(await again.stats()).toEqual({ pending: 50, dead: 0, scheduled: 0 })
    })

    test("close() before open() and during open() is safe", async () => {
      const a = new LevelJournal(await tempDir())
      await a.close()
      await expect(a.open()).rejects.toMatchObject({ code: "PIRATE_CLOSED" })
      const dir = await tempDir()
      const b = new LevelJournal(dir)
      const opening = b.open()
      await b.close()
      await opening
      expect(b.status).toBe("closed")
      // b let go of the lock
      await openJournal(dir)
    })

    test("`await using` closes the journal", async () => {
      const dir = await tempDir()
      {
        await using journal = new LevelJournal(dir)
        await journal.open()
        await journal.append([entry(1)], { sync: true })
      }
      expect(await (await openJournal(dir)).stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
    })

    test("programmer mistakes throw TypeError or RangeError", async () => {
      const journal = await openJournal(await tempDir())
      await expect(
        journal.append([{ ...entry(1), payload: "text" as unknown as Buffer }], { sync: false }),
      ).rejects.toThrow(TypeError)
      await expect(
        journal.append([{ ...entry(1), attempts: -1 }], { sync: false }),
      ).rejects.toThrow(RangeError)
      await expect(journal.append([{ ...entry(1), id: "" }], { sync: false })).rejects.toThrow(
        TypeError,
      )
      // Keys are checked for their shape: an id is 16 lower-case hex digits, as IdGenerator makes.
      await expect(
        journal.append([{ ...entry(1), id: "0006189A2B3C4D5E" }], { sync: false }),
      ).rejects.toThrow("'id' must be 16 lower-case hex digits")
      await expect(journal.bury([letter({ ...entry(1), id: "x" })])).rejects.toThrow(TypeError)
      await journal.remove(["not-an-id"]) // cannot be there: ignored, as an unknown id
      await expect(journal.append([entry(1)], {} as { sync: boolean })).rejects.toThrow(
        "'sync' must be a boolean",
      )
      await expect(journal.pending({ limit: -1 })).rejects.toThrow(RangeError)
      await expect(journal.pending({ limit: 1.5 })).rejects.toThrow(TypeError)
      await expect(journal.bury([{ ...entry(1), deadAt: 1 } as never])).rejects.toThrow(
        "'lastError' must be a string",
      )
      expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
    })
  })

  // These fork child processes through tsx, which a loaded machine can slow to seconds.
  describe("memory of the entries read back", () => {
    const big = (n: number): JournalEntry => entry(n, { payload: Buffer.alloc(500, n) })

    test("a page that takes most of a batch shares its value; a few pending entries of it are copied", async () => {
      const journal = await openJournal(await tempDir())
      onTestFinished(() => journal.close())
      await journal.append(
        Array.from({ length: 100 }, (_, i) => big(i + 1)),
        { sync: false },
      )
      const all = await journal.pending({ limit: 100 })
      expect(all).toHaveLength(100)
      const value = all[0]?.payload.buffer
      expect(all.every((e) => e.payload.buffer === value)).toBe(true)
      expect(value?.byteLength).toBeGreaterThan(100 * 500)
      await journal.remove(idRange(1, 95))
      const left = await journal.pending({ limit: 100 })
      expect(left.map((e) => e.id)).toEqual(idRange(96, 100))
      for (const e of left) {
        expect(e.payload.buffer).not.toBe(value)
        expect(e.payload.equals(Buffer.alloc(500, Number.parseInt(e.id, 16)))).toBe(true)
      }
    })
  })

  describe("locking", { timeout: 30_000 }, () => {
    test("a second LevelJournal in this process gets PIRATE_JOURNAL_LOCKED at once", async () => {
      const dir = await tempDir()
      const first = await openJournal(dir)
      await first.append([entry(1)], { sync: false })
      const second = new LevelJournal(dir)
      onTestFinished(() => second.close())
      const err = await second.open().then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toMatchObject({ name: "PirateError", code: "PIRATE_JOURNAL_LOCKED" })
      const message = (err as Error).message
      expect(message).toContain(dir)
      expect(message).toMatch(/stop it|another directory/)
      expect((err as Error).cause).toMatchObject({ code: "LEVEL_LOCKED" })
      expect(second.status).toBe("new")
      // once the first one lets go, the same instance can open
      await first.close()
      await second.open()
      expect(await second.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
    })

    test("a journal held by another process gets PIRATE_JOURNAL_LOCKED; after a crash it opens again", async () => {
      const dir = await tempDir()
      const seed = await openJournal(dir)
      await seed.append([entry(1), entry(2)], { sync: true })
      await seed.close()

      const holder = forkFixture("journal-holder.ts", [dir])
      expect(
        await holder.waitFor((m) => m["type"] === "ready" || m["type"] === "error", 20_000),
      ).toEqual({
        type: "ready",
        stats: { pending: 2, dead: 0, scheduled: 0 },
      })
      const blocked = new LevelJournal(dir)
      onTestFinished(() => blocked.close())
      const started = performance.now()
      await expect(blocked.open()).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_LOCKED",
        cause: { code: "LEVEL_LOCKED" },
      })
      expect(performance.now() - started).toBeLessThan(3_000) // no waiting for the lock

      await holder.kill("SIGKILL")
      await blocked.open()
      expect(await blocked.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      expect((await blocked.pending({ limit: 10 })).map((e) => e.id)).toEqual([id(1), id(2)])
    })
  })

  describe("durability", { timeout: 30_000 }, () => {
    test("appends with sync: false survive a SIGKILL right after they resolve", async () => {
      const dir = await tempDir()
      const appender = forkFixture("journal-appender.ts", [dir, "20", "50"])
      const exit = once(appender.process, "exit") as Promise<[number | null, string | null]>
      const plan = await appender.waitFor((m) => m["type"] === "appending", 20_000)
      const [, signal] = await exit
      expect(signal).toBe("SIGKILL")
      const ids = plan["ids"] as string[]
      const journal = await openJournal(dir)
      expect(await journal.stats()).toEqual({ pending: 1_000, dead: 0, scheduled: 0 })
      expect(await journal.lastId()).toBe(ids.at(-1))
      const got = await journal.pending({ limit: 2_000 })
      expect(got.map((e) => e.id)).toEqual(ids)
      expect(got[0]!.payload.toString()).toBe(`payload of ${ids[0]}`)
    })

    test("sync: true writes are durable and readable", async () => {
      const dir = await tempDir()
      const journal = await openJournal(dir)
      for (let i = 0; i < 20; i++) await journal.append([entry(i + 1)], { sync: true })
      await journal.close()
      const again = await openJournal(dir)
      expect(await again.stats()).toEqual({ pending: 20, dead: 0, scheduled: 0 })
    })

    test("pages through 20 000 entries in pages of 1 000, in order", async () => {
      const journal = await openJournal(await tempDir())
      const n = 20_000
      for (let i = 0; i < n; i += 2_000) {
        await journal.append(
          Array.from({ length: 2_000 }, (_, k) => entry(i + k + 1)),
          { sync: false },
        )
      }
      let after: string | undefined
      let count = 0
      let pages = 0
      for (;;) {
        const page = await journal.pending(
          after === undefined ? { limit: 1_000 } : { after, limit: 1_000 },
        )
        if (page.length === 0) break
        pages++
        for (const e of page) expect(e.id).toBe(id(++count))
        after = page.at(-1)!.id
      }
      expect(count).toBe(n)
      expect(pages).toBe(20)
    })

    test("a journal without stored counters (older format) is counted once on open", async () => {
      const dir = await tempDir()
      const journal = await openJournal(dir)
      await journal.append([entry(1), entry(2), entry(3)], { sync: false })
      await journal.bury([letter(entry(3))])
      await journal.close()
      await raw(dir, (db) => db.del("m:state"))
      const again = await openJournal(dir)
      expect(await again.stats()).toEqual({ pending: 2, dead: 1, scheduled: 0 })
      expect(await again.lastId()).toBe(id(3))
    })
  })

  describe("damage", () => {
    /** A closed journal with a few batches in its log, and the log files. */
    async function journalWithLog(): Promise<{ dir: string; logs: string[] }> {
      const dir = await tempDir()
      // An entry under a key of its own, so that one can be damaged (batches: journal-batch.test.ts)
      const journal = await openJournal(dir, { minBatch: Infinity })
      for (let i = 0; i < 10; i++) {
        await journal.append(
          Array.from({ length: 10 }, (_, k) =>
            entry(i * 10 + k + 1, { payload: Buffer.alloc(200, i) }),
          ),
          { sync: false },
        )
      }
      await journal.close()
      const logs = await filesEnding(dir, ".log")
      expect(logs.length).toBeGreaterThan(0)
      return { dir, logs }
    }

    async function expectCorrupt(dir: string, pattern?: RegExp): Promise<Error> {
      const journal = new LevelJournal(dir)
      onTestFinished(() => journal.close())
      const err = await journal
        .open()
        .then(() => journal.pending({ limit: 1_000 }))
        .then(
          () => undefined,
          (e: unknown) => e,
        )
      expect(err).toMatchObject({ name: "PirateError", code: "PIRATE_JOURNAL_CORRUPT" })
      expect((err as Error).message).toContain(dir)
      if (pattern) expect((err as Error).message).toMatch(pattern)
      return err as Error
    }

    test("garbage over the log files: refuses to open, and the log is left as it was", async () => {
      const { dir, logs } = await journalWithLog()
      for (const log of logs) await writeFile(log, Buffer.alloc((await readFile(log)).length, 0xab))
      const before = await Promise.all(logs.map((l) => readFile(l)))
      await expectCorrupt(dir, /repair/)
      const after = await Promise.all(logs.map((l) => readFile(l)))
      expect(after).toEqual(before)
    })

    test("one flipped byte inside a log record: refuses to open", async () => {
      const { dir, logs } = await journalWithLog()
      const log = await readFile(logs[0]!)
      log[Math.floor(log.length / 2)]! ^= 0x40
      await writeFile(logs[0]!, log)
      await expectCorrupt(dir, /checksum mismatch/)
    })

    test("a log torn at its end (the writer died mid-record) opens with the complete records", async () => {
      const { dir, logs } = await journalWithLog()
      const log = await readFile(logs[0]!)
      await writeFile(logs[0]!, log.subarray(0, log.length - 100))
      const journal = await openJournal(dir)
      expect(await journal.stats()).toEqual({ pending: 90, dead: 0, scheduled: 0 })
      expect(await journal.pending({ limit: 1_000 })).toHaveLength(90)
    })

    test("garbage over the table files: PIRATE_JOURNAL_CORRUPT", async () => {
      const { dir } = await journalWithLog()
      await openJournal(dir).then((j) => j.close()) // LevelDB turns the log into a table on open
      const tables = await filesEnding(dir, ".ldb")
      expect(tables.length).toBeGreaterThan(0)
      for (const t of tables) await writeFile(t, Buffer.alloc((await readFile(t)).length, 0xab))
      await expectCorrupt(dir)
    })

    test("a bad value under a pending key: pending() throws instead of skipping it", async () => {
      const { dir } = await journalWithLog()
      await raw(dir, async (db) => {
        const good = await db.get(`p:${id(5)}`)
        good[30] = good[30]! ^ 1 // a bit flip inside the payload
        await db.put(`p:${id(5)}`, good)
        await db.put(`p:${id(7)}`, Buffer.from("garbage"))
      })
      const journal = await openJournal(dir)
      expect(await journal.stats()).toEqual({ pending: 100, dead: 0, scheduled: 0 })
      expect(await journal.pending({ limit: 4 })).toHaveLength(4)
      await expect(journal.pending({ limit: 10 })).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_CORRUPT",
        message: expect.stringContaining(`p:${id(5)}`) as string,
      })
      await expect(journal.update([{ id: id(7), attempts: 1 }])).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_CORRUPT",
      })
    })

    test("LevelJournal.repair() moves bad values aside and recounts", async () => {
      const { dir } = await journalWithLog()
      await raw(dir, (db) => db.put(`p:${id(7)}`, Buffer.from("garbage")))
      await expect(LevelJournal.repair(dir)).resolves.toMatchObject({
        pending: 99,
        dead: 0,
        before: { pending: 100, dead: 0 },
        lost: 1,
        lostEntries: [
          {
            id: id(7),
            state: "pending",
            reason: expect.stringContaining(`q:p:${id(7)}`) as string,
          },
        ],
        quarantined: 1,
        recovered: 0,
        levelRepaired: false,
        warnings: [],
      })
      const journal = await openJournal(dir)
      expect(await journal.stats()).toEqual({ pending: 99, dead: 0, scheduled: 0 })
      expect(await journal.lastId()).toBe(id(100))
      expect(await journal.pending({ limit: 1_000 })).toHaveLength(99)
      await journal.close()
      await raw(dir, async (db) => {
        expect((await db.get(`q:p:${id(7)}`))?.toString()).toBe("garbage")
      })
    })

    test("LevelJournal.repair() runs LevelDB's repair when the database will not open", async () => {
      const { dir } = await journalWithLog()
      await openJournal(dir).then((j) => j.close())
      const [manifest] = (await readdir(dir)).filter((n) => n.startsWith("MANIFEST-"))
      await writeFile(join(dir, manifest!), Buffer.alloc(100, 0xab))
      await expectCorrupt(dir)
      const report = await LevelJournal.repair(dir)
      expect(report).toMatchObject({
        pending: 100,
        dead: 0,
        before: { pending: 100, dead: 0 },
        lost: 0,
        quarantined: 0,
        levelRepaired: true,
        warnings: [],
      })
      expect(await (await openJournal(dir)).stats()).toEqual({
        pending: 100,
        dead: 0,
        scheduled: 0,
      })
    })

    test("LevelJournal.repair() refuses a journal that a sender holds", async () => {
      const dir = await tempDir()
      await openJournal(dir)
      await expect(LevelJournal.repair(dir)).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_LOCKED",
      })
    })

    test("a lost CURRENT file: refuses to open instead of starting over (LevelDB would delete the tables)", async () => {
      const { dir } = await journalWithLog()
      await openJournal(dir).then((j) => j.close())
      // A sender's identity file beside LevelDB's is part of the journal, not a foreign file.
      await writeFile(join(dir, "SENDER_ID"), "0123456789abcdef0123456789abcdef")
      await unlink(join(dir, "CURRENT"))
      const before = (await readdir(dir)).sort()
      await expectCorrupt(dir, /CURRENT/)
      expect((await readdir(dir)).sort()).toEqual(before)
      await expect(LevelJournal.repair(dir)).resolves.toMatchObject({
        pending: 100,
        lost: 0,
        levelRepaired: true,
        warnings: [],
      })
      expect(await (await openJournal(dir)).stats()).toEqual({
        pending: 100,
        dead: 0,
        scheduled: 0,
      })
    })

    test("LevelJournal.repair() of a directory without a journal is PIRATE_NOT_FOUND", async () => {
      const dir = await tempDir()
      await expect(LevelJournal.repair(dir)).rejects.toMatchObject({ code: "PIRATE_NOT_FOUND" })
      await expect(LevelJournal.repair(join(dir, "missing"))).rejects.toMatchObject({
        code: "PIRATE_NOT_FOUND",
      })
      expect(await readdir(dir)).toEqual([])
    })

    test("a directory that is not a journal is refused", async () => {
      const dir = await tempDir()
      await writeFile(join(dir, "notes.txt"), "mine")
      await expectCorrupt(dir, /not a journal directory/)
      const other = await tempDir()
      await raw(other, (db) => db.put("user:1", Buffer.from("x")))
      await expectCorrupt(other, /not a zeromq-pirate journal/)
    })

    test("a journal written in a newer format is refused", async () => {
      const dir = await tempDir()
      await (await openJournal(dir)).close()
      await raw(dir, (db) =>
        db.put("m:state", Buffer.from(JSON.stringify({ v: 8, lastId: null, pending: 0, dead: 0 }))),
      )
      await expectCorrupt(dir, /format 8/)
    })

    test("a directory that cannot be created is a clear error", async () => {
      const base = await tempDir()
      await writeFile(join(base, "file"), "")
      const journal = new LevelJournal(join(base, "file", "journal"))
      // Not damage: nothing to repair, so not PIRATE_JOURNAL_CORRUPT.
      await expect(journal.open()).rejects.toMatchObject({
        code: "PIRATE_JOURNAL_IO",
        message: expect.stringContaining("cannot create the journal directory") as string,
      })
      await mkdir(join(base, "ok"))
      await openJournal(join(base, "ok"))
    })
  })
})

describe("LevelJournal reads beside writes", () => {
  test("pending() while update() moves entries out of their batch misses none of them", async () => {
    const journal = await openJournal(await tempDir())
    let missed = 0
    for (let round = 0; round < 600; round++) {
      const base = round * 100
      await journal.append(
        Array.from({ length: 20 }, (_, i) => entry(base + i + 1)),
        { sync: false },
      )
      // The update and the read start together: the read must see each entry once, moved or not.
      const [, page] = await Promise.all([
        journal.update([3, 4, 5, 6].map((n) => ({ id: id(base + n), attempts: 1 }))),
        journal.pending({ after: id(base + 2), until: id(base + 20), limit: 4 }),
      ])
      if (page.map((e) => e.id).join() !== [3, 4, 5, 6].map((n) => id(base + n)).join()) missed++
    }
    expect(missed).toBe(0)
  })
})
