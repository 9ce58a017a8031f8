/**
 * Dispatch fairness: work spreads over ready workers whatever their number, for requests one at a
 * time and for requests that arrive together. A property over 1–16 workers: no worker gets more
 * than its fair share plus one credit's worth.
 */
import { once } from "node:events"
import fc from "fast-check"
import { describe, expect, it, onTestFinished } from "vitest"
import {
  LazyPirateClient,
  ParanoidPirateQueue,
  Sender,
  Worker,
  type WorkerOptions,
} from "../../patterns/index.js"

const FAST = { heartbeatInterval: 100, liveness: 3 } as const
const noop = (): void => undefined

/** A gate that handlers wait on, and a count of the handlers started so far. */
class Turnstile {
  started = 0
  #open: Promise<void> = Promise.resolve()
  #release: () => void = () => undefined
  #waiters: { n: number; resolve: () => void }[] = []

  close(): void {
    this.#open = new Promise((resolve) => (this.#release = resolve))
  }

  open(): void {
    this.#release()
  }

  /** Called by a handler: counts it, then waits for the gate. */
  async pass(): Promise<void> {
    this.started++
    this.#waiters = this.#waiters.filter((w) => (this.started >= w.n ? (w.resolve(), false) : true))
    await this.#open
  }

  /** Resolves once `n` handlers have started in all. */
  startedAtLeast(n: number): Promise<void> {
    if (this.started >= n) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ n, resolve }))
  }
}

/**
 * Opens `n` workers with `credit` each on `endpoint` (closed with `workers`); `served[i]` counts
 * worker i's jobs.
 */
async function openWorkers(
  emitter: Sender | ParanoidPirateQueue,
  endpoint: string,
  n: number,
  credit: number,
  handler: () => Promise<void> | void,
  workers: Worker[] = [],
): Promise<number[]> {
  const served = Array.from({ length: n }, () => 0)
  for (let i = 0; i < n; i++) {
    const options: WorkerOptions = {
      connect: endpoint,
      ...FAST,
      concurrency: credit,
      reconnect: { initial: 50, max: 400 },
      handler: async () => {
        served[i] = (served[i] ?? 0) + 1
        await handler()
        return i
      },
    }
    const worker = new Worker(options)
    workers.push(worker)
    const ready = once(emitter, "worker:ready", { signal: AbortSignal.timeout(5000) })
    await worker.open()
    await ready
  }
  return served
}

function expectFair(served: number[], credit: number): void {
  const total = served.reduce((a, b) => a + b, 0)
  const bound = total / served.length + credit
  for (const count of served) expect(count).toBeLessThanOrEqual(bound)
}

/** Waves of requests: each wave is a list of chunks, each chunk arriving at once. */
const waves = fc.array(fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 4 }), {
  minLength: 1,
  maxLength: 8,
})

describe("dispatch fairness", () => {
  it("spreads requests that arrive together over every worker, for 1–16 workers (Sender)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 4 }),
        waves,
        async (n, credit, plan) => {
          const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", ...FAST })
          const gate = new Turnstile()
          const workers: Worker[] = []
          try {
            const pass = () => gate.pass()
            const served = await openWorkers(sender, sender.endpoint, n, credit, pass, workers)
            for (const wave of plan) {
              // A wave never holds more than the workers' credit, so all of it is dispatched
              // before anything is acked: where each request goes is the dispatcher's choice alone.
              let room = n * credit
              const replies: Promise<unknown>[] = []
              gate.close()
              for (const chunk of wave) {
                const size = Math.min(chunk, room)
                if (size === 0) break
                room -= size
                // One turn of the event loop: the chunk is ready at once, in one dispatch pass.
                for (let k = 0; k < size; k++) replies.push(sender.request(k, { timeout: 5000 }))
                await gate.startedAtLeast(gate.started + size)
              }
              gate.open()
              await Promise.all(replies)
            }
            expectFair(served, credit)
          } finally {
            gate.open()
            await Promise.all(workers.map((w) => w.close()))
            await sender.close()
          }
        },
      ),
      { numRuns: 60 },
    )
  }, 120_000)

  it("spreads Lazy Pirate requests through a queue over 1–16 workers, one at a time or concurrent", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        async (n, credit, concurrent) => {
          const queue = await ParanoidPirateQueue.open({
            frontend: "tcp://127.0.0.1:*",
            backend: "tcp://127.0.0.1:*",
            ...FAST,
          })
          const client = new LazyPirateClient({
            connect: queue.frontendEndpoint,
            timeout: 5000,
            retries: 1,
            concurrency: 64,
          })
          const workers: Worker[] = []
          try {
            const served = await openWorkers(queue, queue.backendEndpoint, n, credit, noop, workers)
            const total = 6 * n
            if (concurrent)
              await Promise.all(Array.from({ length: total }, (_, k) => client.request(k)))
            else for (let k = 0; k < total; k++) await client.request(k)
            expectFair(served, credit)
            if (!concurrent)
              expect(Math.max(...served) - Math.min(...served)).toBeLessThanOrEqual(1)
          } finally {
            await client.close()
            await Promise.all(workers.map((w) => w.close()))
            await queue.close()
          }
        },
      ),
      { numRuns: 12 },
    )
  }, 120_000)

  it("sends 90 sequential requests through a queue to three workers 30 each", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      ...FAST,
    })
    onTestFinished(() => queue.close())
    const workers: Worker[] = []
    onTestFinished(async () => {
      await Promise.all(workers.map((w) => w.close()))
    })
    const served = await openWorkers(queue, queue.backendEndpoint, 3, 1, noop, workers)
    const client = new LazyPirateClient({ connect: queue.frontendEndpoint, timeout: 5000 })
    onTestFinished(() => client.close())
    for (let k = 0; k < 90; k++) await client.request(k)
    expect(served).toEqual([30, 30, 30])
  })
})
