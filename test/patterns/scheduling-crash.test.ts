/**
 * The scheduling options across a SIGKILL of the sender: a child process (LevelJournal,
 * durability "os") sends delayed, short-lived, prioritised and keyed messages with no worker
 * anywhere, and is killed once every send has resolved; a sender restarted on its journal must
 * then keep each promise: delayed messages come no earlier than due, the short-lived ones end as
 * dead letters "expired" (never handled), the messages ready at open go to a single worker by
 * priority, each key's messages in send order, and nothing that resolved is lost. What the worker
 * did is read from its own log (test/fixtures/sched-worker.ts).
 */
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { Sender } from "../../patterns/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { forkFixture } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"
import { readWorkerLog } from "../fixtures/sched-log.js"

const PLAN = {
  ttlCount: 20,
  ttl: 300,
  prioCount: 300,
  keys: 10,
  perKey: 20,
  delayedCount: 20,
  delay: 1500,
}

type Ids = Record<"ttl" | "prio" | "key" | "delay", string[]>
type Payload =
  | { g: "ttl"; i: number }
  | { g: "prio"; i: number; p: number }
  | { g: "key"; k: number; n: number }
  | { g: "delay"; i: number; due: number }

describe("scheduling across a SIGKILL of the sender", () => {
  it("keeps delays, time to live, priorities and per-key order, and loses nothing", async () => {
    const dir = await tempDir("sched-crash-")
    const journal = join(dir, "journal")
    const log = join(dir, "worker.log")
    // The worker process loads while the sender works (tsx takes a while) and connects when told.
    const worker = forkFixture("sched-worker.ts", [
      "-",
      log,
      JSON.stringify({ name: "w", concurrency: 1, heartbeatInterval: 100 }),
    ])
    const first = forkFixture("sched-sender.ts", [journal, JSON.stringify(PLAN)])
    const sent = await first.waitFor((m) => m["type"] === "all-sent", 20_000)
    await first.kill("SIGKILL")
    const ids = sent["ids"] as Ids
    expect(ids.ttl).toHaveLength(PLAN.ttlCount)
    expect(ids.delay).toHaveLength(PLAN.delayedCount)

    const sender = new Sender({ bind: "tcp://127.0.0.1:*", journal, heartbeatInterval: 100 })
    onTestFinished(() => sender.close())
    const expiredEvents: string[] = []
    sender.on("message:expired", (e) => expiredEvents.push(e.id))
    await sender.open()
    const openedAt = Date.now()
    const atOpen = sender.stats()
    await worker.waitFor((m) => m["type"] === "up", 20_000)

    // The restart came before the first delayed message was due, or this test proves nothing
    // about delays across it.
    expect(
      openedAt,
      "the restarted sender opened after the delayed messages fell due",
    ).toBeLessThan(sent["firstDue"] as number)
    expect(atOpen.scheduled).toBe(PLAN.delayedCount)
    expect(atOpen.inFlight).toBe(0)

    // Short-lived: with no worker anywhere, they end as dead letters, "expired".
    const ttlIds = [...ids.ttl].sort()
    const dead = await waitFor(
      async () => {
        const letters = await sender.deadLetters()
        expect(letters.map((d) => d.id).sort()).toEqual(ttlIds)
        return letters
      },
      { timeout: 5000, interval: 20 },
    )
    for (const d of dead) expect(d.lastError, `dead letter ${d.id}`).toBe("expired")
    // Each expired in one sender or the other (the first may have done it before the kill).
    for (const id of expiredEvents) expect(ids.ttl).toContain(id)
    expect(sender.stats().expired).toBe(expiredEvents.length)

    // Everything else was restored: ready (keyed ones parked behind their key) or scheduled.
    expect(sender.stats()).toMatchObject({
      ready: PLAN.prioCount + PLAN.keys * PLAN.perKey,
      backlog: 0,
      inFlight: 0,
      dead: PLAN.ttlCount,
    })

    worker.process.send({ type: "connect", endpoint: sender.endpoint })
    await worker.waitFor((m) => m["type"] === "ready", 10_000)
    await sender.drained({ signal: AbortSignal.timeout(20_000) })
    worker.process.send({ type: "close" })
    await worker.waitFor((m) => m["type"] === "closed", 10_000)

    const entries = readWorkerLog(await readFile(log, "utf8"))
    const done = entries.filter((e) => e.event === "done")
    expect(entries.filter((e) => e.event !== "done" && e.event !== "start")).toEqual([])
    const payloads = done.map((e) => e.payload as Payload)

    // Nothing lost, nothing twice (no worker saw the first sender), nothing expired handled.
    expect(done.map((e) => e.id).sort()).toEqual([...ids.prio, ...ids.key, ...ids.delay].sort())
    expect(payloads.filter((p) => p.g === "ttl")).toEqual([])

    // Priority: every one of these was ready when the worker came; one worker, one at a time.
    const prio = payloads.filter((p) => p.g === "prio")
    const expected = [...prio].sort((a, b) => b.p - a.p || a.i - b.i)
    expect(prio.map((p) => p.i)).toEqual(expected.map((p) => p.i))

    // Per key: send order, although later messages of a key often have a higher priority.
    for (let k = 0; k < PLAN.keys; k++) {
      const order = payloads.flatMap((p) => (p.g === "key" && p.k === k ? [p.n] : []))
      expect(order, `key k${k}`).toEqual(Array.from({ length: PLAN.perKey }, (_, n) => n))
    }

    // Delayed: none started before it was due.
    const early = entries.flatMap((e) => {
      const p = e.payload as Payload
      return p.g === "delay" && e.at < p.due ? [`${p.i}: ${p.due - e.at} ms early`] : []
    })
    expect(early).toEqual([])
    const lateness = entries.flatMap((e) => {
      const p = e.payload as Payload
      return p.g === "delay" && e.event === "start" ? [e.at - p.due] : []
    })

    expect(sender.stats()).toMatchObject({ scheduled: 0, ready: 0, inFlight: 0 })
    expect(await sender.journal.stats()).toMatchObject({ pending: 0, dead: PLAN.ttlCount })
    console.log(
      `scheduling across a sender SIGKILL: restarted ${openedAt - (sent["at"] as number)} ms after the sends resolved; ${expiredEvents.length}/${PLAN.ttlCount} expired after the restart; delayed ones ${Math.min(...lateness)}–${Math.max(...lateness)} ms after due`,
    )
  }, 40_000)
})
