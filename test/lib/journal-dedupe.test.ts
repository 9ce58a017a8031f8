/**
 * LevelJournal's side of idempotent sends (format 6): an entry's send id on disk, the `k:`
 * records and their `K:` acked-time index through open, repair and the upgrade from format 5.
 * The shared suite (test/suites/journal.ts) checks what every journal does with them.
 */
import { describe, expect, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { decodeBatch, encodeBatch } from "../../lib/journal/level-batch.js"
import {
  FLAG_DEDUPE,
  decodeDedupe,
  decodeEntry,
  decodeMeta,
  dedupeIndexKey,
  dedupeKey,
  encodeDedupe,
  encodeEntry,
  encodeMeta,
  valueCrc,
} from "../../lib/journal/level-format.js"
import { openJournal, raw, tempDir } from "../helpers/journal-files.js"
import { entry, entryRange, id } from "../suites/journal.js"

describe("format 6 values", () => {
  test("an entry's send id round-trips in p:, d: and s: values and in batches; 256 bytes fit", () => {
    const long = "é".repeat(128)
    for (const dedupeId of ["a", "order 42 ✓", long]) {
      const e = entry(1, { dedupeId, key: "k", priority: 7 })
      expect(decodeEntry(`p:${id(1)}`, encodeEntry(e, undefined))).toEqual(e)
      expect(decodeEntry(`d:${id(1)}`, encodeEntry(e, 5))).toMatchObject({ dedupeId, deadAt: 5 })
      const { key, value } = encodeBatch([e, entry(2)])
      const decoded = decodeBatch(key, value)
      expect(typeof decoded === "string" ? decoded : decoded.map((x) => x.dedupeId)).toEqual([
        dedupeId,
        undefined,
      ])
    }
  })

  test("a value with a flag this version does not know is refused, not misread", () => {
    // Every bit of the first flags byte is known since format 7: an unknown one is in the second.
    const buf = encodeEntry(entry(1, { headers: { a: "b" } }), undefined)
    const more = buf.indexOf(Buffer.from([1, 10, 0, 0, 0]))
    expect(more).toBeGreaterThan(0)
    buf[more] = 3
    buf.writeUInt32LE(valueCrc(buf, 3), 1)
    expect(decodeEntry(`p:${id(1)}`, buf)).toBe("unknown flags in its second flags byte")
    expect(FLAG_DEDUPE).toBe(32)
  })

  test("a record belongs to its key: any send id makes one unambiguous key", () => {
    const key = dedupeKey("a:b")
    expect(key).toBe("k:613a62")
    const value = encodeDedupe(key.slice(2), { id: id(7), ackedAt: 12.5 })
    expect(decodeDedupe(key, value)).toEqual({ id: id(7), ackedAt: 12.5 })
    expect(decodeDedupe(dedupeKey("a:c"), value)).toMatch(/another send id/)
    const damaged = Buffer.from(value)
    damaged[6] = (damaged[6] as number) ^ 1
    expect(decodeDedupe(key, damaged)).toBe("checksum mismatch")
  })
})

describe("LevelJournal send ids on disk", () => {
  async function journalWithSendIds(): Promise<string> {
    const dir = await tempDir()
    const journal = new LevelJournal(dir)
    await journal.open()
    await journal.append(
      [1, 2, 3, 4].map((n) => entry(n, { dedupeId: `send ${n}` })),
      { sync: false },
    )
    await journal.remove([id(1), id(2)], { acked: ["send 1", "send 2"], forget: [], at: 1_000 })
    await journal.close()
    return dir
  }

  test("the open counts k: and K: keys: a record or an index key lost on disk is refused", async () => {
    const dir = await journalWithSendIds()
    const sound = await openJournal(dir)
    expect(await sound.stats()).toMatchObject({ pending: 2, dedupe: 4 })
    await sound.close()
    await raw(dir, (db) => db.del(dedupeKey("send 3")))
    await expect(openJournal(dir)).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining("3 send ids") as string,
    })
    const other = await journalWithSendIds()
    await raw(other, (db) =>
      db.put(dedupeIndexKey(5, dedupeKey("send 3").slice(2)), Buffer.alloc(0)),
    )
    await expect(openJournal(other)).rejects.toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })
    // A K: key changed on disk (same count) shows in the key sum.
    const third = await journalWithSendIds()
    await raw(third, async (db) => {
      const hex = dedupeKey("send 1").slice(2)
      await db.del(dedupeIndexKey(1_000, hex))
      await db.put(dedupeIndexKey(1_001, hex), Buffer.alloc(0))
    })
    await expect(openJournal(third)).rejects.toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })
  })

  test("repair drops a damaged record with a warning and keeps the rest", async () => {
    const dir = await journalWithSendIds()
    await raw(dir, (db) => db.put(dedupeKey("send 2"), Buffer.from("garbage")))
    const damaged = await openJournal(dir) // the keys are sound
    await expect(damaged.dedupeLookup(["send 2"])).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
    })
    await damaged.close()
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 2, lost: 0, lostEntries: [], quarantined: 0 })
    expect(report.warnings).toEqual([expect.stringMatching(/send id "send 2" was damaged/)])
    const journal = await openJournal(dir)
    expect(await journal.stats()).toMatchObject({ pending: 2, dedupe: 3 })
    expect(await journal.dedupeLookup(["send 1", "send 2", "send 3"])).toEqual([
      { id: id(1), ackedAt: 1_000 },
      undefined,
      { id: id(3) },
    ])
    // Its acked-time key went with it: forgetting by age finds only the other one.
    expect(await journal.dedupeForget(2_000)).toBe(1)
    await journal.close()
    await raw(dir, async (db) => {
      expect(await db.keys({ gte: "K:", lt: "K;" }).all()).toEqual([])
    })
  })

  test("repair gives an acked record its lost index key back", async () => {
    const dir = await journalWithSendIds()
    await raw(dir, (db) => db.del(dedupeIndexKey(1_000, dedupeKey("send 1").slice(2))))
    await expect(openJournal(dir)).rejects.toMatchObject({ code: "PIRATE_JOURNAL_CORRUPT" })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 2, lost: 0 })
    const journal = await openJournal(dir)
    expect(await journal.dedupeForget(2_000)).toBe(2)
    await journal.close()
  })

  test("a format 5 journal opens as it is and is format 6 from its first write", async () => {
    const dir = await tempDir()
    const writer = new LevelJournal(dir)
    await writer.open()
    await writer.append(entryRange(1, 20), { sync: false })
    await writer.close()
    await raw(dir, async (db) => {
      const meta = decodeMeta(await db.get("m:state"))
      if (typeof meta === "string" || meta.keySum === undefined) throw new Error("no state record")
      await db.put("m:state", encodeMeta({ ...meta, keySum: meta.keySum }, 5))
    })
    const state = async (): Promise<Record<string, unknown>> =>
      raw(
        dir,
        async (db) => JSON.parse((await db.get("m:state")).toString()) as Record<string, unknown>,
      )
    expect(await state()).toMatchObject({ v: 5 })
    expect(await state()).not.toHaveProperty("dedupe")
    const journal = await openJournal(dir)
    expect(await journal.stats()).toEqual({ pending: 20, dead: 0, scheduled: 0 })
    await journal.append([entry(21, { dedupeId: "x" })], { sync: false })
    await journal.close()
    expect(await state()).toMatchObject({ v: 7, pending: 21, dedupe: 1 })
    const again = await openJournal(dir)
    expect(await again.dedupeLookup(["x"])).toEqual([{ id: id(21) }])
    await again.close()
  })
})
