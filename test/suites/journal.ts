/**
 * The shared suite every `Journal` implementation runs (like abstract-level's test/index.js):
 * `journalSuite("MemoryJournal", async () => ({ journal: new MemoryJournal() }))`.
 */
import { randomBytes } from "node:crypto"
import fc from "fast-check"
import { describe, expect, onTestFinished, test } from "vitest"
import type { DeadLetter, Journal, JournalEntry } from "../../lib/journal/types.js"

export interface JournalFixture {
  /** A new, not yet opened journal on fresh storage. */
  journal: Journal
  /**
   * For persistent journals: a new, not yet opened journal on the same storage. The suite closes
   * the previous one first.
   */
  reopen?: () => Journal | Promise<Journal>
}

/** Makes a fixture; called once per test (or per property run), inside the test. */
export type JournalFactory = () => Promise<JournalFixture>

/** A message id in the format of `IdGenerator` (16 hex digits) from a small number. */
export function id(n: number): string {
  return n.toString(16).padStart(16, "0")
}

export function entry(n: number, extra: Partial<JournalEntry> = {}): JournalEntry {
  return {
    id: id(n),
    payload: Buffer.from(`payload ${n}`),
    attempts: 0,
    enqueuedAt: 1_700_000_000_000 + n,
    ...extra,
  }
}

/** The entries `from` … `to`, as `entry()` makes them. */
export function entryRange(from: number, to: number): JournalEntry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => entry(from + i))
}

/** The ids `from` … `to`. */
export function idRange(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => id(from + i))
}

export function letter(
  e: JournalEntry,
  lastError = "boom",
  deadAt = 1_800_000_000_000,
): DeadLetter {
  return { ...e, lastError, deadAt }
}

/** Opens a journal and closes it when the test finishes. */
async function opened(journal: Journal): Promise<Journal> {
  await journal.open()
  onTestFinished(() => journal.close())
  return journal
}

const ids = (entries: readonly { id: string }[]): string[] => entries.map((e) => e.id)

