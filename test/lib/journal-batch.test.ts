/**
 * The batches of LevelJournal's format 3: what is stored where, damage to a batch or its bitmap,
 * and journals of format 2 opened by this version. The shared suite (journal-level.test.ts) runs
 * on both layouts; damage to entries under keys of their own is in journal-integrity.test.ts.
 */
import { crc32 } from "node:zlib"
import { describe, expect, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import {
  journalStats,
  openJournal,
  patchBatchValue,
  raw,
  tempDir,
} from "../helpers/journal-files.js"
import { entry, entryRange, id, idRange, letter } from "../suites/journal.js"

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i)

async function keys(dir: string): Promise<string[]> {
  return raw(dir, (db) => db.keys().all())
}

const prefixed = (all: string[], prefix: string): string[] =>
  all.filter((k) => k.startsWith(prefix))

describe("batches", () => {
  test("an append is one value; acks are a bitmap; a batch fully acked is gone", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 100), { sync: false })
    await journal.append(entryRange(101, 103), { sync: false }) // below minBatch
    await journal.remove([id(1), id(2), id(50), id(102)])
    await journal.close()
    let all = await keys(dir)
    expect(prefixed(all, "b:")).toEqual([
      `b:${id(1)}${id(100)}${(100).toString(16).padStart(8, "0")}`,
    ])
    expect(prefixed(all, "a:")).toHaveLength(1)
    expect(prefixed(all, "p:")).toEqual([`p:${id(101)}`, `p:${id(103)}`])
    expect(await journalStats(dir)).toEqual({ pending: 99, dead: 0, scheduled: 0 })

    const again = await openJournal(dir)
    const pending = await again.pending({ limit: Infinity })
    expect(pending.map((e) => e.id)).toEqual(
      [...range(3, 49), ...range(51, 101), 103].map((n) => id(n)),
    )
    expect(pending[0]).toEqual(entry(3))
    // Paging: each page starts after the last id of the one before, across batch and keys.
    const paged: string[] = []
    for (let after: string | undefined; ;) {
      const page = await again.pending({ limit: 7, ...(after ? { after } : {}) })
      if (page.length === 0) break
      paged.push(...page.map((e) => e.id))
      after = page[page.length - 1]!.id
    }
    expect(paged).toEqual(pending.map((e) => e.id))
    await again.remove(pending.map((e) => e.id))
    await again.close()
    all = await keys(dir)
    expect(all).toEqual(["m:state"])
    expect(await journalStats(dir)).toEqual({ pending: 0, dead: 0, scheduled: 0 })
  })

  test("a large append is cut into batches of at most 1024 entries", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 2500), { sync: false })
    await journal.close()
    const batches = prefixed(await keys(dir), "b:")
    expect(batches.map((k) => parseInt(k.slice(34), 16))).toEqual([1024, 1024, 452])
  })

  test("a failed attempt moves the entry out of its batch; bury and replay keep the counts", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 10), { sync: false })
    await journal.update([{ id: id(4), attempts: 1, lastError: "worker lost", notBefore: 5 }])
    await journal.bury([letter(entry(6))])
    expect(await journal.stats()).toEqual({ pending: 9, dead: 1, scheduled: 0 })
    await journal.close()
    expect(prefixed(await keys(dir), "p:")).toEqual([`p:${id(4)}`])

    const again = await openJournal(dir)
    expect(await again.stats()).toEqual({ pending: 9, dead: 1, scheduled: 0 })
    const pending = await again.pending({ limit: 4 })
    expect(pending.map((e) => e.id)).toEqual([1, 2, 3, 4].map((n) => id(n)))
    expect(pending[3]).toEqual(entry(4, { attempts: 1, lastError: "worker lost", notBefore: 5 }))
    expect(await again.replay([id(6)])).toEqual([entry(6)])
    expect(await again.stats()).toEqual({ pending: 10, dead: 0, scheduled: 0 })
    await again.remove(idRange(1, 10))
    expect(await again.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
    await again.close()
    expect(await keys(dir)).toEqual(["m:state"])
  })

  test("a byte flipped in a batch: its reads fail naming it; repair moves it aside and counts its entries lost", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.append(entryRange(21, 40), { sync: false })
    await journal.remove([id(21), id(22)])
    await journal.close()
    const [, second] = prefixed(await keys(dir), "b:")
    await patchBatchValue(dir, second!, (value) => {
      value[60] = value[60]! ^ 0x10
    })
    const damaged = await openJournal(dir) // the keys are sound: the open cannot tell
    expect((await damaged.pending({ limit: 20 })).map((e) => e.id)).toEqual(idRange(1, 20))
    await expect(damaged.pending({ limit: 21 })).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(second!) as string,
    })
    await expect(damaged.remove([id(30)])).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
    })
    await damaged.close()

    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({
      pending: 20,
      dead: 0,
      before: { pending: 38, dead: 0 },
      lost: 18,
      quarantined: 1,
    })
    expect(report.lostEntries).toEqual([
      {
        id: id(21),
        state: "pending",
        count: 18,
        reason: expect.stringMatching(
          /^18 pending entries of the batch of 20 .* \(checksum mismatch\); moved aside/,
        ) as string,
      },
    ])
    const repaired = await openJournal(dir)
    expect(await repaired.stats()).toEqual({ pending: 20, dead: 0, scheduled: 0 })
    expect(await repaired.pending({ limit: 100 })).toHaveLength(20)
  })

  test("a damaged bitmap: the open fails; repair keeps the batch whole and warns of redelivery", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.remove([id(1), id(2), id(3)])
    await journal.close()
    const [bitmap] = prefixed(await keys(dir), "a:")
    await raw(dir, async (db) => {
      const value = await db.get(bitmap!)
      value[value.length - 1] = value[value.length - 1]! ^ 0xff
      await db.put(bitmap!, value)
    })
    const open = new LevelJournal(dir)
    await expect(open.open()).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(bitmap!) as string,
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 20, lost: 0, quarantined: 1 })
    expect(report.warnings).toEqual([expect.stringMatching(/acked will be delivered again/)])
    const repaired = await openJournal(dir)
    expect(await repaired.stats()).toEqual({ pending: 20, dead: 0, scheduled: 0 })
  })

  test("a batch key changed on disk: the open fails; repair puts the batch back under its key", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.close()
    const [key] = prefixed(await keys(dir), "b:")
    const wrong = `b:${id(2)}${key!.slice(18)}`
    await raw(dir, async (db) => {
      await db.put(wrong, await db.get(key!))
      await db.del(key!)
    })
    await expect(new LevelJournal(dir).open()).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 20, lost: 0, recovered: 1 })
    expect(prefixed(await keys(dir), "b:")).toEqual([key])
    const repaired = await openJournal(dir)
    expect((await repaired.pending({ limit: 100 })).map((e) => e.id)).toEqual(idRange(1, 20))
  })
})

