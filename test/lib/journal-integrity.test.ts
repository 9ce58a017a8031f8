/**
 * Damage that LevelDB does not notice by itself: a byte flipped in a key inside a table, and a
 * byte flipped in the middle of the write-ahead log, then repaired. Each must end in an error
 * or a report that names what was lost, never in a journal that reads fewer entries than it
 * counts.
 */
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { cp, readFile, writeFile } from "node:fs/promises"
import { basename, join } from "node:path"
import { fileURLToPath } from "node:url"
import { crc32 } from "node:zlib"
import { describe, expect, onTestFinished, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import type { JournalEntry } from "../../lib/journal/types.js"
import {
  filesEnding,
  openJournal as openWith,
  patchFile,
  raw,
  tempDir,
} from "../helpers/journal-files.js"
import { entry, id, letter } from "../suites/journal.js"

// Entries under keys of their own (format 2's layout, still written for small appends), so that
// one key or value can be damaged; damage to batches is tested in journal-batch.test.ts.
function openJournal(dir: string): Promise<LevelJournal> {
  return openWith(dir, { minBatch: Infinity })
}

const PIRATE = fileURLToPath(new URL("../../bin/pirate.js", import.meta.url))

function pirate(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIRATE, ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

/** Reads every pending entry, page by page, as a sender does. */
async function readAll(journal: LevelJournal): Promise<string[]> {
  const ids: string[] = []
  for (;;) {
    const after = ids.at(-1)
    const page = await journal.pending(after === undefined ? { limit: 100 } : { after, limit: 100 })
    if (page.length === 0) return ids
    ids.push(...page.map((e) => e.id))
  }
}

async function openError(dir: string): Promise<unknown> {
  const journal = new LevelJournal(dir)
  onTestFinished(() => journal.close())
  return journal.open().then(
    () => undefined,
    (err: unknown) => err,
  )
}

const N = 1_000

/**
 * A closed journal of N pending entries (ids 1…N) with incompressible payloads, so that LevelDB
 * stores its table blocks as they are (it keeps a block uncompressed when snappy saves less than
 * 1/8), all of them in a table: the second open turns the log into one.
 */
async function journalInTables(): Promise<string> {
  const dir = await tempDir()
  const journal = await openJournal(dir)
  for (let i = 0; i < N; i += 250) {
    const batch = Array.from({ length: 250 }, (_, k) =>
      entry(i + k + 1, { payload: randomBytes(200) }),
    )
    await journal.append(batch, { sync: false })
  }
  await journal.close()
  await (await openJournal(dir)).close()
  return dir
}

/**
 * Offsets of the keys stored whole in the table (LevelDB stores a key whole every 16 keys and
 * only the differing suffix of the others); the whole key `p:<id>` is 18 bytes.
 */
async function wholeKeys(table: string): Promise<number[]> {
  const text = (await readFile(table)).toString("latin1")
  return [...text.matchAll(/p:[0-9a-f]{16}/g)].map((m) => m.index)
}

/** Flips one byte of a key in the middle of the table; returns the key before the change. */
async function flipKeyInTable(dir: string, at: number, to: string): Promise<string> {
  const tables = await filesEnding(dir, ".ldb")
  expect(tables).toHaveLength(1)
  const offsets = await wholeKeys(tables[0]!)
  expect(offsets.length).toBeGreaterThan(10)
  const offset = offsets[Math.floor(offsets.length / 2)]!
  let key = ""
  await patchFile(tables[0]!, (buf) => {
    key = buf.toString("latin1", offset, offset + 18)
    buf[offset + at] = to.charCodeAt(0)
  })
  return key
}

describe("a byte flipped in a key inside a table", () => {
  test("in the id (p:0000… → p:f000…): the open fails with PIRATE_JOURNAL_CORRUPT, and repair puts the key back", async () => {
    const dir = await journalInTables()
    const key = await flipKeyInTable(dir, 2, "f")
    expect(key.slice(0, 3)).toBe("p:0")
    const err = await openError(dir)
    expect(err).toMatchObject({ name: "PirateError", code: "PIRATE_JOURNAL_CORRUPT" })
    expect((err as Error).message).toContain(dir)
    expect((err as Error).message).toContain(`pirate journal repair ${dir}`)

    // The id inside each value names the key it belongs under.
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: N, dead: 0, lost: 0, lostEntries: [] })
    expect(report.recovered).toBeGreaterThan(0)
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: N, dead: 0, scheduled: 0 })
    expect(await readAll(journal)).toEqual(Array.from({ length: N }, (_, i) => id(i + 1)))
  })

  test("in the prefix (p: → q:): the open fails with PIRATE_JOURNAL_CORRUPT, and repair puts the key back", async () => {
    const dir = await journalInTables()
    await flipKeyInTable(dir, 0, "q")
    const err = await openError(dir)
    expect(err).toMatchObject({ name: "PirateError", code: "PIRATE_JOURNAL_CORRUPT" })
    expect((err as Error).message).toContain(`pirate journal repair ${dir}`)

    const repaired = await pirate("journal", "repair", dir)
    expect(repaired.stderr).toBe("")
    expect(repaired.code).toBe(0)
    expect(repaired.stdout).toMatch(/nothing lost/)
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: N, dead: 0, scheduled: 0 })
    expect(await readAll(journal)).toHaveLength(N)
  })
})

