/**
 * What a passive holds for its journal (lib/pair/held-records.ts): records taken from it, at any
 * cut, leave a journal as the records applied one by one would; what cancels out is never
 * written.
 */
import { describe, expect, test } from "vitest"
import { packShapes } from "../../lib/codec.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import type { Journal, JournalEntry } from "../../lib/journal/types.js"
import { HeldRecords } from "../../lib/pair/held-records.js"
import { toWire, wireRecordsOf, type WireRecord } from "../../lib/pair/link-wire.js"
import {
  ReplicatedJournal,
  applyRecord,
  type ReplicationRecord,
} from "../../lib/pair/replicated-journal.js"
import { journalContents } from "../helpers/journal-contents.js"
import { entry, entryRange, id, idRange, letter } from "../suites/journal.js"

/** A record as the passive receives it. */
function wire(r: ReplicationRecord): WireRecord {
  const [w] = wireRecordsOf(r.seq, packShapes([toWire(r)])) ?? []
  if (w === undefined) throw new Error(`record ${r.seq} does not read back`)
  return w
}

/** Records numbered from 1. */
function numbered(ops: Record<string, unknown>[]): ReplicationRecord[] {
  return ops.map((op, i) => ({ ...op, seq: i + 1 }) as ReplicationRecord)
}

function held(records: readonly ReplicationRecord[], above?: string): HeldRecords {
  const h = new HeldRecords()
  h.above = above
  for (const r of records) h.push(wire(r), 0)
  return h
}

async function applied(records: readonly ReplicationRecord[], j?: Journal): Promise<Journal> {
  const journal = j ?? new MemoryJournal()
  await journal.open()
  for (const r of records) await applyRecord(journal, r, { sync: false })
  return journal
}

const ops = (records: readonly ReplicationRecord[]): string[] =>
  records.map((r) => {
    const n =
      "entries" in r
        ? r.entries.length
        : "ids" in r
          ? r.ids.length
          : "updates" in r
            ? r.updates.length
            : 0
    return `${r.op}:${n}`
  })

