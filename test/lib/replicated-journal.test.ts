import fc from "fast-check"
import { describe, expect, onTestFinished, test } from "vitest"
import { TAKES_SPLIT_BODIES, splitBody } from "../../lib/body.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import type { DeadLetter, Journal, JournalEntry } from "../../lib/journal/types.js"
import {
  ReplicatedJournal,
  ReplicationApplier,
  type ReplicationRecord,
} from "../../lib/pair/replicated-journal.js"
import { DEDUPE_IDS, everyChange } from "../helpers/journal-changes.js"
import { journalContents } from "../helpers/journal-contents.js"
import { tempDir } from "../helpers/journal-files.js"
import { entry, id, journalSuite, letter } from "../suites/journal.js"

function ignore(): void {}

journalSuite("ReplicatedJournal over MemoryJournal", async () => ({
  journal: new ReplicatedJournal(new MemoryJournal(), { onRecord: ignore }),
}))

journalSuite("ReplicatedJournal over LevelJournal", async () => {
  const dir = await tempDir()
  const open = (): Journal => new ReplicatedJournal(new LevelJournal(dir), { onRecord: ignore })
  return { journal: open(), reopen: open }
})

type Kind = "memory" | "level"

async function make(kind: Kind): Promise<Journal> {
  const journal = kind === "memory" ? new MemoryJournal() : new LevelJournal(await tempDir())
  await journal.open()
  onTestFinished(() => journal.close())
  return journal
}

/** A journal on the active side and everything it emitted. */
async function source(
  kind: Kind,
): Promise<{ journal: ReplicatedJournal; records: ReplicationRecord[] }> {
  const records: ReplicationRecord[] = []
  const journal = new ReplicatedJournal(await make(kind), { onRecord: (r) => records.push(r) })
  return { journal, records }
}

const contents = journalContents

const BASE = 1_700_000_000_000
const someIds = fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 4 })
/** A change a sender could make (see `change`). */
const changeArb = fc.oneof(
  fc.record({ t: fc.constant("append" as const), ns: someIds, dedupe: fc.boolean() }),
  fc.record({
    t: fc.constant("schedule" as const),
    ns: someIds,
    at: fc.integer({ min: 1, max: 9 }),
  }),
  fc.record({ t: fc.constant("promote" as const), at: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ t: fc.constant("unschedule" as const), ns: someIds }),
  fc.record({ t: fc.constant("remove" as const), ns: someIds, ack: fc.boolean() }),
  fc.record({
    t: fc.constant("update" as const),
    ns: someIds,
    attempts: fc.integer({ min: 1, max: 5 }),
  }),
  fc.record({ t: fc.constant("bury" as const), ns: someIds }),
  fc.record({ t: fc.constant("replay" as const), ns: someIds }),
  fc.record({ t: fc.constant("purge" as const), ns: someIds }),
  fc.record({ t: fc.constant("forget" as const), at: fc.integer({ min: 1, max: 9 }) }),
)
type Change = typeof changeArb extends fc.Arbitrary<infer T> ? T : never

/** Makes one change, following the sender's rules: new ids only for new messages, changes only to pending ones. */
async function change(journal: Journal, o: Change): Promise<void> {
  const pendingIds = new Set((await journal.pending({ limit: 100 })).map((e) => e.id))
  const taken = new Set([
    ...pendingIds,
    ...((await journal.due?.({ until: Infinity, limit: 100 })) ?? []).map((e) => e.id),
    ...(await journal.dead()).map((e) => e.id),
  ])
  const fresh = [...new Set(o.t === "append" || o.t === "schedule" ? o.ns : [])].filter(
    (k) => !taken.has(id(k)),
  )
  const mine = [...new Set("ns" in o ? o.ns : [])].map(id).filter((i) => pendingIds.has(i))
  switch (o.t) {
    case "append":
      return journal.append(
        fresh.map((k) => entry(k, o.dedupe ? { dedupeId: `d${k}` } : {})),
        { sync: false },
      )
    case "schedule":
      return journal.schedule?.(
        fresh.map((k) => entry(k, { notBefore: BASE + o.at, dedupeId: `d${k}` })),
        { sync: false },
      )
    case "promote":
      await journal.promote?.((await journal.due?.({ until: BASE + o.at, limit: 100 })) ?? [], {
        sync: false,
      })
      return
    case "unschedule":
      await journal.unschedule?.(o.ns.map(id))
      return
    case "remove": {
      const acked = mine.map((i) => `d${parseInt(i, 16)}`)
      return journal.remove(mine, o.ack ? { acked, forget: [], at: BASE + 5 } : undefined)
    }
    case "update":
      return journal.update(mine.map((i) => ({ id: i, attempts: o.attempts })))
    case "bury": {
      const all = await journal.pending({ limit: 100 })
      return journal.bury(all.filter((e) => mine.includes(e.id)).map((e) => letter(e)))
    }
    case "replay":
      await journal.replay(o.ns.map(id))
      return
    case "purge":
      await journal.purgeDead(o.ns.map(id))
      return
    case "forget":
      await journal.dedupeForget?.(BASE + o.at)
      return
  }
}

