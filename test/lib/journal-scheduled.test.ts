/**
 * LevelJournal's side of scheduling (format 5): the new fields of an entry on disk, the `s:`
 * entries and their `t:` due-time index through open, repair and the upgrade from format 4.
 * The shared suite (test/suites/journal.ts) checks what every journal does with them.
 */
import { describe, expect, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { encodeBatch } from "../../lib/journal/level-batch.js"
import {
  decodeEntry,
  decodeMeta,
  encodeEntry,
  encodeMeta,
  indexKey,
  parseIndexKey,
  sortableTime,
  timeOf,
} from "../../lib/journal/level-format.js"
import type { JournalEntry } from "../../lib/journal/types.js"
import { openJournal, raw, tempDir } from "../helpers/journal-files.js"
import { entry, entryRange, id } from "../suites/journal.js"

/** Values written by the release before format 5, for entries without its fields. */
const FORMAT_4: { entries: string[]; dead: string; batch: string } = {
  entries: [
    "035a9d712f000100000000108056febc784200000000000000017061796c6f61642031",
    "0334f8405f010200000000208056febc7842000000000000000204000000626f6f6d7061796c6f61642032",
    "03065ac1f1020000000000308056febc784200000000000000030080b857febc78427061796c6f61642033",
    "038aaa1e3c030100000000408056febc78420000000000000004000000000000144002000000c3a97061796c6f61642034",
  ],
  dead: "0401fd91d4010200000000208056febc78420000000000000002000000c585317a4204000000626f6f6d7061796c6f61642032",
  batch:
    "056d3d9afb04000000000000000000000100000000000000040000000000000001000100000000108056febc7842090000007061796c6f616420310000000000000002010200000000208056febc784204000000626f6f6d090000007061796c6f616420320000000000000003020000000000308056febc78420080b857febc7842090000007061796c6f616420330000000000000004030100000000408056febc7842000000000000144002000000c3a9090000007061796c6f61642034",
}

const plain = (n: number, extra: Partial<JournalEntry> = {}): JournalEntry => ({
  id: n.toString(16).padStart(16, "0"),
  payload: Buffer.from(`payload ${n}`),
  attempts: n % 3,
  enqueuedAt: 1_700_000_000_000 + n,
  ...extra,
})
const plainEntries = [
  plain(1),
  plain(2, { lastError: "boom" }),
  plain(3, { notBefore: 1_700_000_005_000 }),
  plain(4, { lastError: "é", notBefore: 5 }),
]

describe("format 5 values", () => {
  test("an entry without the new fields is stored byte for byte as format 4 stored it", () => {
    expect(plainEntries.map((e) => encodeEntry(e, undefined).toString("hex"))).toEqual(
      FORMAT_4.entries,
    )
    expect(encodeEntry(plainEntries[1]!, 1_800_000_000_000).toString("hex")).toBe(FORMAT_4.dead)
    expect(encodeBatch(plainEntries).value.toString("hex")).toBe(FORMAT_4.batch)
  })

  test("a value with the new fields decodes to them", () => {
    const e = plain(7, { expiresAt: 1.5, priority: 0, key: "ключ", lastError: "x", notBefore: 3 })
    expect(decodeEntry(`p:${e.id}`, encodeEntry(e, undefined))).toEqual(e)
    const cut = encodeEntry({ ...e, payload: Buffer.alloc(0) }, undefined)
    expect(decodeEntry(`p:${e.id}`, cut)).toEqual({ ...e, payload: Buffer.alloc(0) })
  })

  test("append() checks the new fields, naming the one at fault", async () => {
    const journal = await openJournal(await tempDir())
    const bad: [Partial<JournalEntry>, ErrorConstructor, RegExp][] = [
      [{ priority: 10 }, RangeError, /'priority'/],
      [{ priority: 1.5 }, RangeError, /'priority'/],
      [{ priority: "high" as unknown as number }, TypeError, /'priority'/],
      [{ expiresAt: "soon" as unknown as number }, TypeError, /'expiresAt'/],
      [{ expiresAt: NaN }, RangeError, /'expiresAt'/],
      [{ key: 42 as unknown as string }, TypeError, /'key'/],
      [{ key: "é".repeat(513) }, RangeError, /'key'/],
    ]
    for (const [extra, type, message] of bad) {
      const rejected = journal.append([entry(1, extra)], { sync: false })
      await expect(rejected).rejects.toThrow(type)
      await expect(rejected).rejects.toThrow(message)
    }
    await journal.append([entry(1, { key: "k".repeat(1024), priority: 9 })], { sync: false })
    expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
  })

  test("due times sort as their keys do, and come back exactly", () => {
    const times = [-1e15, -1.5, -0, 0, 0.25, 1, 1_700_000_000_000, 1_700_000_000_000.5, 2 ** 52]
    const keys = times.map((t) => sortableTime(t))
    expect([...keys].sort()).toEqual(keys)
    expect(times.map((t) => timeOf(sortableTime(t)))).toEqual(times.map((t) => (t === 0 ? 0 : t)))
    expect(parseIndexKey(indexKey(12.5, id(3)))).toEqual({ notBefore: 12.5, id: id(3) })
  })
})

describe("LevelJournal scheduled entries on disk", () => {
  const scheduled = (n: number, notBefore: number): JournalEntry => entry(n, { notBefore })

  async function journalWithScheduled(): Promise<string> {
    const dir = await tempDir()
    const journal = new LevelJournal(dir)
    await journal.open()
    await journal.append(entryRange(1, 3), { sync: false })
    await journal.schedule(
      [10, 11, 12, 13].map((n) => scheduled(n, 1_000 + n)),
      { sync: true },
    )
    await journal.close()
    return dir
  }

  test("a damaged scheduled value is reported by repair, like a damaged pending one", async () => {
    const dir = await journalWithScheduled()
    await raw(dir, (db) => db.put(`s:${id(11)}`, Buffer.from("garbage")))
    const damaged = await openJournal(dir) // the keys are sound
    await expect(damaged.due({ until: Infinity, limit: 10 })).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
    })
    await damaged.close()
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({
      pending: 3,
      dead: 0,
      scheduled: 3,
      before: { pending: 3, dead: 0, scheduled: 4 },
      lost: 1,
      lostEntries: [
        {
          id: id(11),
          state: "scheduled",
          reason: expect.stringContaining(`q:s:${id(11)}`) as string,
        },
      ],
      quarantined: 1,
      warnings: [],
    })
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: 3, dead: 0, scheduled: 3 })
    expect((await journal.due({ until: Infinity, limit: 10 })).map((e) => e.id)).toEqual([
      id(10),
      id(12),
      id(13),
    ])
    await journal.close()
    await raw(dir, async (db) => {
      expect((await db.get(`q:s:${id(11)}`))?.toString()).toBe("garbage")
      expect(await db.keys({ gte: "t:", lt: "t;" }).all()).toEqual(
        [10, 12, 13].map((n) => indexKey(1_000 + n, id(n))),
      )
    })
  })

  test("the open refuses a due-time key without its entry, or an entry without one; repair mends both", async () => {
    const dir = await journalWithScheduled()
    await raw(dir, async (db) => {
      await db.del(indexKey(1_012, id(12)))
      await db.put(indexKey(5, id(99)), Buffer.alloc(0))
    })
    await expect(openJournal(dir)).rejects.toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ scheduled: 4, lost: 0, lostEntries: [], warnings: [] })
    const journal = await openJournal(dir)
    expect(await journal.nextDue()).toBe(1_010)
    expect((await journal.due({ until: Infinity, limit: 10 })).map((e) => e.id)).toEqual([
      id(10),
      id(11),
      id(12),
      id(13),
    ])
    await journal.close()
    await raw(dir, async (db) => {
      const keys = await db.keys({ gte: "t:", lt: "t;" }).all()
      expect(keys).toEqual([10, 11, 12, 13].map((n) => indexKey(1_000 + n, id(n))))
    })
  })

  test("a format 4 journal opens as it is and takes the current format at its first write", async () => {
    const dir = await tempDir()
    const writer = new LevelJournal(dir)
    await writer.open()
    await writer.append(entryRange(1, 20), { sync: false }) // a batch
    await writer.append([entry(21)], { sync: false })
    await writer.bury([{ ...entry(2), lastError: "x", deadAt: 5 }])
    await writer.close()
    // What the previous release left: the same keys and values, and a state record of format 4.
    await raw(dir, async (db) => {
      const meta = decodeMeta(await db.get("m:state"))
      if (typeof meta === "string" || meta.keySum === undefined)
        throw new Error("no state record of format 4")
      await db.put("m:state", encodeMeta({ ...meta, keySum: meta.keySum }, 4))
    })
    const state = async (): Promise<unknown> =>
      raw(dir, async (db) => JSON.parse((await db.get("m:state")).toString()) as unknown)
    expect(await state()).toEqual(expect.objectContaining({ v: 4 }))
    expect(await state()).not.toHaveProperty("scheduled")

    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: 20, dead: 1, scheduled: 0 })
    expect(await journal.pending({ limit: 100 })).toHaveLength(20)
    await journal.schedule([scheduled(30, 7)], { sync: false })
    await journal.close()
    expect(await state()).toMatchObject({ v: 7, pending: 20, dead: 1, scheduled: 1 })
    const again = await openJournal(dir)
    expect(await again.stats()).toEqual({ pending: 20, dead: 1, scheduled: 1 })
    expect(await again.lastId()).toBe(id(30))
  })
})
