/**
 * Handler control: `ctx.retry({ delay })` / `RetryError` nack with the handler's delay instead of
 * the sender's backoff (the attempt still counts), `ctx.term(reason)` / `UnrecoverableError`
 * dead-letter at once; the first decision of a job wins, and a plain PPP peer (no nack) retries
 * as for any failure. A real sender (or queue) and worker in process.
 */
import { once } from "node:events"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import * as lib from "../../lib/index.js"
import {
  DeadLetterError,
  LazyPirateClient,
  ParanoidPirateQueue,
  RemoteError,
  RetryError,
  UnrecoverableError,
  Worker,
  type JobContext,
  type JobHandler,
  type SenderEvents,
} from "../../patterns/index.js"
import { openSender, openWorker } from "../helpers/paranoid.js"

const signal = (ms = 8000): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(ms) })

/** A retry backoff far longer than any test here waits: only the handler's delay can be seen. */
const SLOW_BACKOFF = { initial: 10_000, max: 10_000, factor: 2, jitter: 0 } as const

type Nacked = SenderEvents["message:nacked"][0]
type Dead = SenderEvents["message:dead"][0]

/** The `message:nacked` and `message:dead` events of `emitter`, in order. */
function watch(emitter: {
  on(e: "message:nacked", f: (x: Nacked) => void): unknown
  on(e: "message:dead", f: (x: Dead) => void): unknown
}): { nacked: Nacked[]; dead: Dead[] } {
  const seen = { nacked: [] as Nacked[], dead: [] as Dead[] }
  emitter.on("message:nacked", (e) => seen.nacked.push(e))
  emitter.on("message:dead", (e) => seen.dead.push(e))
  return seen
}

describe("Handler control: retry with a delay", () => {
  const DELAY = 200
  const ways: [string, JobHandler][] = [
    [
      "ctx.retry({ delay }) in a handler that returns",
      (_p, ctx) => {
        ctx.retry({ delay: DELAY })
        return "returned after retry(): no ack"
      },
    ],
    [
      "a RetryError thrown from an async handler",
      async () => {
        throw new RetryError("rate limited", { delay: DELAY })
      },
    ],
  ]
  for (const [name, control] of ways) {
    it(`${name}: the next attempt comes after the delay, not the backoff`, async () => {
      const sender = await openSender({ retryBackoff: SLOW_BACKOFF })
      const seen = watch(sender)
      let decidedAt = 0
      let retriedAt = 0
      const worker = await openWorker(sender.endpoint, {
        handler: async (p, ctx) => {
          if (ctx.attempt > 1) {
            retriedAt = Date.now()
            return "ok"
          }
          decidedAt = Date.now()
          return control(p, ctx)
        },
      })
      const failed = once(worker, "job:failed", signal())
      const reply = await sender.request("job", { timeout: 5000 })
      expect(reply).toBe("ok") // attempt 1 was not acked
      // The sender counts the delay from the NACK, which left after `decidedAt`.
      expect(retriedAt - decidedAt).toBeGreaterThanOrEqual(DELAY)
      expect(retriedAt - decidedAt).toBeLessThan(5000) // the backoff would be 10 s
      expect(seen.nacked).toEqual([
        {
          id: expect.any(String) as string,
          attempt: 1,
          delay: DELAY,
          error: ctxRetry(name) ? "retry requested by the handler" : "rate limited",
        },
      ])
      const [event] = (await failed) as [{ attempt: number; error: Error }]
      expect(event.attempt).toBe(1)
      expect(event.error).toBeInstanceOf(RetryError)
      expect(worker.stats()).toMatchObject({ acked: 1, nacked: 1 })
      expect(sender.stats()).toMatchObject({ acked: 1, dead: 0 })
    })
  }

  it("the attempts still count: a retry at the last attempt makes a dead letter with its reason", async () => {
    const sender = await openSender({ maxAttempts: 3, retryBackoff: SLOW_BACKOFF })
    const seen = watch(sender)
    const attempts: number[] = []
    await openWorker(sender.endpoint, {
      handler: (_p, ctx) => {
        attempts.push(ctx.attempt)
        ctx.retry({ delay: 10, reason: "still busy" })
      },
    })
    const reply = sender.request("job", { timeout: 5000 })
    await expect(reply).rejects.toBeInstanceOf(DeadLetterError)
    await expect(reply).rejects.toMatchObject({ attempts: 3 })
    expect(attempts).toEqual([1, 2, 3])
    expect(seen.nacked.map((e) => [e.attempt, e.delay, e.error])).toEqual([
      [1, 10, "still busy"],
      [2, 10, "still busy"],
    ])
    expect(seen.dead).toMatchObject([{ attempts: 3, error: "still busy" }])
    const [letter] = await sender.deadLetters()
    expect(letter).toMatchObject({ attempts: 3, lastError: "still busy" })
  })

  it("ctx.retry() without a delay takes the sender's backoff; a delay is rounded up to a whole ms", async () => {
    const sender = await openSender({
      retryBackoff: { initial: 30, max: 30, factor: 2, jitter: 0 },
    })
    const seen = watch(sender)
    await openWorker(sender.endpoint, {
      handler: (_p, ctx) => {
        if (ctx.attempt === 1) return ctx.retry()
        if (ctx.attempt === 2) return ctx.retry({ delay: 1.2 })
        return "ok"
      },
    })
    await expect(sender.request("job", { timeout: 5000 })).resolves.toBe("ok")
    expect(seen.nacked.map((e) => [e.attempt, e.delay])).toEqual([
      [1, 30],
      [2, 2],
    ])
  })
})