describe("a table's index", () => {
  test("a byte flipped in it: refused at open (LevelDB's seeks would skip blocks), and repaired without loss", async () => {
    const dir = await journalInTables()
    const [table] = await filesEnding(dir, ".ldb")
    // The index block ends just before the 5-byte trailer that precedes the 48-byte footer.
    await patchFile(table!, (buf) => {
      buf[buf.length - 48 - 5 - 10]! ^= 0x04
    })
    await expect(openError(dir)).resolves.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining("index block") as string,
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: N, lost: 0, warnings: [] })
    expect(report.movedAside).toHaveLength(1)
    expect(await readAll(await openJournal(dir))).toHaveLength(N)
  })

  test("a table a crash left half written (not in the MANIFEST) is no damage: LevelDB deletes it", async () => {
    const dir = await journalInTables()
    await writeFile(join(dir, "000999.ldb"), Buffer.alloc(100))
    expect(await readAll(await openJournal(dir))).toHaveLength(N)
  })
})

describe("a byte flipped in a compressed table block", () => {
  // Compressible payloads: LevelDB stores these blocks snappy-compressed, and a flipped byte
  // garbles what follows it in the block, keys included, out of order. LevelDB aborts the
  // process when it copies such a table (a compaction, or its own repair).
  test("repair never lets LevelDB copy the damaged table, and accounts for every entry", async () => {
    const n = 400
    const dir = await tempDir()
    const journal = await openJournal(dir)
    for (let i = 0; i < n; i += 20) {
      const batch = Array.from({ length: 20 }, (_, k) =>
        entry(i + k + 1, {
          payload: Buffer.from(`{"n":${i + k},"text":"${"lorem ipsum ".repeat(8)}"}`),
        }),
      )
      await journal.append(batch, { sync: false })
    }
    await journal.close()
    await (await openJournal(dir)).close()
    const [table] = await filesEnding(dir, ".ldb")
    const size = (await readFile(table!)).length
    const copies = await Promise.all(
      [0.39, 0.14].map(async (at) => {
        const copy = await tempDir()
        await cp(dir, copy, { recursive: true })
        await patchFile(join(copy, basename(table!)), (buf) => {
          buf[Math.floor(size * at)]! ^= 0x10
        })
        return copy
      }),
    )
    for (const copy of copies) {
      const repaired = await pirate("journal", "repair", copy, "--json")
      expect(repaired.stderr).not.toMatch(/Assertion/)
      expect([0, 1]).toContain(repaired.code)
      const report = JSON.parse(repaired.stdout) as { pending: number; lost: number }
      expect(report.lost).toBeLessThan(40) // one block's worth
      const ids = await readAll(await openJournal(copy))
      expect(ids).toHaveLength(report.pending)
      expect(n - ids.length).toBe(report.lost)
    }
  })
})

