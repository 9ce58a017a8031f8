/**
 * The passive's log (lib/pair/passive-log.ts) and the binary entries of the pair link
 * (lib/pair/entries-wire.ts).
 */
import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, onTestFinished, test } from "vitest"
import type { JournalEntry } from "../../lib/journal/types.js"
import {
  decodeEntries,
  decodeIds,
  encodeEntries,
  encodeIds,
  idKey,
  idKeys,
  scanEntries,
} from "../../lib/pair/entries-wire.js"
import { PAIR_LOG_DIR, PassiveLog } from "../../lib/pair/passive-log.js"
import { entry, entryRange, id, idRange, letter } from "../suites/journal.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-pair-log-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const body = (n: number): Buffer => Buffer.alloc(100 + n, n)

async function segments(dir: string): Promise<string[]> {
  return (await readdir(join(dir, PAIR_LOG_DIR))).sort()
}

describe("PassiveLog", () => {
  test("bodies come back in order across segments; a segment goes once the journal holds all of it", async () => {
    const dir = await tempDir()
    const log = new PassiveLog(dir, { sync: false })
    await log.append("s1", 1, body(1), 2)
    await log.append("s1", 3, body(2), 3)
    log.rotate()
    await log.append("s1", 4, body(3), 6)
    log.rotate()
    await log.append("s1", 7, body(4), 7)
    expect(await segments(dir)).toHaveLength(3)
    await log.removeRotated(5)
    expect(await segments(dir)).toHaveLength(2)
    await log.close()

    const again = new PassiveLog(dir, { sync: false })
    const { bodies, damage } = await again.recover("s1")
    expect(damage).toBeUndefined()
    expect(bodies).toEqual([
      { first: 4, body: body(3) },
      { first: 7, body: body(4) },
    ])
    // Segments of another stream are dropped.
    const other = new PassiveLog(dir, { sync: false })
    expect((await other.recover("s2")).bodies).toEqual([])
    await other.removeRotated(Infinity)
    expect(await segments(dir)).toEqual([])
  })

  test("an entry cut at the end of a segment is not damage; a flipped byte is, named and kept aside", async () => {
    const dir = await tempDir()
    const log = new PassiveLog(dir, { sync: true })
    for (let k = 1; k <= 3; k++) await log.append("s", k, body(k), k)
    await log.close()
    const [name] = await segments(dir)
    const file = join(dir, PAIR_LOG_DIR, name as string)
    const size = (await readFile(file)).length
    await truncate(file, size - 10)
    const cut = await new PassiveLog(dir, { sync: false }).recover("s")
    expect(cut.damage).toBeUndefined()
    expect(cut.bodies.map((b) => b.first)).toEqual([1, 2])

    const bytes = await readFile(file)
    // The second entry's body: after the header, the first entry, and the second's head.
    const second = 8 + 1 + 1 + (16 + 101) + 16 + 5
    bytes[second] = (bytes[second] as number) ^ 0xff
    await writeFile(file, bytes)
    const flipped = await new PassiveLog(dir, { sync: false }).recover("s")
    expect(flipped.bodies.map((b) => b.first)).toEqual([1])
    expect(flipped.damage).toMatch(/\.log\.damaged: the entry at byte \d+ fails its checksum/)
    expect(await segments(dir)).toEqual([`${name as string}.damaged`])
  })

  test("a write that failed leaves a cut entry mid-log: the segments after it still count", async () => {
    const dir = await tempDir()
    const log = new PassiveLog(dir, { sync: false })
    await log.append("s", 1, body(1), 1)
    await log.append("s", 2, body(2), 2)
    await log.close()
    const [name] = await segments(dir)
    const file = join(dir, PAIR_LOG_DIR, name as string)
    await truncate(file, (await readFile(file)).length - 30)
    // The passive asked for 2 again; the log's next write starts a segment of its own.
    const again = new PassiveLog(dir, { sync: false })
    expect((await again.recover("s")).bodies.map((b) => b.first)).toEqual([1])
    await again.append("s", 2, body(2), 3)
    await again.append("s", 4, body(4), 4)
    const { bodies, damage } = await new PassiveLog(dir, { sync: false }).recover("s")
    expect(damage).toBeUndefined()
    expect(bodies.map((b) => b.first)).toEqual([1, 2, 4])
  })

  test("without a directory nothing is kept", async () => {
    const log = new PassiveLog(undefined, { sync: false })
    await log.append("s", 1, body(1), 1)
    expect(await log.recover("s")).toEqual({ bodies: [] })
  })
})

describe("entries on the pair link", () => {
  const rich: JournalEntry[] = [
    entry(1),
    entry(2, { notBefore: 1_700_000_001_000, attempts: 3, lastError: "timeout" }),
    entry(3, { priority: 7, key: "k", queue: "resize", headers: { a: "b", trace: "x" } }),
    entry(4, { dedupeId: "send-4", expiresAt: 1_900_000_000_000 }),
    entry(5, { payload: Buffer.alloc(70_000, 5) }),
  ]

  test("entries and dead letters decode as they were; the scan gives their ids and send ids", () => {
    const buf = encodeEntries(rich)
    expect(decodeEntries(buf, false)).toEqual(rich)
    const scan = scanEntries(buf)
    expect(scan?.count).toBe(5)
    expect(Array.from(scan?.keys ?? [])).toEqual(rich.flatMap((e) => idKey(e.id)))
    expect(Array.from(scan?.dedupe ?? [])).toEqual([0, 0, 0, 1, 0])
    const letters = [letter(entry(6), "gave up"), letter(entry(7, { key: "k" }), "bad")]
    expect(decodeEntries(encodeEntries(letters, true), true)).toEqual(letters)
    expect(decodeIds(encodeIds(idRange(1, 3)))).toEqual(idRange(1, 3))
    expect(Array.from(idKeys(encodeIds([id(0x1_0000_0002)])) ?? [])).toEqual([1, 2])
  })

  test("garbage never decodes: every cut, a flipped flag, a count beyond the bytes, an entry the journal would refuse", () => {
    const buf = encodeEntries(entryRange(1, 3).concat(rich))
    for (let n = 0; n < buf.length; n += 7) {
      expect(decodeEntries(buf.subarray(0, n), false)).toBeUndefined()
      expect(scanEntries(buf.subarray(0, n))).toBeUndefined()
    }
    const flipped = Buffer.from(buf)
    flipped[4 + 8] = 0xff // the first entry's flags: unknown ones
    expect(decodeEntries(flipped, false)).toBeUndefined()
    expect(scanEntries(flipped)).toBeUndefined()
    const counted = Buffer.from(buf)
    counted.writeUInt32LE(0xffff_ffff, 0)
    expect(scanEntries(counted)).toBeUndefined()
    // Priority 200 reads, but the journal refuses it: the scan does too.
    const bad = encodeEntries([entry(1, { priority: 200 })])
    expect(decodeEntries(bad, false)).toBeDefined()
    expect(scanEntries(bad)).toBeUndefined()
    expect(decodeEntries(encodeEntries([entry(1)]), true)).toBeUndefined() // a letter needs its error
    expect(idKeys(Buffer.alloc(7))).toBeUndefined()
  })
})