describe("ReplicatedJournal", () => {
  test("emits each change once it is written, with seqs 1, 2, 3…", async () => {
    const { journal, records } = await source("memory")
    await everyChange(journal)
    expect(records.map((r) => r.op)).toEqual([
      "append",
      "update",
      "remove",
      "bury",
      "replay",
      "purge",
      "schedule",
      "promote",
      "unschedule",
      "dedupe",
      "remove",
    ])
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1))
    expect(journal.seq).toBe(records.length)
    // Results, not intents: the ids the journal acted on.
    expect(records.find((r) => r.op === "replay")).toMatchObject({
      entries: [{ id: id(3), attempts: 0 }],
    })
    expect(records.find((r) => r.op === "promote")).toMatchObject({
      entries: [{ id: id(11), notBefore: 1_700_000_400_000 }],
    })
    expect(records.find((r) => r.op === "unschedule")).toMatchObject({ ids: [id(12)] })
    expect(records.find((r) => r.op === "remove")).toMatchObject({
      ids: [id(1)],
      dedupe: { acked: ["send-1"], forget: [], at: 1_700_000_002_000 },
    })
  })

  test("changes that change nothing emit nothing", async () => {
    const { journal, records } = await source("memory")
    await journal.append([], { sync: false })
    await journal.remove([])
    await journal.update([])
    await journal.bury([])
    await journal.replay([id(1)])
    await journal.purgeDead([id(1)])
    await journal.unschedule?.([id(1)])
    await journal.promote?.([entry(1)], { sync: false })
    await journal.dedupeForget?.(Date.now())
    expect(records).toEqual([])
  })

  test("a write that fails emits nothing, and the seq does not move; an append that fails is undone on the passive", async () => {
    class Full extends MemoryJournal {
      override append(): Promise<void> {
        return Promise.reject(new Error("disk full"))
      }
      override update(): Promise<void> {
        return Promise.reject(new Error("disk full"))
      }
    }
    const records: ReplicationRecord[] = []
    const journal = new ReplicatedJournal(new Full(), { onRecord: (r) => records.push(r), seq: 41 })
    await expect(journal.update([{ id: id(1), attempts: 1 }])).rejects.toThrow("disk full")
    expect(records).toEqual([])
    // An append is emitted before its local write (the passive writes at the same time); its
    // failure is followed by a remove of those entries and their send ids.
    await expect(
      journal.append([entry(1), entry(2, { dedupeId: "send-2" })], { sync: false }),
    ).rejects.toThrow("disk full")
    expect(records.map((r) => [r.seq, r.op])).toEqual([
      [42, "append"],
      [43, "remove"],
    ])
    expect(records[1]).toMatchObject({
      ids: [id(1), id(2)],
      dedupe: { acked: [], forget: ["send-2"] },
    })
    // Applied in order on another journal, the pair leaves nothing behind.
    const passive = new MemoryJournal()
    await passive.open()
    await new ReplicationApplier(passive, { sync: false }).apply(
      records.map((r) => ({ ...r, seq: r.seq - 41 })),
    )
    expect(await passive.pending({ limit: 10 })).toEqual([])
    expect(await passive.dedupeLookup?.(["send-2"])).toEqual([undefined])
  })

  test("records keep copies: a caller that reuses its objects does not change them", async () => {
    const { journal, records } = await source("memory")
    const e = entry(1)
    const ids = [id(1)]
    await journal.append([e], { sync: false })
    await journal.remove(ids)
    e.attempts = 9
    ids[0] = id(2)
    expect(records[0]).toMatchObject({ entries: [{ attempts: 0 }] })
    expect(records[1]).toMatchObject({ ids: [id(1)] })
  })

  test("has the optional methods its journal has, and takes split bodies when it does", async () => {
    const bare: Journal = {
      persistent: false,
      open: async () => {},
      close: async () => {},
      append: async () => {},
      remove: async () => {},
      update: async () => {},
      bury: async () => {},
      pending: async () => [],
      dead: async () => [],
      replay: async () => [],
      purgeDead: async () => 0,
      lastId: async () => undefined,
      stats: async () => ({ pending: 0, dead: 0 }),
    }
    const over = new ReplicatedJournal(bare, { onRecord: ignore })
    for (const m of ["schedule", "due", "nextDue", "promote", "unschedule", "senderId"] as const)
      expect(over[m]).toBeUndefined()
    expect(TAKES_SPLIT_BODIES in over).toBe(false)
    const level = new ReplicatedJournal(new LevelJournal(await tempDir()), { onRecord: ignore })
    expect(typeof level.schedule).toBe("function")
    expect(level.persistent).toBe(true)
    expect(TAKES_SPLIT_BODIES in level).toBe(true)
    expect(new ReplicatedJournal(new MemoryJournal(), { onRecord: ignore }).persistent).toBe(false)
  })

  test("a record holds a split body whole", async () => {
    const { journal, records } = await source("level")
    const rest = Buffer.alloc(70 * 1024, 0xab)
    const prefix = Buffer.from([0xc6, 0, 1, 0x18, 0])
    await journal.append([entry(1, { payload: splitBody(prefix, rest) })], { sync: false })
    const [record] = records
    expect(record?.op).toBe("append")
    const payload = record?.op === "append" ? record.entries[0]?.payload : undefined
    expect(payload?.equals(Buffer.concat([prefix, rest]))).toBe(true)
    const [stored] = await journal.pending({ limit: 1 })
    expect(stored?.payload.equals(Buffer.concat([prefix, rest]))).toBe(true)
  })

  test("checks its arguments", () => {
    expect(() => new ReplicatedJournal({} as Journal, { onRecord: ignore })).toThrow(TypeError)
    expect(
      () => new ReplicatedJournal(new MemoryJournal(), {} as { onRecord: () => void }),
    ).toThrow("'onRecord' must be a function")
    expect(() => new ReplicatedJournal(new MemoryJournal(), { onRecord: ignore, seq: -1 })).toThrow(
      RangeError,
    )
  })
})