describe("a byte flipped in the middle of the log", () => {
  /**
   * A closed journal whose log holds N entries in batches of 10, each payload its id repeated;
   * returns the log and the offset of the middle of entry `victim`'s payload in it.
   */
  async function journalInLog(victim: number): Promise<{ dir: string; log: string; at: number }> {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    for (let i = 0; i < N; i += 10) {
      const batch = Array.from({ length: 10 }, (_, k) =>
        entry(i + k + 1, { payload: Buffer.from(`<${id(i + k + 1)}>`.repeat(12)) }),
      )
      await journal.append(batch, { sync: false })
    }
    await journal.close()
    const [log] = await filesEnding(dir, ".log")
    const buf = await readFile(log!)
    const at = buf.indexOf(`<${id(victim)}>`) + 100
    expect(at).toBeGreaterThan(100)
    return { dir, log: log!, at }
  }

  test("repair names the entry it lost, puts back the good writes LevelDB drops with it, and the CLI exits non-zero", async () => {
    const victim = 500
    const { dir, log, at } = await journalInLog(victim)
    await patchFile(log, (buf) => {
      buf[at]! ^= 0x20
    })
    expect(await openError(dir)).toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })

    const repaired = await pirate("journal", "repair", dir)
    expect(repaired.code).toBe(1)
    expect(repaired.stdout).toContain(`lost 1 entry`)
    expect(repaired.stdout).toContain(id(victim))
    expect(repaired.stderr).toMatch(/^pirate: .*lost 1 entry/)
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: N - 1, dead: 0, scheduled: 0 })
    const ids = await readAll(journal)
    expect(ids).toHaveLength(N - 1)
    expect(ids).not.toContain(id(victim))
  })

  test("LevelJournal.repair() reports the count, the ids and the counters it found", async () => {
    const victim = 700
    const { dir, log, at } = await journalInLog(victim)
    await patchFile(log, (buf) => {
      buf[at]! ^= 0x01
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({
      pending: N - 1,
      dead: 0,
      before: { pending: N, dead: 0 },
      lost: 1,
      lostEntries: [{ id: id(victim), state: "pending" }],
    })
    expect(report.droppedLogBytes).toBeGreaterThan(0)
    expect(report.recovered).toBeGreaterThan(0)
  })
})

describe("a byte flipped in the last block of the log", () => {
  test("a damaged length that LevelDB would take for a torn last write: refused, and repair puts every write back", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    for (let i = 0; i < 20; i += 2)
      await journal.append([entry(i + 1), entry(i + 2)], { sync: false })
    await journal.close()
    const [log] = await filesEnding(dir, ".log")
    // Walk to the 5th record and make its length run past the end of the file (not past its
    // block, so LevelDB reads it as a write cut short, and silently stops there).
    await patchFile(log!, (buf) => {
      let off = 0
      for (let k = 0; k < 4; k++) off += 7 + buf.readUInt16LE(off + 4)
      buf.writeUInt16LE(buf.length - off, off + 4)
    })
    await expect(openError(dir)).resolves.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringMatching(/bad record length .*complete records follow/) as string,
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 20, before: { pending: 20, dead: 0 }, lost: 0 })
    expect(report.recovered).toBeGreaterThan(0)
    expect(await readAll(await openJournal(dir))).toHaveLength(20)
  })
})

describe("values and the state record", () => {
  test("a value under the key of another id: the read that meets it fails, naming both", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append([entry(1), entry(2), entry(3)], { sync: false })
    await journal.close()
    await raw(dir, async (db) => {
      await db.put(`p:${id(2)}`, await db.get(`p:${id(3)}`))
    })
    const again = await openJournal(dir) // the keys are as they were: the open cannot tell
    await expect(again.pending({ limit: 10 })).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(`"p:${id(2)}" (the value belongs to id ${id(3)}`) as string,
    })
  })

  test("a damaged state record: refused", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append([entry(1)], { sync: false })
    await journal.close()
    await raw(dir, async (db) => {
      const meta = (await db.get("m:state")).toString().replace('"pending":1', '"pending":2')
      await db.put("m:state", Buffer.from(meta))
    })
    await expect(openError(dir)).resolves.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining("its state record") as string,
    })
  })

  test("garbage over the table: repair cannot count what LevelDB dropped, and says so", async () => {
    const dir = await journalInTables()
    for (const t of await filesEnding(dir, ".ldb")) {
      await writeFile(t, Buffer.alloc((await readFile(t)).length, 0xab))
    }
    const repaired = await pirate("journal", "repair", dir)
    expect(repaired.code).toBe(1)
    expect(repaired.stdout).toContain("the counters could not be read")
    expect(repaired.stderr).toMatch(/^pirate: the journal's counters could not be read/)
  })
})