/** The name of a case that uses `ctx.retry()`, whose default reason the nack carries. */
function ctxRetry(name: string): boolean {
  return name.startsWith("ctx.retry")
}

describe("Handler control: terminate", () => {
  const ways: [string, JobHandler][] = [
    [
      "ctx.term(reason) in a handler that returns",
      (_p, ctx) => {
        ctx.term("bad input")
        return "returned after term(): no ack"
      },
    ],
    [
      "an UnrecoverableError thrown at once",
      () => {
        throw new UnrecoverableError("bad input")
      },
    ],
    [
      "an UnrecoverableError thrown from an async handler",
      async () => {
        throw new UnrecoverableError("bad input")
      },
    ],
  ]
  for (const [name, control] of ways) {
    it(`${name}: dead-letters at the first attempt, with the reason, and never retries`, async () => {
      const sender = await openSender({
        maxAttempts: 5,
        retryBackoff: { initial: 10, max: 10, factor: 2, jitter: 0 },
      })
      const seen = watch(sender)
      const attempts: number[] = []
      const worker = await openWorker(sender.endpoint, {
        handler: (p, ctx) => {
          attempts.push(ctx.attempt)
          return control(p, ctx)
        },
      })
      const failed = once(worker, "job:failed", signal())
      const dead = once(sender, "message:dead", signal())
      const reply = sender.request("job", { timeout: 5000 })
      await expect(reply).rejects.toBeInstanceOf(DeadLetterError)
      await expect(reply).rejects.toMatchObject({ attempts: 1 })
      const [event] = (await dead) as [Dead]
      expect(event).toMatchObject({ attempts: 1, error: "bad input" })
      const [letter] = await sender.deadLetters()
      expect(letter).toMatchObject({ id: event.id, attempts: 1, lastError: "bad input" })
      expect(seen.nacked).toEqual([])
      const [jobFailed] = (await failed) as [{ error: Error }]
      expect(jobFailed.error).toBeInstanceOf(UnrecoverableError)
      expect(jobFailed.error.message).toBe("bad input")
      // The message is finished: a later send is the only other job the worker gets.
      await expect(sender.request("after", { timeout: 5000 })).rejects.toBeInstanceOf(
        DeadLetterError,
      )
      expect(attempts).toEqual([1, 1])
      expect(sender.stats()).toMatchObject({ dead: 2, redelivered: 0, acked: 0 })
      expect(worker.stats()).toMatchObject({ acked: 0, nacked: 2 })
    })
  }

  it("ctx.term() without a reason says the handler terminated it", async () => {
    const sender = await openSender()
    await openWorker(sender.endpoint, { handler: (_p, ctx) => ctx.term() })
    const dead = once(sender, "message:dead", signal())
    await sender.send("job")
    const [event] = (await dead) as [Dead]
    expect(event).toMatchObject({ attempts: 1, error: "terminated by the handler" })
  })
})

