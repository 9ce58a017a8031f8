import { mkdtemp, rm } from "node:fs/promises"
import { once } from "node:events"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { msgpackCodec } from "../../lib/codec.js"
import { LevelJournal } from "../../lib/journal/level.js"
import { Sender } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { KEEP_WINDOWS } from "../../patterns/paranoid-pirate/core/intake.js"
import { openSender, openWorker } from "../helpers/paranoid.js"
import { forkFixture } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

const signal = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-journal-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A free loopback endpoint (bound once and released). */
async function freeEndpoint(): Promise<string> {
  const probe = await Sender.open({ bind: "tcp://127.0.0.1:*" })
  const endpoint = probe.endpoint
  await probe.close()
  return endpoint
}

describe("Sender with a LevelDB journal", () => {
  for (const durability of ["os", "fsync"] as const) {
    it(`redelivers every message after a SIGKILL right after the sends resolved (${durability})`, async () => {
      const dir = await tempDir()
      const endpoint = await freeEndpoint()
      const child = forkFixture("pp-sender.ts", [
        endpoint,
        dir,
        JSON.stringify({ durability, count: 300 }),
      ])
      await child.waitFor((m) => m["type"] === "all-sent")
      await child.kill("SIGKILL")

      const sender = await openSender({ bind: endpoint, journal: dir })
      expect(sender.stats().backlog + sender.stats().ready).toBe(300)
      const got = new Set<number>()
      await openWorker(sender.endpoint, {
        concurrency: 16,
        handler: (p) => void got.add((p as { n: number }).n),
      })
      await sender.drained(signal())
      expect(got.size).toBe(300)
      expect(Math.min(...got)).toBe(0)
      expect(Math.max(...got)).toBe(299)
      expect(await sender.journal.stats()).toEqual({ pending: 0, dead: 0, scheduled: 0 })
    })
  }

  it("loses nothing when the sender is SIGKILLed while workers ack under load", async () => {
    const dir = await tempDir()
    const endpoint = await freeEndpoint()
    const child = forkFixture("pp-sender.ts", [
      endpoint,
      dir,
      JSON.stringify({ durability: "os", count: 4000 }),
    ])
    await child.waitFor((m) => m["type"] === "open")
    const processed: number[] = []
    await openWorker(endpoint, {
      concurrency: 32,
      reconnect: { initial: 20, max: 200 },
      handler: (p) => void processed.push((p as { n: number }).n),
    })
    await waitFor(() => expect(processed.length, "1000 processed").toBeGreaterThanOrEqual(1000), {
      timeout: 10_000,
    })
    await child.kill("SIGKILL")
    const sentUpTo = Math.max(
      0,
      ...child.messages.filter((m) => m["type"] === "sent").map((m) => m["upTo"] as number),
    )
    expect(sentUpTo).toBeGreaterThan(0)

    // What the journal held at the crash: every message whose ack it had not recorded yet.
    const journal = new LevelJournal(dir)
    await journal.open()
    const unacked = new Set(
      (await journal.pending({ limit: 10_000 })).map(
        (e) => (msgpackCodec.decode(e.payload) as { n: number }).n,
      ),
    )
    await journal.close()

    const sender = await openSender({ bind: endpoint, journal: dir })
    await sender.drained(signal())
    const unique = new Set(processed)
    for (let n = 0; n < sentUpTo; n++)
      expect(unique.has(n), `message ${n} was sent but never processed`).toBe(true)
    const seen = new Set<number>()
    const duplicated = processed.filter((n) => seen.has(n) || !seen.add(n))
    console.log(
      `sender crash under load: ${sentUpTo} sends resolved, ${processed.length} processed, ${duplicated.length} duplicates (in flight at the crash: delivered, their acks not yet journaled)`,
    )
    // Duplicates are only what was in flight at the crash: a message is processed again only if
    // the journal had not recorded its ack, never once it had. How many that is depends on how
    // many acks were waiting for their journal write when the sender died.
    for (const n of duplicated)
      expect(unacked.has(n), `message ${n} processed again although its ack was journaled`).toBe(
        true,
      )
  })

  it("keeps attempts across a restart, so maxAttempts holds", async () => {
    const dir = await tempDir()
    // Retries 500 ms then 1 s apart: time enough to stop the first sender after two attempts.
    const options = {
      journal: dir,
      maxAttempts: 3,
      retryBackoff: { initial: 500, max: 5000, jitter: 0 },
    }
    const first = await Sender.open({
      bind: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      ...options,
    })
    const attempts: number[] = []
    const failing = await openWorker(first.endpoint, {
      handler: (_p, ctx) => {
        attempts.push(ctx.attempt)
        throw new Error(`fail ${ctx.attempt}`)
      },
    })
    const id = await first.send("poison")
    await waitFor(() => expect(attempts.length, "two attempts").toBeGreaterThanOrEqual(2))
    await failing.close()
    await first.close()
    expect(attempts).toEqual([1, 2])

    const second = await openSender({ ...options })
    const dead = once(second, "message:dead", signal())
    await openWorker(second.endpoint, {
      handler: (_p, ctx) => {
        attempts.push(ctx.attempt)
        throw new Error(`fail ${ctx.attempt}`)
      },
    })
    const [event] = (await dead) as [{ id: string; attempts: number }]
    expect(event).toMatchObject({ id, attempts: 3 })
    expect(attempts.slice(0, 3)).toEqual([1, 2, 3])
  })

  it("keeps dead letters across a restart and replays them", async () => {
    const dir = await tempDir()
    const first = await Sender.open({
      bind: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      journal: dir,
      maxAttempts: 1,
    })
    const w = await openWorker(first.endpoint, {
      handler: () => {
        throw new Error("bad day")
      },
    })
    const dead = once(first, "message:dead", signal())
    const id = await first.send({ job: 1 })
    await dead
    await w.close()
    await first.close()

    const second = await openSender({ journal: dir })
    expect(second.stats().dead).toBe(1)
    const letters = await second.deadLetters()
    expect(letters).toMatchObject([{ id, attempts: 1, lastError: "bad day" }])
    const got: unknown[] = []
    await openWorker(second.endpoint, {
      handler: (p, ctx) => void got.push([p, ctx.id, ctx.attempt]),
    })
    expect(await second.replay([id])).toEqual([id])
    await second.drained(signal())
    expect(got).toEqual([[{ job: 1 }, id, 1]])
    expect(await second.deadLetters()).toEqual([])
  })

  it("delivers a dead letter replayed ahead of the paging cursor once, not again from the backlog", async () => {
    const dir = await tempDir()
    // First life: "die" is dead-lettered; the others are held by a worker until the sender
    // closes, so they stay pending, with "die" between them in id order.
    const first = await Sender.open({
      bind: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      journal: dir,
      maxAttempts: 1,
      window: 2,
    })
    let release = (): void => undefined
    const held = new Promise<void>((resolve) => (release = resolve))
    const w = await openWorker(first.endpoint, {
      concurrency: 4,
      handler: async (p) => {
        if (p === "die") throw new Error("bad day")
        await held
      },
    })
    const dead = once(first, "message:dead", signal())
    const stay = await first.send("stay")
    const die = await first.send("die")
    await dead
    const rest = [await first.send("a"), await first.send("b"), await first.send("c")]
    await first.close()
    release()
    await w.close()

    // Second life, one message in the window: the first page takes "stay", the cursor stops
    // there, and "die", replayed, lies ahead of it, before "a", "b" and "c".
    const second = await openSender({ journal: dir, window: 1 })
    expect(second.stats()).toMatchObject({ dead: 1, inWindow: 1, backlog: 3 })
    expect(await second.replay([die])).toEqual([die])
    const got: string[] = []
    await openWorker(second.endpoint, { handler: (_p, ctx) => void got.push(ctx.id) })
    await second.drained(signal())
    expect([...got].sort()).toEqual([stay, die, ...rest].sort())
    expect(await second.deadLetters()).toEqual([])
    expect(second.stats()).toMatchObject({ inWindow: 0, backlog: 0, acked: 5 })
  })

  it("refuses a second sender on the same journal with PIRATE_JOURNAL_LOCKED", async () => {
    const dir = await tempDir()
    await openSender({ journal: dir })
    const err = await Sender.open({ bind: "tcp://127.0.0.1:*", journal: dir }).catch(
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: "PIRATE_JOURNAL_LOCKED" })
    expect((err as Error).message).toContain(dir)
  })

  it("drains a backlog larger than its window in order, with bounded memory", async () => {
    const dir = await tempDir()
    const first = await Sender.open({ bind: "tcp://127.0.0.1:*", journal: dir })
    const ids = await Promise.all(Array.from({ length: 1000 }, (_, n) => first.send({ n })))
    await first.close()

    const sender = await openSender({ journal: dir, window: 50 })
    expect(sender.stats().backlog).toBe(950)
    const order: string[] = []
    let peak = 0
    await openWorker(sender.endpoint, {
      concurrency: 1,
      handler: (_p, ctx) => {
        const s = sender.stats()
        peak = Math.max(peak, s.ready + s.inFlight + s.delayed)
        order.push(ctx.id)
      },
    })
    await sender.drained(signal())
    expect(order).toEqual(ids)
    expect(peak).toBeLessThanOrEqual(50)
  })

  it("pages the head of a young backlog from memory, the rest from the journal, in send order", async () => {
    const window = 20
    const kept = KEEP_WINDOWS * window
    const journal = new LevelJournal(await tempDir())
    // Entries the sender reads back from the journal while paging its backlog in.
    let readBack = 0
    const pending = journal.pending.bind(journal)
    journal.pending = async (range) => {
      const page = await pending(range)
      readBack += page.length
      return page
    }
    const sender = await openSender({ journal, window })
    const ids: string[] = []
    const burst = async (n: number): Promise<void> => {
      ids.push(...(await Promise.all(Array.from({ length: n }, () => sender.send(ids.length)))))
    }
    // No worker: the window fills, the next `kept` spills stay in memory too, the rest is only
    // on disk.
    await burst(window + kept + 30)
    expect(sender[internals]()).toMatchObject({ kept, messages: window })
    expect(sender.stats().backlog).toBe(kept + 30)
    const order: string[] = []
    const worker = await openWorker(sender.endpoint, {
      concurrency: 4,
      handler: (_p, ctx) => void order.push(ctx.id),
    })
    await sender.drained(signal())
    expect(order).toEqual(ids)
    expect(readBack, "messages read back from the journal").toBe(30)
    // Once the backlog is gone a new burst is kept again.
    await worker.close()
    await burst(window + 10)
    expect(sender[internals]()).toMatchObject({ kept: 10 })
    await openWorker(sender.endpoint, { handler: (_p, ctx) => void order.push(ctx.id) })
    await sender.drained(signal())
    expect(order).toEqual(ids)
    expect(readBack).toBe(30)
    const held = Object.entries(sender[internals]()).filter(([, n]) => n !== 0)
    expect(Object.fromEntries(held), "internal structures still holding something").toEqual({})
  })
})