describe("journals written by the previous release (format 1)", () => {
  /** A value as the previous release wrote it: no id, and a crc32 of what follows it. */
  function format1(e: JournalEntry, deadAt?: number): Buffer {
    const error = e.lastError === undefined ? undefined : Buffer.from(e.lastError)
    const parts: Buffer[] = [Buffer.alloc(18)]
    const head = parts[0]!
    head.writeUInt8(deadAt === undefined ? 1 : 2, 0)
    head.writeUInt8((error ? 1 : 0) | (e.notBefore !== undefined ? 2 : 0), 5)
    head.writeUInt32LE(e.attempts, 6)
    head.writeDoubleLE(e.enqueuedAt, 10)
    const f64 = (n: number): Buffer => {
      const b = Buffer.alloc(8)
      b.writeDoubleLE(n)
      return b
    }
    if (e.notBefore !== undefined) parts.push(f64(e.notBefore))
    if (deadAt !== undefined) parts.push(f64(deadAt))
    if (error) parts.push(Buffer.from([error.length, 0, 0, 0]), error)
    parts.push(e.payload)
    const buf = Buffer.concat(parts)
    buf.writeUInt32LE(crc32(buf.subarray(5)), 1)
    return buf
  }

  const retried = entry(2, { attempts: 2, lastError: "worker lost", notBefore: 1_700_000_005_000 })
  const buried = letter(entry(3), "rejected", 1_800_000_000_000)

  async function formatOneJournal(counters: { pending: number; dead: number }): Promise<string> {
    const dir = await tempDir()
    await raw(dir, (db) =>
      db.batch([
        { type: "put", key: `p:${id(1)}`, value: format1(entry(1)) },
        { type: "put", key: `p:${id(2)}`, value: format1(retried) },
        { type: "put", key: `d:${id(3)}`, value: format1(buried, buried.deadAt) },
        {
          type: "put",
          key: "m:state",
          value: Buffer.from(JSON.stringify({ v: 1, lastId: id(3), ...counters })),
        },
      ]),
    )
    return dir
  }

  test("opens, reads as before, and is checked from then on", async () => {
    const dir = await formatOneJournal({ pending: 2, dead: 1 })
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: 2, dead: 1, scheduled: 0 })
    expect(await journal.pending({ limit: 10 })).toEqual([entry(1), retried])
    expect(await journal.dead()).toEqual([buried])
    await journal.update([{ id: id(1), attempts: 1 }]) // written again, in format 2
    await journal.close()
    const meta = await raw(dir, async (db) => {
      expect((await db.get(`p:${id(1)}`))[0]).toBe(3)
      return JSON.parse((await db.get("m:state")).toString()) as Record<string, unknown>
    })
    expect(meta).toMatchObject({ v: 7, pending: 2, dead: 1, lastId: id(3) })
    expect(meta["keySum"]).toEqual(expect.any(Number))
    // A key changed now shows at the next open.
    await raw(dir, async (db) => {
      await db.put(`p:${id(9)}`, await db.get(`p:${id(2)}`))
      await db.del(`p:${id(2)}`)
    })
    await expect(openError(dir)).resolves.toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })
  })

  test("counters that disagree with the keys: refused, and repair reports the gap instead of recounting over it", async () => {
    const dir = await formatOneJournal({ pending: 5, dead: 1 })
    await expect(openError(dir)).resolves.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(
        "it holds 2 pending entries and 1 dead letters where its counters say 5 and 1",
      ) as string,
    })
    const repaired = await pirate("journal", "repair", dir)
    expect(repaired.code).toBe(1)
    expect(repaired.stdout).toContain("the counters said 5 pending, 1 dead")
    expect(repaired.stdout).toContain(
      "lost 3 entries (3 shown missing by the counters, ids unreadable)",
    )
  })
})
