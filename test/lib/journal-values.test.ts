/**
 * The value log of LevelJournal's format 4: batches' values in segment files, pointers in
 * LevelDB. Segments are reclaimed once nothing points into them; a missing, cut-short or damaged
 * segment is found and reported; large entries survive a SIGKILL byte for byte.
 */
import { once } from "node:events"
import { readdir, stat, truncate, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { describe, expect, test } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { encodeBatch, encodeBatchParts } from "../../lib/journal/level-batch.js"
import { SEGMENT_BYTES } from "../../lib/journal/level-values.js"
import type { JournalEntry } from "../../lib/journal/types.js"
import { batchValueAt, openJournal, raw, tempDir } from "../helpers/journal-files.js"
import { largePayload } from "../helpers/large-payload.js"
import { forkFixture } from "../helpers/processes.js"
import { entry, entryRange, id, idRange } from "../suites/journal.js"

const MiB = 1024 * 1024

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i)

async function segments(dir: string): Promise<string[]> {
  return (await readdir(join(dir, "values")).catch(() => [] as string[])).filter((n) =>
    n.endsWith(".vlog"),
  )
}

async function bytesIn(dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size
  return total
}

function large(n: number, size: number): JournalEntry {
  return { id: id(n), payload: largePayload(id(n), size), attempts: 0, enqueuedAt: n }
}

