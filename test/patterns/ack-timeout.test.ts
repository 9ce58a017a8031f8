/**
 * `ackTimeout` judges a message by its own handler: a message that waits behind a busy handler
 * slot is not late, and a deadline that passes while the handler still runs gives that slot no
 * new work.
 */
import { once } from "node:events"
import { describe, expect, it } from "vitest"
import { openSender, openWorker, watchEvents } from "../helpers/paranoid.js"

const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

describe("ackTimeout", () => {
  for (const prefetch of [1, 10]) {
    it(`a slow job does not make fast ones late (concurrency 1, prefetch ${prefetch})`, async () => {
      const sender = await openSender({ ackTimeout: 500, retryBackoff: { initial: 10, max: 10 } })
      const seen = watchEvents(sender)
      const runs = new Map<string, number[]>()
      await openWorker(sender.endpoint, {
        concurrency: 1,
        prefetch,
        handler: async (p, ctx) => {
          runs.set(ctx.id, [...(runs.get(ctx.id) ?? []), ctx.attempt])
          await new Promise((r) => setTimeout(r, p === "slow" ? 2000 : 10))
          return p
        },
      })
      const slow = await sender.send("slow")
      const fast = await Promise.all(Array.from({ length: 9 }, () => sender.send("fast")))
      await sender.drained(signal())
      expect(seen.dead).toEqual([])
      // The slow job's deadline passed while it ran: it was given back, but its late ack was
      // taken since nobody else had it meanwhile.
      expect(seen.requeued).toEqual([slow])
      expect(runs.get(slow)).toEqual([1])
      for (const id of fast) expect(runs.get(id)).toEqual([1])
      expect(sender.stats()).toMatchObject({ acked: 10, dead: 0, redelivered: 0, staleAcks: 0 })
    })
  }

  it("gives a slot whose deadline passed no new work while its handler runs; another worker takes the message", async () => {
    const sender = await openSender({ ackTimeout: 200 })
    const seen = watchEvents(sender)
    let release = (): void => undefined
    const hung = new Promise<void>((r) => (release = r))
    const first: string[] = []
    const a = await openWorker(sender.endpoint, {
      concurrency: 1,
      handler: async (p) => {
        first.push(p as string)
        if (p === "hang") await hung
        return `a:${String(p)}`
      },
    })
    const requeued = once(sender, "message:requeued", signal())
    const reply = sender.request("hang")
    await requeued
    // The handler still runs: the worker's one slot is busy, so a new message waits.
    const next = sender.request("next")
    await expect.poll(() => sender.stats().ready, { timeout: 5000 }).toBe(2)
    expect(a.stats()).toMatchObject({ received: 1, running: 1 })
    // A second worker takes both, the expired one again (attempt 2).
    await openWorker(sender.endpoint, { handler: (p, ctx) => `b:${String(p)}#${ctx.attempt}` })
    expect(await reply).toBe("b:hang#2")
    expect(await next).toBe("b:next#1")
    release()
    await expect.poll(() => sender.stats().staleAcks, { timeout: 5000 }).toBe(1)
    expect(first).toEqual(["hang"])
    expect(seen.dead).toEqual([])
  })
})