export function journalSuite(name: string, factory: JournalFactory): void {
  describe(`${name} (journal suite)`, () => {
    async function setup(): Promise<{
      journal: Journal
      reopen: (() => Promise<Journal>) | undefined
    }> {
      const fixture = await factory()
      let current = await opened(fixture.journal)
      const make = fixture.reopen
      const reopen =
        make === undefined
          ? undefined
          : async (): Promise<Journal> => {
              await current.close()
              current = await opened(await make())
              return current
            }
      return { journal: current, reopen }
    }

    test("a new journal is empty", async () => {
      const { journal } = await setup()
      expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(await journal.lastId()).toBeUndefined()
      expect(await journal.pending({ limit: 10 })).toEqual([])
      expect(await journal.dead()).toEqual([])
    })

    test("open() and close() are idempotent", async () => {
      const { journal } = await setup()
      await Promise.all([journal.open(), journal.open()])
      await journal.append([entry(1)], { sync: false })
      await Promise.all([journal.close(), journal.close()])
      await journal.close()
    })

    test("persistent says whether entries outlive the process", async () => {
      const { journal, reopen } = await setup()
      expect(journal.persistent).toBe(reopen !== undefined)
    })

    test("pending() returns appended entries in id order with every field", async () => {
      const { journal } = await setup()
      const a = entry(3)
      const b = entry(1, { attempts: 2, lastError: "timeout", notBefore: 1_700_000_005_000 })
      const c = entry(2, { lastError: "" })
      await journal.append([a, b], { sync: false })
      await journal.append([c], { sync: true })
      const got = await journal.pending({ limit: 10 })
      expect(ids(got)).toEqual([id(1), id(2), id(3)])
      expect(got).toEqual([b, c, a])
      expect(got[0]).not.toHaveProperty("dead")
      expect(Object.keys(got[2]!).sort()).toEqual(["attempts", "enqueuedAt", "id", "payload"])
      expect(await journal.stats()).toEqual({ pending: 3, dead: 0, scheduled: 0 })
    })

    test("an empty append changes nothing", async () => {
      const { journal } = await setup()
      await journal.append([], { sync: false })
      await journal.append([], { sync: true })
      expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(await journal.lastId()).toBeUndefined()
    })

    test("pending() pages with after, until and limit", async () => {
      const { journal } = await setup()
      await journal.append(
        Array.from({ length: 10 }, (_, i) => entry(i + 1)),
        { sync: false },
      )
      expect(ids(await journal.pending({ limit: 3 }))).toEqual([id(1), id(2), id(3)])
      expect(ids(await journal.pending({ after: id(3), limit: 3 }))).toEqual([id(4), id(5), id(6)])
      expect(ids(await journal.pending({ after: id(8), limit: 5 }))).toEqual([id(9), id(10)])
      expect(ids(await journal.pending({ after: id(10), limit: 5 }))).toEqual([])
      expect(ids(await journal.pending({ until: id(2), limit: 5 }))).toEqual([id(1), id(2)])
      expect(ids(await journal.pending({ after: id(4), until: id(6), limit: 10 }))).toEqual([
        id(5),
        id(6),
      ])
      expect(ids(await journal.pending({ after: id(4), until: id(9), limit: 2 }))).toEqual([
        id(5),
        id(6),
      ])
      expect(ids(await journal.pending({ after: id(6), until: id(6), limit: 2 }))).toEqual([])
      expect(ids(await journal.pending({ until: id(0), limit: 2 }))).toEqual([])
      expect(await journal.pending({ limit: 0 })).toEqual([])
      // `after` need not be a stored id
      expect(ids(await journal.pending({ after: "0000000000000004x", limit: 2 }))).toEqual([
        id(5),
        id(6),
      ])
      expect(await journal.pending({ limit: Infinity })).toHaveLength(10)
    })

    test("paging through many entries returns each once, in order", async () => {
      const { journal } = await setup()
      const n = 2_500
      for (let i = 0; i < n; i += 500) {
        await journal.append(
          Array.from({ length: 500 }, (_, k) => entry(i + k + 1)),
          { sync: false },
        )
      }
      const seen: string[] = []
      let after: string | undefined
      for (;;) {
        const page = await journal.pending(
          after === undefined ? { limit: 333 } : { after, limit: 333 },
        )
        if (page.length === 0) break
        seen.push(...ids(page))
        after = page.at(-1)!.id
      }
      expect(seen).toEqual(Array.from({ length: n }, (_, i) => id(i + 1)))
    })

    test("remove() deletes entries and ignores unknown ids", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2), entry(3)], { sync: false })
      await journal.remove([id(2), id(9), id(2)])
      expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(1), id(3)])
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      await journal.remove([id(2)])
      await journal.remove([])
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      await journal.remove([id(1), id(3)])
      expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(await journal.pending({ limit: 10 })).toEqual([])
    })

    test("remove() takes ids in any order, across appends", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2), entry(3)], { sync: false })
      await journal.append([entry(4), entry(5), entry(6)], { sync: false })
      await journal.remove([id(5), id(2), id(6), id(1), id(5)])
      expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(3), id(4)])
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
    })

    test("update() records attempts, lastError and notBefore", async () => {
      const { journal } = await setup()
      const e = entry(1, { payload: Buffer.from([0, 1, 2, 255]) })
      await journal.append([e, entry(2)], { sync: false })
      await journal.update([
        { id: id(1), attempts: 1, lastError: "worker lost", notBefore: 1_700_000_009_000 },
      ])
      expect((await journal.pending({ limit: 1 }))[0]).toEqual({
        ...e,
        attempts: 1,
        lastError: "worker lost",
        notBefore: 1_700_000_009_000,
      })
      // fields left out are cleared; payload and enqueuedAt stay
      await journal.update([{ id: id(1), attempts: 2 }])
      expect((await journal.pending({ limit: 1 }))[0]).toEqual({ ...e, attempts: 2 })
      expect((await journal.pending({ after: id(1), limit: 1 }))[0]).toEqual(entry(2))
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
    })

    test("update() never resurrects a removed entry and ignores unknown ids", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2)], { sync: false })
      await journal.remove([id(1)])
      await journal.update([
        { id: id(1), attempts: 3, lastError: "late" },
        { id: id(7), attempts: 1 },
        { id: id(2), attempts: 1, lastError: "x" },
      ])
      expect(await journal.pending({ limit: 10 })).toEqual([
        { ...entry(2), attempts: 1, lastError: "x" },
      ])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
      await journal.update([])
    })

    test("update() of a buried entry does not bring it back", async () => {
      const { journal } = await setup()
      await journal.append([entry(1)], { sync: false })
      await journal.bury([letter(entry(1))])
      await journal.update([{ id: id(1), attempts: 9 }])
      expect(await journal.pending({ limit: 10 })).toEqual([])
      expect(await journal.dead()).toEqual([letter(entry(1))])
    })

    test("bury() moves entries to the dead letters", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2), entry(3)], { sync: false })
      const d1 = letter({ ...entry(1), attempts: 5 }, "too many attempts", 1_800_000_000_001)
      const d3 = letter(entry(3), "rejected: bad input", 1_800_000_000_003)
      await journal.bury([d3, d1])
      expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(2)])
      expect(await journal.dead()).toEqual([d1, d3])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 2, scheduled: 0 })
      // burying again (or an id that is not pending) counts each dead letter once
      await journal.bury([d1, letter(entry(8))])
      expect(ids(await journal.dead())).toEqual([id(1), id(3), id(8)])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 3, scheduled: 0 })
      await journal.bury([])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 3, scheduled: 0 })
    })

    test("dead() pages with after and limit", async () => {
      const { journal } = await setup()
      const entries = Array.from({ length: 6 }, (_, i) => entry(i + 1))
      await journal.append(entries, { sync: false })
      await journal.bury(entries.map((e) => letter(e)))
      expect(ids(await journal.dead({ limit: 2 }))).toEqual([id(1), id(2)])
      expect(ids(await journal.dead({ after: id(2), limit: 2 }))).toEqual([id(3), id(4)])
      expect(ids(await journal.dead({ after: id(4) }))).toEqual([id(5), id(6)])
      expect(ids(await journal.dead({ after: id(6) }))).toEqual([])
      expect(await journal.dead({ limit: 0 })).toEqual([])
      expect(await journal.dead({})).toHaveLength(6)
    })

    test("replay() moves dead letters back with attempts reset and the same id", async () => {
      const { journal } = await setup()
      const e = entry(1, { payload: randomBytes(100) })
      await journal.append([e, entry(2)], { sync: false })
      await journal.update([
        { id: id(1), attempts: 4, lastError: "nope", notBefore: 1_700_000_100_000 },
      ])
      await journal.bury([letter({ ...e, attempts: 5 }, "gave up")])
      const moved = await journal.replay([id(9), id(1), id(2), id(1)])
      expect(moved).toEqual([e])
      expect(await journal.dead()).toEqual([])
      expect(await journal.pending({ limit: 10 })).toEqual([e, entry(2)])
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      expect(await journal.replay([id(1)])).toEqual([])
      expect(await journal.replay([])).toEqual([])
    })

    test("replay() returns the moved entries in id order, whatever the order asked", async () => {
      const { journal } = await setup()
      const letters = [3, 1, 2].map((n) => letter(entry(n, { attempts: n, notBefore: n }), `e${n}`))
      await journal.bury(letters)
      const moved = await journal.replay([id(3), id(7), id(1), id(2)])
      expect(moved).toEqual([entry(1), entry(2), entry(3)])
      moved[0]!.attempts = 99
      expect(await journal.pending({ limit: 10 })).toEqual([entry(1), entry(2), entry(3)])
    })

    test("replay() of an id that is also pending (appended again after it was buried) counts it once", async () => {
      const { journal, reopen } = await setup()
      await journal.bury([letter(entry(1), "gave up")])
      await journal.append([entry(1)], { sync: false })
      expect(await journal.stats()).toEqual({ pending: 1, dead: 1, scheduled: 0 })
      expect(ids(await journal.replay([id(1)]))).toEqual([id(1)])
      expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(1)])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
      if (reopen)
        expect(await (await reopen()).stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
    })

    test("purgeDead() deletes dead letters and counts them", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2), entry(3)], { sync: false })
      await journal.bury([letter(entry(1)), letter(entry(2))])
      expect(await journal.purgeDead([id(1), id(3), id(7), id(1)])).toBe(1)
      expect(ids(await journal.dead())).toEqual([id(2)])
      expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(3)])
      expect(await journal.stats()).toEqual({ pending: 1, dead: 1, scheduled: 0 })
      expect(await journal.purgeDead([id(2)])).toBe(1)
      expect(await journal.purgeDead([])).toBe(0)
      expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
    })

    test("lastId() is the greatest id ever stored, even once everything is gone", async () => {
      const { journal } = await setup()
      await journal.append([entry(5), entry(2)], { sync: false })
      expect(await journal.lastId()).toBe(id(5))
      await journal.append([entry(3)], { sync: false })
      expect(await journal.lastId()).toBe(id(5))
      await journal.bury([letter(entry(9))])
      expect(await journal.lastId()).toBe(id(9))
      await journal.remove([id(5), id(2), id(3)])
      expect(await journal.purgeDead([id(9)])).toBe(1)
      expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(await journal.lastId()).toBe(id(9))
    })

    test("re-appending a stored id replaces it and counts it once", async () => {
      const { journal } = await setup()
      await journal.append([entry(1), entry(2), entry(2, { attempts: 1 })], { sync: false })
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      await journal.append([entry(1, { payload: Buffer.from("again") })], { sync: false })
      expect(await journal.stats()).toEqual({ pending: 2, dead: 0, scheduled: 0 })
      expect((await journal.pending({ limit: 1 }))[0]!.payload.toString()).toBe("again")
    })

    test("payloads round-trip byte for byte", async () => {
      const { journal, reopen } = await setup()
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const big = randomBytes(1024 * 1024)
      const payloads = [
        Buffer.alloc(0),
        everyByte,
        big,
        Buffer.from("héllo ✓ 🏴‍☠️"),
        Buffer.alloc(1000),
      ]
      await journal.append(
        payloads.map((payload, i) => entry(i + 1, { payload })),
        { sync: false },
      )
      await journal.bury([letter(entry(3, { payload: big }), "x".repeat(10_000))])
      await journal.update([{ id: id(2), attempts: 1, lastError: "e\u0000\n\u{1F600}" }])
      const check = async (j: Journal): Promise<void> => {
        const got = await j.pending({ limit: 10 })
        expect(ids(got)).toEqual([id(1), id(2), id(4), id(5)])
        for (const e of got) expect(Buffer.isBuffer(e.payload)).toBe(true)
        expect(got[0]!.payload).toHaveLength(0)
        expect(got[1]!.payload.equals(everyByte)).toBe(true)
        expect(got[1]!.lastError).toBe("e\u0000\n\u{1F600}")
        expect(got[2]!.payload.equals(payloads[3]!)).toBe(true)
        expect(got[3]!.payload.equals(Buffer.alloc(1000))).toBe(true)
        const [d] = await j.dead()
        expect(d!.payload.equals(big)).toBe(true)
        expect(d!.lastError).toBe("x".repeat(10_000))
        const [replayed] = await j.replay([id(3)])
        expect(replayed!.payload.equals(big)).toBe(true)
        const [back] = await j.pending({ after: id(2), until: id(3), limit: 1 })
        expect(back!.payload.equals(big)).toBe(true)
        await j.bury([letter(entry(3, { payload: big }), "x".repeat(10_000))])
      }
      await check(journal)
      if (reopen) await check(await reopen())
    })

    test("returned entries are copies", async () => {
      const { journal } = await setup()
      await journal.append([entry(1)], { sync: false })
      await journal.bury([letter(entry(2))])
      const [e] = await journal.pending({ limit: 1 })
      e!.attempts = 99
      const [d] = await journal.dead()
      d!.lastError = "changed"
      expect((await journal.pending({ limit: 1 }))[0]!.attempts).toBe(0)
      expect((await journal.dead())[0]!.lastError).toBe("boom")
    })

    test("concurrent calls all take effect", async () => {
      const { journal } = await setup()
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          journal.append([entry(2 * i + 1), entry(2 * i + 2)], { sync: i % 2 === 0 }),
        ),
      )
      await Promise.all([
        journal.remove([id(1), id(2)]),
        journal.update([{ id: id(3), attempts: 1 }]),
        journal.bury([letter(entry(4))]),
        journal.remove([id(5)]),
      ])
      expect(await journal.stats()).toEqual({ pending: 36, dead: 1, scheduled: 0 })
      expect((await journal.pending({ limit: 1 }))[0]).toEqual({ ...entry(3), attempts: 1 })
    })

    test("matches a model under random operations", async () => {
      const { reopen: canReopen } = await setup()
      const op = fc.oneof(
        fc.record({
          t: fc.constant("append" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 4 }),
          sync: fc.boolean(),
        }),
        fc.record({
          t: fc.constant("remove" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 4 }),
        }),
        fc.record({
          t: fc.constant("update" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }),
          attempts: fc.nat(9),
          err: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
          notBefore: fc.option(fc.nat(), { nil: undefined }),
        }),
        fc.record({
          t: fc.constant("bury" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }),
        }),
        fc.record({
          t: fc.constant("replay" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }),
        }),
        fc.record({
          t: fc.constant("purge" as const),
          ns: fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }),
        }),
        fc.record({ t: fc.constant("reopen" as const) }),
      )
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
          const fixture = await setup()
          let journal = fixture.journal
          const model = new ModelJournal()
          for (const o of ops) {
            switch (o.t) {
              case "append": {
                const es = o.ns.map((n) => entry(n, { payload: Buffer.from([n]) }))
                await journal.append(es, { sync: o.sync })
                model.append(es)
                break
              }
              case "remove":
                await journal.remove(o.ns.map(id))
                model.remove(o.ns.map(id))
                break
              case "update": {
                const us = o.ns.map((n) => ({
                  id: id(n),
                  attempts: o.attempts,
                  ...(o.err === undefined ? {} : { lastError: o.err }),
                  ...(o.notBefore === undefined ? {} : { notBefore: o.notBefore }),
                }))
                await journal.update(us)
                model.update(us)
                break
              }
              case "bury": {
                const ds = o.ns.map((n) =>
                  letter(model.pending.get(id(n)) ?? entry(n), `dead ${n}`),
                )
                await journal.bury(ds)
                model.bury(ds)
                break
              }
              case "replay":
                expect(await journal.replay(o.ns.map(id))).toEqual(model.replay(o.ns.map(id)))
                break
              case "purge":
                expect(await journal.purgeDead(o.ns.map(id))).toBe(model.purge(o.ns.map(id)))
                break
              case "reopen":
                if (fixture.reopen) journal = await fixture.reopen()
                break
            }
          }
          expect(await journal.pending({ limit: 100 })).toEqual(model.sorted(model.pending))
          expect(await journal.dead()).toEqual(model.sorted(model.dead))
          expect(await journal.stats()).toEqual({
            pending: model.pending.size,
            dead: model.dead.size,
            scheduled: 0,
          })
          expect(await journal.lastId()).toBe(model.lastId)
        }),
        { numRuns: canReopen ? 25 : 100 },
      )
    })

    test("everything survives close and reopen", async (ctx) => {
      const { journal, reopen } = await setup()
      if (reopen === undefined) {
        ctx.skip()
        return
      }
      await journal.append([entry(1), entry(2), entry(3), entry(4)], { sync: true })
      await journal.update([
        { id: id(2), attempts: 2, lastError: "crash", notBefore: 1_700_000_050_000 },
      ])
      await journal.bury([letter(entry(3), "poison", 1_800_000_000_333)])
      await journal.remove([id(4)])
      const pending = await journal.pending({ limit: 10 })
      const dead = await journal.dead()
      const again = await reopen()
      expect(await again.pending({ limit: 10 })).toEqual(pending)
      expect(await again.dead()).toEqual(dead)
      expect(await again.stats()).toEqual({ pending: 2, dead: 1, scheduled: 0 })
      expect(await again.lastId()).toBe(id(4))
      // acked everything: the high-water mark still survives
      await again.remove([id(1), id(2)])
      await again.purgeDead([id(3)])
      const third = await reopen()
      expect(await third.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      expect(await third.lastId()).toBe(id(4))
      await third.append([entry(5)], { sync: false })
      expect(await third.lastId()).toBe(id(5))
    })

    describe("send ids (dedupe)", () => {
      /** The send-id methods, which both built-in journals have. */
      function dedupe(journal: Journal): Required<Pick<Journal, "dedupeLookup" | "dedupeForget">> {
        if (journal.dedupeLookup === undefined || journal.dedupeForget === undefined)
          throw new Error(`${name} has no send-id methods`)
        return {
          dedupeLookup: (ids) =>
            (journal.dedupeLookup as NonNullable<Journal["dedupeLookup"]>)(ids),
          dedupeForget: (before) =>
            (journal.dedupeForget as NonNullable<Journal["dedupeForget"]>)(before),
        }
      }

      // Atomicity is by construction: a LevelJournal writes an entry and its send id's record in
      // one LevelDB batch (append, schedule), and a removal with its acked/forgotten records in
      // another; a crash keeps all of one write or none of it.
      test("append() with a dedupeId writes its record; pending() and dead() return it", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        const send = "order-42 ✓ \u0000 k:zz"
        await journal.append(
          [entry(1, { dedupeId: send }), entry(2), entry(3, { dedupeId: "b" })],
          {
            sync: false,
          },
        )
        expect(await d.dedupeLookup([send, "unknown", "b"])).toEqual([
          { id: id(1) },
          undefined,
          { id: id(3) },
        ])
        expect((await journal.pending({ limit: 10 })).map((e) => e.dedupeId)).toEqual([
          send,
          undefined,
          "b",
        ])
        expect(await journal.stats()).toMatchObject({ pending: 3, dedupe: 2 })
        await journal.update([{ id: id(1), attempts: 1, lastError: "x" }])
        await journal.bury([letter(entry(3, { dedupeId: "b" }))])
        // A letter given without its send id keeps the pending entry's.
        await journal.bury([letter(entry(1))])
        const dead = await journal.dead()
        expect(dead.map((e) => [e.id, e.dedupeId])).toEqual([
          [id(1), send],
          [id(3), "b"],
        ])
        // A dead letter's send id still dedupes.
        expect(await d.dedupeLookup([send, "b"])).toEqual([{ id: id(1) }, { id: id(3) }])
        const replayed = await journal.replay([id(3)])
        expect(replayed[0]?.dedupeId).toBe("b")
        expect((await journal.pending({ limit: 10 })).map((e) => e.dedupeId)).toEqual([
          undefined,
          "b",
        ])
      })

      test("a send id longer than 256 utf-8 bytes, empty or not a string is refused", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        await journal.append([entry(1, { dedupeId: "é".repeat(128) })], { sync: false })
        expect(await d.dedupeLookup(["é".repeat(128)])).toEqual([{ id: id(1) }])
        await expect(
          journal.append([entry(2, { dedupeId: "é".repeat(128) + "x" })], { sync: false }),
        ).rejects.toThrow(RangeError)
        await expect(journal.append([entry(2, { dedupeId: "" })], { sync: false })).rejects.toThrow(
          TypeError,
        )
        await expect(
          journal.append([entry(2, { dedupeId: 7 as unknown as string })], { sync: false }),
        ).rejects.toThrow(TypeError)
        expect(await journal.stats()).toMatchObject({ pending: 1, dedupe: 1 })
      })

      test("remove() with acked marks records acked at `at`; forget deletes them", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        await journal.append(
          [entry(1, { dedupeId: "a" }), entry(2, { dedupeId: "b" }), entry(3, { dedupeId: "c" })],
          { sync: false },
        )
        await journal.remove([id(1), id(2)], { acked: ["a", "b", "nope"], forget: [], at: 5_000 })
        expect(await d.dedupeLookup(["a", "b", "c"])).toEqual([
          { id: id(1), ackedAt: 5_000 },
          { id: id(2), ackedAt: 5_000 },
          { id: id(3) },
        ])
        expect(await journal.stats()).toMatchObject({ pending: 1, dedupe: 3 })
        // Acked again later: the newer time counts (and forgetting by age follows it).
        await journal.remove([], { acked: ["a"], forget: ["b"], at: 9_000 })
        expect(await d.dedupeLookup(["a", "b"])).toEqual([{ id: id(1), ackedAt: 9_000 }, undefined])
        await journal.remove([id(3)], { acked: [], forget: ["c"], at: 9_500 })
        expect(await d.dedupeLookup(["c"])).toEqual([undefined])
        expect(await d.dedupeForget(9_000)).toBe(0)
        expect(await d.dedupeForget(9_001)).toBe(1)
        expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      })

      test("dedupeForget(before) forgets only the send ids acked before it", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        const sends = Array.from({ length: 6 }, (_, i) => `send ${i}`)
        await journal.append(
          sends.map((s, i) => entry(i + 1, { dedupeId: s })),
          { sync: false },
        )
        // Acked at 1000, 2000, 3000, 4000; the last two stay pending.
        for (let i = 0; i < 4; i++)
          await journal.remove([id(i + 1)], {
            acked: [sends[i] as string],
            forget: [],
            at: 1_000 * (i + 1),
          })
        expect(await d.dedupeForget(-1)).toBe(0)
        expect(await d.dedupeForget(2_500)).toBe(2)
        expect((await d.dedupeLookup(sends)).map((r) => r?.id)).toEqual([
          undefined,
          undefined,
          id(3),
          id(4),
          id(5),
          id(6),
        ])
        // An ack at an earlier time after a forget is forgotten by the next one.
        await journal.remove([id(5)], { acked: [sends[4] as string], forget: [], at: 500 })
        expect(await d.dedupeForget(2_500)).toBe(1)
        expect(await d.dedupeForget(Number.MAX_VALUE)).toBe(2)
        expect((await d.dedupeLookup(sends)).map((r) => r?.id)).toEqual([
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
          id(6),
        ])
        expect(await journal.stats()).toMatchObject({ pending: 1, dedupe: 1 })
        await expect(d.dedupeForget(NaN)).rejects.toThrow(RangeError)
      })

      test("purgeDead() deletes the records of the dead letters it purges", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        await journal.append([entry(1, { dedupeId: "a" }), entry(2, { dedupeId: "b" })], {
          sync: false,
        })
        await journal.bury([
          letter(entry(1, { dedupeId: "a" })),
          letter(entry(2, { dedupeId: "b" })),
        ])
        expect(await journal.purgeDead([id(1)])).toBe(1)
        expect(await d.dedupeLookup(["a", "b"])).toEqual([undefined, { id: id(2) }])
        expect(await journal.stats()).toMatchObject({ dead: 1, dedupe: 1 })
      })

      test("a send id taken over by a later message stays when the older one is purged", async () => {
        const { journal } = await setup()
        const d = dedupe(journal)
        await journal.append([entry(1, { dedupeId: "a" })], { sync: false })
        await journal.bury([letter(entry(1, { dedupeId: "a" }))])
        await journal.append([entry(2, { dedupeId: "a" })], { sync: false })
        expect(await journal.purgeDead([id(1)])).toBe(1)
        expect(await d.dedupeLookup(["a"])).toEqual([{ id: id(2) }])
      })

      test("schedule() writes the record; promote() keeps the send id", async (ctx) => {
        const { journal } = await setup()
        const d = dedupe(journal)
        if (journal.schedule === undefined || journal.promote === undefined) {
          ctx.skip()
          return
        }
        await journal.schedule([entry(1, { dedupeId: "later", notBefore: 10 })], { sync: false })
        expect(await d.dedupeLookup(["later"])).toEqual([{ id: id(1) }])
        expect(await journal.stats()).toMatchObject({ pending: 0, scheduled: 1, dedupe: 1 })
        const due = await journal.due?.({ until: 10, limit: 10 })
        expect(due?.map((e) => e.dedupeId)).toEqual(["later"])
        expect(await journal.promote(due ?? [], { sync: false })).toEqual([id(1)])
        expect((await journal.pending({ limit: 10 })).map((e) => e.dedupeId)).toEqual(["later"])
        expect(await d.dedupeLookup(["later"])).toEqual([{ id: id(1) }])
      })

      test("unschedule() forgets the send id of what it deletes", async (ctx) => {
        const { journal } = await setup()
        const d = dedupe(journal)
        if (journal.schedule === undefined || journal.unschedule === undefined) {
          ctx.skip()
          return
        }
        await journal.schedule(
          [entry(1, { dedupeId: "x", notBefore: 10 }), entry(2, { dedupeId: "y", notBefore: 10 })],
          { sync: false },
        )
        expect(await journal.unschedule([id(1)])).toEqual([id(1)])
        expect(await d.dedupeLookup(["x", "y"])).toEqual([undefined, { id: id(2) }])
        expect((await journal.stats()).dedupe).toBe(1)
      })

      test("records survive close and reopen", async (ctx) => {
        const { journal, reopen } = await setup()
        if (reopen === undefined) {
          ctx.skip()
          return
        }
        await journal.append([entry(1, { dedupeId: "a" }), entry(2, { dedupeId: "b" })], {
          sync: true,
        })
        await journal.remove([id(1)], { acked: ["a"], forget: [], at: 1_234.5 })
        const again = await reopen()
        const d = dedupe(again)
        expect(await d.dedupeLookup(["a", "b"])).toEqual([
          { id: id(1), ackedAt: 1_234.5 },
          { id: id(2) },
        ])
        expect((await again.pending({ limit: 10 }))[0]?.dedupeId).toBe("b")
        expect(await again.stats()).toMatchObject({ pending: 1, dedupe: 2 })
        expect(await d.dedupeForget(2_000)).toBe(1)
        const third = await reopen()
        expect(await dedupe(third).dedupeLookup(["a", "b"])).toEqual([undefined, { id: id(2) }])
      })
    })

    describe("message options and scheduled entries", () => {
      /** Entries with every field, format 5's included, in several combinations. */
      function rich(from: number, count: number): JournalEntry[] {
        return Array.from({ length: count }, (_, i) => {
          const n = from + i
          const e = entry(n)
          if (i % 2 === 0) e.priority = i % 10
          if (i % 3 === 0) e.key = `key ${n % 4} ✓`
          if (i % 4 === 0) e.expiresAt = 1_700_000_900_000 + n + 0.5
          if (i % 5 === 1) e.lastError = "earlier"
          if (i % 6 === 2) e.notBefore = 1_700_000_100_000 + n
          return e
        })
      }

      /** The scheduling methods, which both built-in journals have. */
      function scheduling(
        journal: Journal,
      ): Required<Pick<Journal, "schedule" | "due" | "nextDue" | "promote" | "unschedule">> {
        if (
          !journal.schedule ||
          !journal.due ||
          !journal.nextDue ||
          !journal.promote ||
          !journal.unschedule
        )
          throw new Error("this journal does not schedule")
        return journal as Required<
          Pick<Journal, "schedule" | "due" | "nextDue" | "promote" | "unschedule">
        >
      }

      const at = (n: number, notBefore: number, extra: Partial<JournalEntry> = {}): JournalEntry =>
        entry(n, { notBefore, ...extra })

      test("expiresAt, priority and key round-trip through append and pending, alone and in batches", async () => {
        const { journal, reopen } = await setup()
        const single = rich(1, 6)
        for (const e of single) await journal.append([e], { sync: false })
        const batched = rich(101, 40) // one append of many: a batch where the journal makes them
        await journal.append(batched, { sync: true })
        const all = [...single, ...batched]
        expect(await journal.pending({ limit: 100 })).toEqual(all)
        const key = await journal.pending({ after: id(101), limit: 1 })
        expect(key[0]).toEqual(batched[1])
        if (reopen !== undefined)
          expect(await (await reopen()).pending({ limit: 100 })).toEqual(all)
      })

      test("update() keeps them; bury() and dead() carry them; replay() keeps priority, key, queue and headers, not the expiry", async () => {
        const { journal } = await setup()
        const loose = entry(1, {
          priority: 9,
          key: "k",
          expiresAt: 1_700_000_999_000,
          queue: "resize",
          headers: { tenant: "t1", "trace ✓": "x" },
        })
        const batched = rich(11, 20).map((e) => ({
          ...e,
          priority: 2,
          key: "b",
          expiresAt: 1_700_000_888_000,
          queue: "thumbnail",
          headers: { n: e.id },
        }))
        await journal.append([loose], { sync: false })
        await journal.append(batched, { sync: false })
        await journal.update([
          { id: id(1), attempts: 1, lastError: "nack", notBefore: 5 },
          { id: id(12), attempts: 3 },
        ])
        const [one, twelve] = await journal
          .pending({ until: id(12), limit: 10 })
          .then((p) => [p.find((e) => e.id === id(1)), p.find((e) => e.id === id(12))])
        expect(one).toEqual({ ...loose, attempts: 1, lastError: "nack", notBefore: 5 })
        const twelveKept: JournalEntry = { ...batched[1]! }
        delete twelveKept.lastError
        delete twelveKept.notBefore
        expect(twelve).toEqual({ ...twelveKept, attempts: 3 })

        await journal.bury([letter(one!, "poison"), letter(batched[5]!, "poison")])
        const dead = await journal.dead()
        expect(dead).toEqual([letter(one!, "poison"), letter(batched[5]!, "poison")])
        const moved = await journal.replay([id(1), id(16)])
        const again = (e: JournalEntry): JournalEntry => {
          const out: JournalEntry = {
            id: e.id,
            payload: e.payload,
            attempts: 0,
            enqueuedAt: e.enqueuedAt,
          }
          if (e.priority !== undefined) out.priority = e.priority
          if (e.key !== undefined) out.key = e.key
          if (e.queue !== undefined) out.queue = e.queue
          if (e.headers !== undefined) out.headers = e.headers
          return out
        }
        expect(moved).toEqual([again(one!), again(batched[5]!)])
        const pending = await journal.pending({ limit: 100 })
        expect(pending.find((e) => e.id === id(1))).toEqual(again(one!))
        expect(pending.find((e) => e.id === id(16))).toEqual(again(batched[5]!))
      })

      test("schedule() keeps entries out of pending; due() is earliest first, ties in id order, within until and limit", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        expect(await s.nextDue()).toBeUndefined()
        expect(await s.due({ until: Infinity, limit: 10 })).toEqual([])
        const entries = [
          at(1, 300, { priority: 7, key: "k", expiresAt: 900 }),
          at(2, 100),
          at(3, 200.5),
          at(4, 100, { lastError: "e", attempts: 2 }),
          at(5, -50),
          at(6, 200),
          at(7, 1_700_000_000_000),
        ]
        await s.schedule(entries, { sync: false })
        expect(await journal.pending({ limit: 10 })).toEqual([])
        expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 7 })
        const byId = (n: number): JournalEntry => entries[n - 1]!
        expect(await s.due({ until: Infinity, limit: 100 })).toEqual(
          [5, 2, 4, 6, 3, 1, 7].map(byId),
        )
        expect(ids(await s.due({ until: 100, limit: 10 }))).toEqual([id(5), id(2), id(4)])
        expect(ids(await s.due({ until: 99.9, limit: 10 }))).toEqual([id(5)])
        expect(ids(await s.due({ until: 200.25, limit: 10 }))).toEqual([id(5), id(2), id(4), id(6)])
        expect(ids(await s.due({ until: 200.5, limit: 2 }))).toEqual([id(5), id(2)])
        expect(await s.due({ until: 1_000, limit: 0 })).toEqual([])
        expect(await s.due({ until: -51, limit: 10 })).toEqual([])
        expect(await s.nextDue()).toBe(-50)
        await s.unschedule([id(5)])
        expect(await s.nextDue()).toBe(100)
      })

      test("promote() makes scheduled entries pending; remove(), update() and bury() then see them", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        await journal.append([entry(1)], { sync: false })
        const later = [
          at(2, 10, { priority: 1, key: "x" }),
          at(3, 20),
          at(4, 30),
          at(5, 40, { expiresAt: 99 }),
          at(6, 50),
        ]
        await s.schedule(later, { sync: true })
        const due = await s.due({ until: 40, limit: 10 })
        expect(ids(due)).toEqual([id(2), id(3), id(4), id(5)])
        // an id that is not scheduled (pending, or unknown) is ignored
        expect(await s.promote([...due, entry(1), entry(99)], { sync: false })).toEqual(ids(due))
        expect(await journal.stats()).toEqual({ pending: 5, dead: 0, scheduled: 1 })
        expect(await journal.pending({ limit: 10 })).toEqual([entry(1), ...later.slice(0, 4)])
        expect(await s.due({ until: Infinity, limit: 10 })).toEqual([later[4]])
        expect(await s.nextDue()).toBe(50)
        expect(await s.promote(due, { sync: false })).toEqual([]) // again: nothing left to move
        expect(await journal.stats()).toEqual({ pending: 5, dead: 0, scheduled: 1 })

        await journal.remove([id(2)])
        await journal.update([{ id: id(3), attempts: 1, lastError: "nack" }])
        await journal.bury([letter(later[3]!, "poison")])
        const three: JournalEntry = { ...later[1]! }
        delete three.notBefore
        expect(await journal.pending({ limit: 10 })).toEqual([
          entry(1),
          { ...three, attempts: 1, lastError: "nack" },
          later[2],
        ])
        expect(await journal.dead()).toEqual([letter(later[3]!, "poison")])
        expect(await journal.stats()).toEqual({ pending: 3, dead: 1, scheduled: 1 })
      })

      test("unschedule() deletes scheduled entries only, and says which", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        await s.schedule([at(1, 10), at(2, 20), at(3, 30)], { sync: false })
        await journal.append([entry(4)], { sync: false })
        expect(await s.unschedule([id(2), id(4), id(9), "not an id", id(2)])).toEqual([id(2)])
        expect(await s.unschedule([id(2)])).toEqual([])
        expect(await s.unschedule([])).toEqual([])
        expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 2 })
        expect(ids(await journal.pending({ limit: 10 }))).toEqual([id(4)])
        expect(ids(await s.due({ until: Infinity, limit: 10 }))).toEqual([id(1), id(3)])
        expect(await s.unschedule([id(3), id(1)])).toEqual([id(3), id(1)])
        expect(await s.nextDue()).toBeUndefined()
        expect(await journal.stats()).toEqual({ pending: 1, dead: 0, scheduled: 0 })
      })

      test("schedule() of an id scheduled already replaces it, due time included", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        await s.schedule([at(1, 10), at(2, 20)], { sync: false })
        await s.schedule([at(1, 30, { priority: 9 })], { sync: false })
        expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 2 })
        expect(await s.due({ until: Infinity, limit: 10 })).toEqual([
          at(2, 20),
          at(1, 30, { priority: 9 }),
        ])
        expect(await s.nextDue()).toBe(20)
      })

      test("schedule() refuses an entry without a finite notBefore", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        await expect(s.schedule([entry(1)], { sync: false })).rejects.toThrow(/notBefore/)
        await expect(s.schedule([at(1, NaN)], { sync: false })).rejects.toThrow(/notBefore/)
        await expect(s.schedule([at(1, Infinity)], { sync: false })).rejects.toThrow(/notBefore/)
        expect(await journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
      })

      test("lastId() covers scheduled ids, also once they are gone", async () => {
        const { journal } = await setup()
        const s = scheduling(journal)
        await journal.append([entry(3)], { sync: false })
        await s.schedule([at(50, 1)], { sync: false })
        expect(await journal.lastId()).toBe(id(50))
        await s.unschedule([id(50)])
        expect(await journal.lastId()).toBe(id(50))
        await s.schedule([at(60, 1)], { sync: false })
        await s.promote([at(60, 1)], { sync: false })
        await journal.remove([id(60)])
        expect(await journal.lastId()).toBe(id(60))
      })

      test("scheduled entries survive close and reopen", async (ctx) => {
        const { journal, reopen } = await setup()
        if (reopen === undefined) {
          ctx.skip()
          return
        }
        const s = scheduling(journal)
        const later = [at(1, 30, { key: "k" }), at(2, 10), at(3, 20, { priority: 0 })]
        await s.schedule(later, { sync: true })
        await journal.append([entry(4)], { sync: false })
        await s.promote([later[1]!], { sync: false })
        const again = await reopen()
        const s2 = scheduling(again)
        expect(await again.stats()).toEqual({ pending: 2, dead: 0, scheduled: 2 })
        expect(await s2.due({ until: Infinity, limit: 10 })).toEqual([later[2], later[0]])
        expect(await s2.nextDue()).toBe(20)
        expect(await again.pending({ limit: 10 })).toEqual([later[1], entry(4)])
        expect(await again.lastId()).toBe(id(4))
        expect(await s2.unschedule([id(1)])).toEqual([id(1)])
        const third = await reopen()
        expect(await third.stats()).toEqual({ pending: 2, dead: 0, scheduled: 1 })
      })
    })
  })
}