describe("the value log", { timeout: 60_000 }, () => {
  test("a batch's large payloads are parts of their own, not copied; the parts make the value", () => {
    const entries = [entry(1), large(2, 64 * 1024), entry(3), large(4, 20 * 1024)]
    entries[2]!.lastError = "boom"
    const { parts, length, key } = encodeBatchParts(entries, 16 * 1024)
    expect(parts).toHaveLength(4) // head, payload 2, entries 3 and 4 up to its payload, payload 4
    expect(parts[1]).toBe(entries[1]!.payload)
    expect(parts[3]).toBe(entries[3]!.payload)
    const whole = encodeBatch(entries)
    expect(key).toBe(whole.key)
    expect(length).toBe(whole.value.length)
    expect(Buffer.concat(parts).equals(whole.value)).toBe(true)
  })

  test("a batch's value is in a segment, LevelDB holds a pointer, and reads give it back", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.append([large(21, 64 * 1024)], { sync: true }) // one large entry: a batch too
    await journal.close()
    const keys = await raw(dir, (db) => db.keys({ gte: "b:", lt: "b;" }).all())
    expect(keys).toHaveLength(2)
    for (const key of keys) {
      const at = await batchValueAt(dir, key)
      expect(at.length).toBeGreaterThan(20 * 4)
      expect((await raw(dir, (db) => db.get(key))).length).toBe(19)
    }
    expect(await segments(dir)).toEqual(["000001.vlog"])
    const again = await openJournal(dir)
    const got = await again.pending({ limit: 100 })
    expect(got.map((e) => e.id)).toEqual(idRange(1, 21))
    expect(got[20]!.payload.equals(largePayload(id(21), 64 * 1024))).toBe(true)
  })

  test("segments are deleted once every batch in them is acked: the disk is given back", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    const n = Math.ceil((SEGMENT_BYTES * 1.5) / MiB) // across two segments
    for (let i = 1; i <= n; i++) await journal.append([large(i, MiB)], { sync: false })
    expect((await segments(dir)).length).toBe(2)
    await journal.remove(range(1, n - 1).map((i) => id(i)))
    // The first segment is gone; the second holds the one entry left.
    expect(await segments(dir)).toEqual(["000002.vlog"])
    expect((await journal.pending({ limit: 10 })).map((e) => e.id)).toEqual([id(n)])
    await journal.remove([id(n)])
    expect(await segments(dir)).toEqual([])
    await journal.close()
    expect(await bytesIn(dir)).toBeLessThan(4 * MiB) // LevelDB's own files, no payload
    const again = await openJournal(dir)
    expect(await again.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
    await again.append([large(n + 1, MiB)], { sync: false })
    expect(await segments(dir)).toHaveLength(1)
  })

  test("a segment with only a few batches left has them moved to the active one, and goes", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    const n = Math.ceil((SEGMENT_BYTES * 1.5) / MiB)
    for (let i = 1; i <= n; i++) await journal.append([large(i, MiB)], { sync: false })
    expect(await segments(dir)).toEqual(["000001.vlog", "000002.vlog"])
    // Two slow messages left in the first segment, and the last one in the second.
    const kept = [id(5), id(40), id(n)]
    await journal.remove(
      range(1, n)
        .map((i) => id(i))
        .filter((x) => !kept.includes(x)),
    )
    await journal.close() // waits for the compaction the remove started
    expect(await segments(dir)).toEqual(["000002.vlog"])
    const again = await openJournal(dir)
    const got = await again.pending({ limit: 10 })
    expect(got.map((e) => e.id)).toEqual(kept)
    for (const e of got) expect(e.payload.equals(largePayload(e.id, MiB)), e.id).toBe(true)
    await again.remove(kept)
    await again.close()
    expect(await segments(dir)).toEqual([])
  })

  test("segments whose batches are all pending are never moved, however few batches they hold", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    for (let a = 0; a < 3; a++)
      await journal.append(
        range(a * 4 + 1, a * 4 + 4).map((n) => large(n, 8 * MiB)),
        { sync: false },
      )
    await journal.close()
    const names = await segments(dir)
    expect(names).toHaveLength(3) // 32 MiB each: the second append would take one past 64 MiB
    for (const name of names) {
      const { size } = await stat(join(dir, "values", name))
      expect(size, name).toBeLessThan(33 * MiB) // nothing moved into any of them
    }
  })

  test("appends acked as they go keep taking the active segment while it is small: no file per batch", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    for (let b = 0; b < 10; b++) {
      const ns = range(b * 20 + 1, b * 20 + 20)
      await journal.append(
        ns.map((n) => entry(n)),
        { sync: false },
      )
      await journal.remove(ns.map((n) => id(n)))
      expect(await segments(dir)).toEqual(["000001.vlog"])
    }
    await journal.close()
    // Its record, with nothing in it, goes with the first write after the next open.
    const again = await openJournal(dir)
    await again.append(entryRange(201, 220), { sync: false })
    expect(await segments(dir)).toEqual(["000002.vlog"])
  })

  test("a missing segment: the open fails naming it; repair reports its batches lost", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.append(entryRange(21, 30), { sync: false })
    await journal.close()
    await unlink(join(dir, "values", "000001.vlog"))
    await expect(new LevelJournal(dir).open()).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringMatching(
        /value segment values\/000001\.vlog is missing, with 2 batches/,
      ) as string,
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 0, lost: 30, quarantined: 2 })
    expect(report.lostEntries.map((e) => e.count)).toEqual([20, 10])
    expect(report.lostEntries[0]!.reason).toMatch(/values\/000001\.vlog cannot be read/)
    const repaired = await openJournal(dir)
    expect(await repaired.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
    await repaired.append(entryRange(31, 40), { sync: false })
    expect((await repaired.pending({ limit: 100 })).map((e) => e.id)).toEqual(idRange(31, 40))
  })

  test("a segment record lost on disk: the open fails and keeps the segment; repair writes the record again", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.close()
    await raw(dir, (db) => db.del("v:00000001"))
    await expect(new LevelJournal(dir).open()).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
    })
    expect(await segments(dir)).toEqual(["000001.vlog"])
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 20, lost: 0 })
    expect(await raw(dir, (db) => db.keys({ gte: "v:", lt: "v;" }).all())).toEqual(["v:00000001"])
    const repaired = await openJournal(dir)
    expect((await repaired.pending({ limit: 100 })).map((e) => e.id)).toEqual(idRange(1, 20))
  })

  test("a segment cut short: the open fails; repair keeps the batches before the cut", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 20), { sync: false })
    await journal.append(entryRange(21, 40), { sync: false })
    await journal.close()
    const keys = await raw(dir, (db) => db.keys({ gte: "b:", lt: "b;" }).all())
    const second = await batchValueAt(dir, keys[1]!)
    await truncate(second.file, second.offset + 10)
    await expect(new LevelJournal(dir).open()).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringMatching(/values\/000001\.vlog is cut short/) as string,
    })
    const report = await LevelJournal.repair(dir)
    expect(report).toMatchObject({ pending: 20, lost: 20 })
    const repaired = await openJournal(dir)
    expect((await repaired.pending({ limit: 100 })).map((e) => e.id)).toEqual(idRange(1, 20))
  })

  test("a segment file no record names (an append that never reached LevelDB) is deleted at open", async () => {
    const dir = await tempDir()
    const journal = await openJournal(dir)
    await journal.append(entryRange(1, 10), { sync: false })
    await journal.close()
    await writeFile(join(dir, "values", "000007.vlog"), Buffer.alloc(4096, 1))
    const again = await openJournal(dir)
    expect(await segments(dir)).toEqual(["000001.vlog"])
    expect(await again.stats()).toEqual({ pending: 10, dead: 0, scheduled: 0 })
    await again.append(entryRange(11, 20), { sync: false })
    // A new segment takes the number after the highest ever seen.
    expect(await segments(dir)).toEqual(["000001.vlog", "000008.vlog"])
  })

  for (const durability of ["os", "fsync"] as const) {
    test(`8 MiB entries at "${durability}" survive a SIGKILL mid-append, byte for byte`, async () => {
      const dir = await tempDir()
      const size = 8 * MiB
      const child = forkFixture("journal-large-appender.ts", [dir, String(size), durability, "40"])
      const resolved: string[] = []
      const killAt = 5
      child.process.on("message", (m: { type?: string; id?: string }) => {
        if (m.type !== "resolved" || m.id === undefined) return
        resolved.push(m.id)
        if (resolved.length === killAt) child.process.kill("SIGKILL") // the next append is under way
      })
      const [, signal] = (await once(child.process, "exit")) as [number | null, string | null]
      expect(signal).toBe("SIGKILL")
      expect(resolved.length).toBeGreaterThanOrEqual(killAt)
      const journal = await openJournal(dir)
      const got = await journal.pending({ limit: 100 })
      const byId = new Map(got.map((e) => [e.id, e]))
      for (const rid of resolved) {
        const e = byId.get(rid)
        expect(e, rid).toBeDefined()
        expect(e!.payload.equals(largePayload(rid, size)), rid).toBe(true)
      }
      // An append cut short by the kill is there whole or not at all.
      for (const e of got) expect(e.payload.equals(largePayload(e.id, size)), e.id).toBe(true)
    })
  }
})