describe("HeldRecords", () => {
  test("a message appended and removed while held is neither written nor deleted", () => {
    const h = held(
      numbered([
        { op: "append", entries: entryRange(1, 10) },
        { op: "remove", ids: idRange(1, 5) },
        { op: "remove", ids: idRange(6, 10) },
      ]),
    )
    expect(h.length).toBe(3)
    const { records, lastId } = h.take(Infinity)
    expect(records).toEqual([])
    // The journal never sees id 10, but the node's ids must stay above it.
    expect(lastId).toBe(id(10))
    expect(h.length).toBe(0)
    expect(h.bytes).toBe(0)
  })

  test("a cut takes the older records without what a held removal cancels; the rest follow", () => {
    const h = held(
      numbered([
        { op: "append", entries: entryRange(1, 4) },
        { op: "append", entries: entryRange(5, 8) },
        { op: "remove", ids: [id(2), id(6)] },
        { op: "remove", ids: [id(3)] },
      ]),
    )
    const first = h.take(2)
    expect(ops(first.records)).toEqual(["append:2", "append:3"])
    expect(
      first.records.flatMap((r) => ("entries" in r ? r.entries.map((e) => e.id) : [])),
    ).toEqual([id(1), id(4), id(5), id(7), id(8)])
    expect(h.take(Infinity).records).toEqual([])
  })

  test("a removal of an entry the journal took already is kept", () => {
    const h = new HeldRecords()
    const [append, remove] = numbered([
      { op: "append", entries: entryRange(1, 3) },
      { op: "remove", ids: [id(2)] },
    ]) as [ReplicationRecord, ReplicationRecord]
    h.push(wire(append), 0)
    expect(ops(h.take(1).records)).toEqual(["append:3"])
    h.push(wire(remove), 0)
    expect(h.take(Infinity).records).toEqual([{ op: "remove", ids: [id(2)], seq: 2 }])
  })

  test("entries with a send id, not above the journal's last id, or named by another change are kept; an id appended again after its removal is appended again", async () => {
    const records = numbered([
      {
        op: "append",
        entries: [entry(1), entry(2, { dedupeId: "send-2" }), entry(3), entry(4), entry(5)],
      },
      { op: "update", updates: [{ id: id(4), attempts: 1, lastError: "failed" }] },
      { op: "remove", ids: idRange(1, 5), dedupe: { acked: ["send-2"], forget: [], at: 7 } },
      { op: "append", entries: [entry(6), entry(7)] },
      { op: "remove", ids: [id(7)] },
      { op: "append", entries: [entry(7)] },
    ])
    // The journal holds ids up to 1 already: entry 1 might be one of them.
    const { records: taken } = held(records, id(1)).take(Infinity)
    expect(ops(taken)).toEqual(["append:3", "update:1", "remove:3", "append:1", "append:1"])
    // 1 (not above the journal's last id), 2 (a send id) and 4 (updated) are kept, with their
    // removal; 7 went and came back: written once, by its second append.
    const kept = taken.flatMap((r) => ("entries" in r ? r.entries.map((e) => e.id) : []))
    expect(kept).toEqual([id(1), id(2), id(4), id(6), id(7)])
    const [a, b] = [await applied(records), await applied(taken)]
    expect(await journalContents(b, ["send-2"])).toEqual(await journalContents(a, ["send-2"]))
  })

  test("taken at random cuts, the records of random journal scripts leave the journal as applying them one by one does", async () => {
    let seed = 0x2f6b
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed / 2 ** 31
    }
    const pick = <T>(list: readonly T[]): T | undefined => list[Math.floor(random() * list.length)]
    const appended = (records: readonly ReplicationRecord[]): number =>
      records.reduce((n, r) => n + (r.op === "append" ? r.entries.length : 0), 0)
    let sent = 0
    let written = 0
    for (let script = 0; script < 40; script++) {
      const records: ReplicationRecord[] = []
      const active = new ReplicatedJournal(new MemoryJournal(), {
        onRecord: (r) => records.push(r),
      })
      await active.open()
      let next = 1
      const removed: JournalEntry[] = []
      for (let step = 0; step < 60; step++) {
        const pending = await active.pending({ limit: 1000 })
        const dead = await active.dead({ limit: 1000 })
        const roll = random()
        if (roll < 0.35) {
          const fresh: JournalEntry[] = []
          for (let k = 1 + Math.floor(random() * 6); k > 0; k--) {
            const n = next++
            fresh.push(entry(n, random() < 0.15 ? { dedupeId: `send-${n}` } : {}))
          }
          await active.append(fresh, { sync: false })
        } else if (roll < 0.65 && pending.length > 0) {
          const gone = pending.filter(() => random() < 0.6)
          const acked = gone.flatMap((e) => (e.dedupeId === undefined ? [] : [e.dedupeId]))
          removed.push(...gone)
          await active.remove(
            gone.map((e) => e.id),
            acked.length > 0 ? { acked, forget: [], at: step } : undefined,
          )
        } else if (roll < 0.75 && pending.length > 0) {
          const e = pick(pending) as JournalEntry
          await active.update([{ id: e.id, attempts: e.attempts + 1, lastError: "no" }])
        } else if (roll < 0.82 && pending.length > 0) {
          await active.bury([letter(pick(pending) as JournalEntry, "dead")])
        } else if (roll < 0.88 && dead.length > 0) {
          await active.replay([(pick(dead) as JournalEntry).id])
        } else if (roll < 0.92 && dead.length > 0) {
          await active.purgeDead([(pick(dead) as JournalEntry).id])
        } else if (roll < 0.97 && removed.length > 0) {
          // A write retried after its compensating remove: an id appended again.
          const again = pick(removed) as JournalEntry
          if (!pending.some((e) => e.id === again.id))
            await active.append([{ ...again, dedupeId: undefined }], { sync: false })
        }
      }
      const sequential = await applied(records)
      sent += appended(records)
      const h = held(records)
      const mirror = new MemoryJournal()
      await mirror.open()
      let cut = 0
      while (h.length > 0) {
        cut += 1 + Math.floor(random() * 8)
        const { records: taken } = h.take(cut)
        written += appended(taken)
        for (const r of taken) await applyRecord(mirror, r, { sync: false })
        h.above = await mirror.lastId()
      }
      const dedupe = Array.from({ length: next }, (_, n) => `send-${n}`)
      expect(await journalContents(mirror, dedupe)).toEqual(
        await journalContents(sequential, dedupe),
      )
    }
    // Entries were left out, and not all of them.
    expect(written).toBeLessThan(0.9 * sent)
    expect(written).toBeGreaterThan(0)
  })
})
