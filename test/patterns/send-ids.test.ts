/**
 * Producer-side idempotency, `send(payload, { id })`: a second send with a send id whose message
 * is pending, in flight, dead, or acked within `dedupeWindow` enqueues nothing and resolves with
 * the first message's id; with a LevelJournal across a restart too.
 */
import { describe, expect, it } from "vitest"
import type { Sender } from "../../patterns/index.js"
import { internals } from "../../patterns/paranoid-pirate/core/index.js"
import { tempDir } from "../helpers/journal-files.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const timeout = (ms = 15_000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

const journals = [
  ["memory", (): Promise<{ journal?: string }> => Promise.resolve({})],
  ["level", async (): Promise<{ journal?: string }> => ({ journal: await tempDir("send-ids-") })],
] as const

function sizes(sender: Sender): Record<string, number> {
  return sender[internals]()
}

describe.each(journals)("send ids (%s journal)", (_kind, journal) => {
  it("a second send with the id of a pending message enqueues nothing and resolves with its id", async () => {
    const sender = await openSender({ ...(await journal()) })
    const first = await sender.send({ n: 1 }, { id: "order-1" })
    const again = await sender.send({ n: 2 }, { id: "order-1" })
    // Sent together: the second joins the first.
    const [a, b] = await Promise.all([
      sender.send("x", { id: "order-2" }),
      sender.send("y", { id: "order-2" }),
    ])
    expect(again).toBe(first)
    expect(b).toBe(a)
    expect(sender.stats()).toMatchObject({ sent: 2, deduplicated: 2 })
    const handled: unknown[] = []
    await openWorker(sender.endpoint, { handler: (m) => void handled.push(m) })
    await sender.drained(timeout())
    expect(handled).toEqual([{ n: 1 }, "x"])
  })

  it("remembers an acked message's id for dedupeWindow, then forgets it", async () => {
    const sender = await openSender({ ...(await journal()), dedupeWindow: 300 })
    const handled: unknown[] = []
    await openWorker(sender.endpoint, { handler: (m) => void handled.push(m) })
    const id = await sender.send(1, { id: "job" })
    await sender.drained(timeout())
    const ackedAt = Date.now()
    expect(await sender.send(2, { id: "job" })).toBe(id)
    expect(Date.now() - ackedAt).toBeLessThan(300) // the test checked within the window
    await expect.poll(() => Date.now() - ackedAt, { timeout: 5000 }).toBeGreaterThan(300)
    const later = await sender.send(3, { id: "job" })
    expect(later).not.toBe(id)
    await sender.drained(timeout())
    expect(handled).toEqual([1, 3])
  })

  it("a dead letter's id still dedupes; a cancelled message's id is forgotten", async () => {
    const sender = await openSender({ ...(await journal()), maxAttempts: 1 })
    const later = await sender.send("later", { id: "later", delay: 60_000 })
    expect(await sender.cancel(later)).toBe(true)
    const ready = await sender.send("ready", { id: "ready" })
    expect(await sender.cancel(ready)).toBe(true)
    await openWorker(sender.endpoint, {
      handler: (m) => {
        if (m === "poison") throw new Error("bad")
      },
    })
    const dead = await sender.send("poison", { id: "poison" })
    await sender.drained(timeout())
    expect(sender.stats().dead).toBe(1)
    expect(await sender.send("poison", { id: "poison" })).toBe(dead)
    // Cancelled: sent again, it is a new message.
    expect(await sender.send("ready", { id: "ready" })).not.toBe(ready)
    expect(await sender.send("later", { id: "later" })).not.toBe(later)
    await sender.drained(timeout())
    expect(sender.stats()).toMatchObject({ acked: 2, deduplicated: 1 })
    expect(sizes(sender)).toMatchObject({ sendIdsInProgress: 0 })
  })
})

describe("send ids: options", () => {
  it("refuses a wrong id, and an id on request()", async () => {
    const sender = await openSender()
    await expect(sender.send("x", { id: "" })).rejects.toThrow(TypeError)
    await expect(sender.send("x", { id: "é".repeat(129) })).rejects.toThrow(/at most 256 bytes/)
    await expect(
      sender.request("x", { id: "a" } as unknown as Parameters<Sender["request"]>[1]),
    ).rejects.toThrow(/'id' is not an option of request\(\)/)
    expect(sender.stats().sent).toBe(0)
  })

  it("keeps send ids across a restart of a LevelJournal sender", async () => {
    const dir = await tempDir("send-ids-restart-")
    const first = await openSender({ journal: dir })
    const worker = await openWorker(first.endpoint, { handler: () => undefined })
    const acked = await first.send("acked", { id: "a" })
    await first.drained(timeout())
    await worker.close()
    const pending = await first.send("pending", { id: "p" })
    await first.close()
    const sender = await openSender({ journal: dir })
    expect(await sender.send("again", { id: "a" })).toBe(acked)
    expect(await sender.send("again", { id: "p" })).toBe(pending)
    expect(sender.stats()).toMatchObject({ sent: 0, deduplicated: 2 })
  })
})