describe("ReplicationApplier", () => {
  for (const [from, to] of [
    ["memory", "memory"],
    ["level", "level"],
    ["memory", "level"],
    ["level", "memory"],
  ] as const) {
    test(`the stream of a ${from} journal makes a ${to} journal hold the same`, async () => {
      const { journal, records } = await source(from)
      await everyChange(journal)
      const mirror = await make(to)
      const applier = new ReplicationApplier(mirror, { sync: false })
      expect(await applier.apply(records)).toBe(records.length)
      expect(await contents(mirror, DEDUPE_IDS)).toEqual(await contents(journal, DEDUPE_IDS))
      // Not vacuous: there is something of each kind.
      expect(await contents(mirror, DEDUPE_IDS)).toMatchObject({
        stats: { pending: 3, dead: 1, scheduled: 1 },
        dedupe: [null, null, { id: id(10) }],
      })
    })
  }

  test("records applied one batch at a time, as they arrive, give the same result", async () => {
    const mirror = await make("memory")
    const applier = new ReplicationApplier(mirror, { sync: true })
    const applying: Promise<number>[] = []
    const records: ReplicationRecord[] = []
    const journal = new ReplicatedJournal(await make("memory"), {
      onRecord: (r) => {
        records.push(r)
        applying.push(applier.apply([r]))
      },
    })
    await everyChange(journal)
    expect(await Promise.all(applying)).toEqual(records.map((r) => r.seq))
    expect(await contents(mirror, DEDUPE_IDS)).toEqual(await contents(journal, DEDUPE_IDS))
  })

  test("repeats are skipped, and a gap is refused with PIRATE_PROTOCOL", async () => {
    const { journal, records } = await source("memory")
    await everyChange(journal)
    const mirror = await make("memory")
    const applier = new ReplicationApplier(mirror, { sync: false })
    await applier.apply(records.slice(0, 3))
    expect(await applier.apply(records.slice(0, 4))).toBe(4)
    await expect(applier.apply(records.slice(5))).rejects.toMatchObject({
      code: "PIRATE_PROTOCOL",
      message: expect.stringContaining("records 5 to 5 are missing") as unknown,
    })
    expect(applier.applied).toBe(4)
    // The applier goes on after a refusal.
    expect(await applier.apply(records.slice(4))).toBe(records.length)
    expect(await contents(mirror, DEDUPE_IDS)).toEqual(await contents(journal, DEDUPE_IDS))
  })

  test("a record the passive's journal cannot apply is refused, naming the method", async () => {
    const bare = { persistent: false, append: async () => {} } as unknown as Journal
    const applier = new ReplicationApplier(bare, { sync: false })
    await expect(
      applier.apply([{ seq: 1, op: "schedule", entries: [entry(1, { notBefore: 1 })] }]),
    ).rejects.toThrow("the journal has no schedule()")
    expect(applier.applied).toBe(0)
    expect(await applier.apply([{ seq: 1, op: "append", entries: [entry(1)] }])).toBe(1)
  })

  test("a position that lags re-applies a tail, with the same result (every op is idempotent)", async () => {
    const { journal, records } = await source("level")
    await everyChange(journal)
    const expected = await contents(journal, DEDUPE_IDS)
    for (let from = 0; from < records.length; from++) {
      const mirror = await make("level")
      await new ReplicationApplier(mirror, { sync: false }).apply(records)
      // A restart with the position saved at `from`: everything after it is applied again.
      await new ReplicationApplier(mirror, { sync: false, applied: from }).apply(records)
      expect(await contents(mirror, DEDUPE_IDS)).toEqual(expected)
    }
  })

  test("property: any sequence of changes, streamed, gives the mirror the same contents", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(changeArb, { maxLength: 30 }), async (changes) => {
        const { journal, records } = await source("memory")
        for (const c of changes) await change(journal, c)
        const mirror = await make("memory")
        await new ReplicationApplier(mirror, { sync: false }).apply(records)
        const dedupeIds = Array.from({ length: 16 }, (_, k) => `d${k + 1}`)
        expect(await contents(mirror, dedupeIds)).toEqual(await contents(journal, dedupeIds))
      }),
      { numRuns: 150 },
    )
  })

  test("property: a full copy (pages read at any time after s0, then the records after s0) converges", async () => {
    // docs/pair.md section 3.4: the pages of pending, scheduled and dead entries are read one by
    // one while the journal keeps changing; the records after s0 applied afterwards fix them up.
    const picks = fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat())
    await fc.assert(
      fc.asyncProperty(
        fc.array(changeArb, { minLength: 1, maxLength: 30 }),
        picks,
        async (changes, [s0Pick, p1, p2, p3]) => {
          const { journal, records } = await source("memory")
          const pages: {
            seq: number
            pending: JournalEntry[]
            scheduled: JournalEntry[]
            dead: DeadLetter[]
          }[] = []
          const read = async (): Promise<void> => {
            pages.push({
              seq: records.length,
              pending: await journal.pending({ limit: 1000 }),
              scheduled: (await journal.due?.({ until: Infinity, limit: 1000 })) ?? [],
              dead: await journal.dead(),
            })
          }
          await read()
          for (const c of changes) {
            await change(journal, c)
            await read()
          }
          const s0Page = s0Pick % pages.length
          const s0 = pages[s0Page]?.seq ?? 0
          const later = pages.slice(s0Page)
          const at = (k: number): (typeof pages)[number] => {
            const page = later[k % later.length]
            if (page === undefined) throw new Error("no page")
            return page
          }
          const mirror = await make("memory")
          const pending = at(p1).pending
          const scheduled = at(p2).scheduled
          const dead = at(p3).dead
          await mirror.append(pending, { sync: false })
          await mirror.schedule?.(scheduled, { sync: false })
          await mirror.bury(dead)
          await new ReplicationApplier(mirror, { sync: false, applied: s0 }).apply(records)
          const entries = async (j: Journal): Promise<unknown> => {
            const all = await contents(j)
            return { pending: all["pending"], dead: all["dead"], scheduled: all["scheduled"] }
          }
          expect(await entries(mirror)).toEqual(await entries(journal))
        },
      ),
      { numRuns: 300 },
    )
  })
})