describe("journals of format 2", () => {
  /** A journal as the previous release wrote it: entries under keys of their own, state v2. */
  async function formatTwoJournal(): Promise<string> {
    const dir = await tempDir()
    const journal = await openJournal(dir, { minBatch: Infinity })
    await journal.append(entryRange(1, 30), { sync: false })
    await journal.bury([letter(entry(5))])
    await journal.close()
    await raw(dir, async (db) => {
      const state = JSON.parse((await db.get("m:state")).toString()) as Record<string, unknown>
      const json = JSON.stringify({
        v: 2,
        lastId: state["lastId"],
        pending: state["pending"],
        dead: state["dead"],
        keySum: state["keySum"],
      })
      await db.put("m:state", Buffer.from(`${json.slice(0, -1)},"crc":${crc32(json)}}`))
    })
    return dir
  }

  test("opens as it is, takes batches beside its entries, and is format 4 from its first write", async () => {
    const dir = await formatTwoJournal()
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: 29, dead: 1, scheduled: 0 })
    expect((await journal.pending({ limit: 3 })).map((e) => e.id)).toEqual([1, 2, 3].map(id))
    await journal.append(entryRange(31, 60), { sync: false })
    await journal.remove([...range(1, 4), ...range(6, 40)].map((n) => id(n)))
    await journal.close()
    const state = await raw(
      dir,
      async (db) => JSON.parse((await db.get("m:state")).toString()) as unknown,
    )
    expect(state).toMatchObject({ v: 7, pending: 20, dead: 1 })
    const again = await openJournal(dir)
    expect(await again.stats()).toEqual({ pending: 20, dead: 1, scheduled: 0 })
    expect((await again.pending({ limit: 100 })).map((e) => e.id)).toEqual(idRange(41, 60))
    expect((await again.dead()).map((d) => d.id)).toEqual([id(5)])
  })
})