/** The reference semantics the suite checks against. */
class ModelJournal {
  readonly pending = new Map<string, JournalEntry>()
  readonly dead = new Map<string, DeadLetter>()
  lastId: string | undefined

  append(es: readonly JournalEntry[]): void {
    for (const e of es) {
      this.pending.set(e.id, { ...e })
      this.#bump(e.id)
    }
  }
  remove(ids: readonly string[]): void {
    for (const i of ids) this.pending.delete(i)
  }
  update(
    us: readonly { id: string; attempts: number; lastError?: string; notBefore?: number }[],
  ): void {
    for (const u of us) {
      const e = this.pending.get(u.id)
      if (!e) continue
      const next: JournalEntry = {
        id: e.id,
        payload: e.payload,
        attempts: u.attempts,
        enqueuedAt: e.enqueuedAt,
      }
      if (u.lastError !== undefined) next.lastError = u.lastError
      if (u.notBefore !== undefined) next.notBefore = u.notBefore
      this.pending.set(e.id, next)
    }
  }
  bury(ds: readonly DeadLetter[]): void {
    for (const d of ds) {
      this.pending.delete(d.id)
      this.dead.set(d.id, { ...d })
      this.#bump(d.id)
    }
  }
  replay(ids: readonly string[]): JournalEntry[] {
    const moved = new Map<string, JournalEntry>()
    for (const i of ids) {
      const d = this.dead.get(i)
      if (!d) continue
      this.dead.delete(i)
      const e = { id: i, payload: d.payload, attempts: 0, enqueuedAt: d.enqueuedAt }
      this.pending.set(i, e)
      moved.set(i, { ...e })
    }
    return this.sorted(moved)
  }
  purge(ids: readonly string[]): number {
    let n = 0
    for (const i of ids) if (this.dead.delete(i)) n++
    return n
  }
  sorted<T extends { id: string }>(map: Map<string, T>): T[] {
    return [...map.values()].sort((a, b) => (a.id < b.id ? -1 : 1))
  }
  #bump(i: string): void {
    if (this.lastId === undefined || i > this.lastId) this.lastId = i
  }
}