describe("Handler control: the first decision wins", () => {
  it("term() then retry() then a throw: dead-lettered with term's reason", async () => {
    const sender = await openSender({ maxAttempts: 5, retryBackoff: SLOW_BACKOFF })
    const seen = watch(sender)
    await openWorker(sender.endpoint, {
      handler: (_p, ctx) => {
        ctx.term("first")
        ctx.retry({ delay: 0, reason: "second" })
        throw new Error("third")
      },
    })
    const dead = once(sender, "message:dead", signal())
    await sender.send("job")
    expect((await dead)[0]).toMatchObject({ attempts: 1, error: "first" })
    expect(seen.nacked).toEqual([])
  })

  it("retry() then term() then an UnrecoverableError: retried after retry's delay", async () => {
    const sender = await openSender({ maxAttempts: 5, retryBackoff: SLOW_BACKOFF })
    const seen = watch(sender)
    await openWorker(sender.endpoint, {
      handler: async (_p, ctx) => {
        if (ctx.attempt > 1) return "ok"
        ctx.retry({ delay: 20, reason: "first" })
        ctx.term("second")
        throw new UnrecoverableError("third")
      },
    })
    await expect(sender.request("job", { timeout: 5000 })).resolves.toBe("ok")
    expect(seen.nacked).toMatchObject([{ attempt: 1, delay: 20, error: "first" }])
    expect(seen.dead).toEqual([])
  })

  it("a decision after the handler ended does nothing: the job stays acked", async () => {
    const sender = await openSender()
    const seen = watch(sender)
    let kept: JobContext | undefined
    const worker = await openWorker(sender.endpoint, {
      handler: (p, ctx) => {
        kept = ctx
        return p
      },
    })
    await expect(sender.request("job", { timeout: 5000 })).resolves.toBe("job")
    const ctx = kept as JobContext
    expect(() => ctx.term("too late")).not.toThrow()
    expect(() => ctx.retry({ delay: 0 })).not.toThrow()
    // Arguments are still checked.
    expect(() => ctx.retry({ delay: -1 })).toThrow(RangeError)
    // Another job in the same worker shows that nothing was sent for the old one meanwhile.
    await expect(sender.request("next", { timeout: 5000 })).resolves.toBe("next")
    expect(worker.stats()).toMatchObject({ acked: 2, nacked: 0 })
    expect(seen).toEqual({ nacked: [], dead: [] })
    expect(sender.stats()).toMatchObject({ acked: 2, dead: 0, staleAcks: 0 })
  })
})

describe("Handler control with dedupe", () => {
  it("a job that decided to retry is not recorded as complete: its retry runs the handler again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pirate-control-"))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const sender = await openSender({ retryBackoff: SLOW_BACKOFF })
    const runs: number[] = []
    const worker = await openWorker(sender.endpoint, {
      dedupe: dir,
      handler: (_p, ctx) => {
        runs.push(ctx.attempt)
        if (ctx.attempt === 1) {
          ctx.retry({ delay: 0 })
          return "not complete"
        }
        return "done"
      },
    })
    await expect(sender.request("job", { timeout: 5000 })).resolves.toBe("done")
    expect(runs).toEqual([1, 2])
    expect(worker.stats()).toMatchObject({ deduplicated: 0, acked: 1, nacked: 1 })
  })

  it("term() under dedupe dead-letters at once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pirate-control-"))
    onTestFinished(() => rm(dir, { recursive: true, force: true }))
    const sender = await openSender()
    await openWorker(sender.endpoint, {
      dedupe: dir,
      handler: (_p, ctx) => ctx.term("no"),
    })
    const reply = sender.request("job", { timeout: 5000 })
    await expect(reply).rejects.toMatchObject({
      attempts: 1,
      message: expect.stringMatching(/: no$/) as string,
    })
  })
})

describe("Handler control through a ParanoidPirateQueue", () => {
  it("term() answers the Lazy Pirate client with the dead letter at the first attempt; retry() takes its delay", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
      maxAttempts: 5,
      retryBackoff: SLOW_BACKOFF,
    })
    onTestFinished(() => queue.close())
    const seen = watch(queue)
    const attempts: [string, number][] = []
    const ready = once(queue, "worker:ready", signal())
    await openWorker(queue.backendEndpoint, {
      handler: (p, ctx) => {
        attempts.push([p as string, ctx.attempt])
        if (p === "term") return ctx.term("bad input")
        if (ctx.attempt === 1) return ctx.retry({ delay: 50, reason: "later" })
        return "ok"
      },
    })
    await ready
    const client = new LazyPirateClient({
      connect: queue.frontendEndpoint,
      timeout: 5000,
      retries: 1,
    })
    onTestFinished(() => client.close())
    const failure = client.request("term")
    await expect(failure).rejects.toBeInstanceOf(RemoteError)
    await expect(failure).rejects.toMatchObject({
      remoteName: "DeadLetterError",
      message: expect.stringMatching(/after 1 attempt: bad input$/) as string,
    })
    expect(seen.dead).toMatchObject([{ attempts: 1, error: "bad input" }])
    await expect(client.request("retry")).resolves.toBe("ok")
    expect(seen.nacked).toMatchObject([{ attempt: 1, delay: 50, error: "later" }])
    expect(attempts).toEqual([
      ["term", 1],
      ["retry", 1],
      ["retry", 2],
    ])
  })
})

