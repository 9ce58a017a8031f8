/**
 * Messages larger than a peer takes (`maxMessageSize`): refused at `send()` when over the
 * sender's own limit, never handed to a worker that announced a smaller one, and a reply too
 * large for the sender is a nack of that one message. No other message pays for it.
 */
import { once } from "node:events"
import { describe, expect, it } from "vitest"
import { openSender, openWorker, watchEvents } from "../helpers/paranoid.js"

const MiB = 1024 * 1024
const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

describe("oversized messages", () => {
  it("send() and request() of 20 MiB, over the default 16 MiB limit, reject at once with PIRATE_TOO_LARGE", async () => {
    const sender = await openSender({ codec: "raw" })
    const payload = Buffer.alloc(20 * MiB)
    for (const call of [() => sender.send(payload), () => sender.request(payload)]) {
      const err = (await call().catch((e: unknown) => e)) as Error
      expect(err).toMatchObject({ name: "PirateError", code: "PIRATE_TOO_LARGE" })
      expect(err.message).toContain(String(20 * MiB))
      expect(err.message).toContain(String(16 * MiB))
    }
    expect(sender.stats()).toMatchObject({ sent: 0, ready: 0 })
    // Right at the limit is fine.
    await sender.send(Buffer.alloc(16 * MiB - 4))
    expect(sender.stats().sent).toBe(1)
  })

  it("a reply too large for the sender is a nack with PIRATE_TOO_LARGE; a message in flight beside it is acked", async () => {
    const sender = await openSender({
      codec: "raw",
      maxAttempts: 2,
      retryBackoff: { initial: 1, max: 1 },
    })
    const seen = watchEvents(sender)
    let release = (): void => undefined
    const gate = new Promise<void>((r) => (release = r))
    let bigRuns = 0
    const smallAttempts: number[] = []
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 2,
      handler: async (p, ctx) => {
        if (String(p) === "big") {
          bigRuns++
          return Buffer.alloc(17 * MiB)
        }
        smallAttempts.push(ctx.attempt)
        await gate // still running when the big reply goes out
        return Buffer.from("small done")
      },
    })
    const small = sender.request(Buffer.alloc(20, "s"))
    const big = sender.request(Buffer.from("big")).catch((e: unknown) => e)
    // The first attempt of the big one ends (a nack; formerly the loss of the worker).
    await Promise.race([
      once(sender, "message:nacked", signal()),
      once(sender, "worker:lost", signal()),
    ])
    release()
    expect(await small).toEqual(Buffer.from("small done"))
    const err = (await big) as Error
    expect(err).toMatchObject({ code: "PIRATE_DEAD_LETTER" })
    expect(err.message).toMatch(/PIRATE_TOO_LARGE.*17825792 bytes/)
    expect(bigRuns).toBe(2) // once per attempt
    expect(smallAttempts).toEqual([1])
    expect(seen).toMatchObject({ requeued: [], lost: [] })
    expect(seen.dead).toHaveLength(1)
    expect(sender.stats()).toMatchObject({ acked: 1, dead: 1, workersLost: 0 })
  })

  it("never hands a worker a message over its maxMessageSize: it waits for a worker that takes it", async () => {
    const sender = await openSender({ codec: "raw" })
    const seen = watchEvents(sender)
    const small: string[] = []
    await openWorker(sender.endpoint, {
      codec: "raw",
      concurrency: 2,
      maxMessageSize: 64 * 1024,
      handler: (p) => {
        small.push(`${(p as Buffer).length}`)
        return Buffer.alloc(0)
      },
    })
    await sender.send(Buffer.alloc(100 * 1024))
    await sender.send(Buffer.alloc(20))
    await expect.poll(() => sender.stats().acked, { timeout: 5000 }).toBe(1)
    expect(small).toEqual(["20"])
    expect(sender.stats()).toMatchObject({ ready: 1, inFlight: 0, workersLost: 0 })
    const big: number[] = []
    await openWorker(sender.endpoint, {
      codec: "raw",
      handler: (p) => {
        big.push((p as Buffer).length)
        return Buffer.alloc(0)
      },
    })
    await sender.drained(signal())
    expect(big).toEqual([100 * 1024])
    expect(seen).toEqual({ dead: [], requeued: [], lost: [] })
  })
})