describe("Handler control with a plain PPP sender (no nack)", () => {
  it("term() is a failure like any other: the sender retries after its backoff", async () => {
    const sender = await openSender({
      maxAttempts: 2,
      retryBackoff: { initial: 10, max: 10, factor: 2, jitter: 0 },
    })
    const attempts: number[] = []
    await openWorker(sender.endpoint, {
      protocol: "ppp",
      handler: (_p, ctx) => {
        attempts.push(ctx.attempt)
        ctx.term("bad input")
      },
    })
    const dead = once(sender, "message:dead", signal())
    await sender.send("job")
    const [event] = (await dead) as [Dead]
    // Both attempts ran; the reason never reached the sender.
    expect(attempts).toEqual([1, 2])
    expect(event.attempts).toBe(2)
    expect(event.error).not.toContain("bad input")
  })
})

describe("Handler control: wrong arguments", () => {
  it("ctx.retry() and ctx.term() throw TypeError/RangeError naming the argument, and decide nothing", async () => {
    const sender = await openSender()
    const thrown: unknown[] = []
    const tryIt = (f: () => void): void => {
      try {
        f()
        thrown.push("no error")
      } catch (err) {
        thrown.push(err)
      }
    }
    await openWorker(sender.endpoint, {
      handler: (p, ctx) => {
        tryIt(() => ctx.retry({ delay: -1 }))
        tryIt(() => ctx.retry({ delay: Number.POSITIVE_INFINITY }))
        tryIt(() => ctx.retry({ delay: 86_400_001 }))
        tryIt(() => ctx.retry({ delay: Number.NaN }))
        tryIt(() => ctx.retry({ delay: "5" as unknown as number }))
        tryIt(() => ctx.retry("soon" as unknown as { delay: number }))
        tryIt(() => ctx.retry({ reason: 5 as unknown as string }))
        tryIt(() => ctx.term(5 as unknown as string))
        return p // none of them decided: acked
      },
    })
    await expect(sender.request("job", { timeout: 5000 })).resolves.toBe("job")
    const shape = thrown.map((e) => [
      e instanceof Error ? e.constructor.name : e,
      e instanceof Error ? e.message.split(" ")[0] : "",
    ])
    expect(shape).toEqual([
      ["RangeError", "'delay'"],
      ["RangeError", "'delay'"],
      ["RangeError", "'delay'"],
      ["TypeError", "'delay'"],
      ["TypeError", "'delay'"],
      ["TypeError", "ctx.retry()'s"],
      ["TypeError", "'reason'"],
      ["TypeError", "'reason'"],
    ])
    expect(sender.stats()).toMatchObject({ acked: 1, dead: 0 })
  })

  it("RetryError checks its delay; both classes come from both entry points", () => {
    expect(() => new RetryError("x", { delay: -5 })).toThrow(RangeError)
    expect(() => new RetryError("x", { delay: -5 })).toThrow(/'delay'/)
    expect(() => new RetryError("x", { delay: null as unknown as number })).toThrow(TypeError)
    expect(new RetryError("x", { delay: 0 }).delay).toBe(0)
    expect(new RetryError("x").delay).toBeUndefined()
    const cause = new Error("429")
    expect(new RetryError("x", { delay: 1, cause }).cause).toBe(cause)
    expect(new RetryError()).toMatchObject({
      name: "RetryError",
      message: "retry requested by the handler",
    })
    expect(new UnrecoverableError()).toMatchObject({
      name: "UnrecoverableError",
      message: "terminated by the handler",
    })
    expect(lib.RetryError).toBe(RetryError)
    expect(lib.UnrecoverableError).toBe(UnrecoverableError)
    expect(new UnrecoverableError("x")).toBeInstanceOf(Error)
    expect(Worker).toBeTypeOf("function")
  })
})
