/**
 * A worker process for `bench/queues.ts`: one `Worker` at a time (default codec, replies an empty
 * Buffer at once), reused across the runs so that its JIT stays warm.
 *
 * argv: JSON `{ concurrency, prefetch }`.
 * IPC from the parent:
 *   `{ type: "connect", endpoint, queue? }` closes the previous worker and opens a new one on
 *     `endpoint`, with `queues: [queue]` when `queue` is given (else no `queues` option at all, so
 *     that the fixture runs unchanged against a version without named queues); answers
 *     `{ type: "connected" }` at once and `{ type: "ready" }` when the sender answered. With a
 *     `queue`, every payload names the queue it was sent to in its first byte (`q<byte>`), and the
 *     handler counts the messages by that name and those where it, or `ctx.queue`, is not this
 *     worker's queue.
 *   `{ type: "close" }` closes the worker (GOODBYE, acks flushed) and answers `{ type: "closed",
 *     cpuUs, handled, queue, byQueue, misrouted }`: CPU time of this process since the connect
 *     (µs), handler calls, the worker's queue (null without one), the handled messages by the
 *     queue their payload names, and the misrouted ones.
 * The process exits when the IPC channel closes, so a parent that dies leaves nothing behind.
 */
import { Worker } from "../../patterns/index.js"

interface Options {
  concurrency: number
  prefetch: number
}

type Command = { type: "connect"; endpoint: string; queue?: string } | { type: "close" }

const options = JSON.parse(process.argv[2] ?? "{}") as Options
const ACK = Buffer.alloc(0)
let worker: Worker | undefined
let queue: string | null = null
let cpu = process.cpuUsage()
let handled = 0
let byQueue: Record<string, number> = {}
let misrouted = 0

function tell(message: object): void {
  if (process.connected) process.send?.(message)
}

async function connect(endpoint: string, q: string | undefined): Promise<void> {
  await worker?.close()
  cpu = process.cpuUsage()
  handled = 0
  byQueue = {}
  misrouted = 0
  queue = q ?? null
  const w = new Worker({
    connect: endpoint,
    concurrency: options.concurrency,
    prefetch: options.prefetch,
    ...(q !== undefined ? { queues: [q] } : {}),
    handler:
      q === undefined
        ? () => {
            handled++
            return ACK
          }
        : (payload, ctx) => {
            handled++
            const sentTo = payload instanceof Uint8Array ? `q${String(payload[0])}` : "?"
            byQueue[sentTo] = (byQueue[sentTo] ?? 0) + 1
            if (sentTo !== q || ctx.queue !== q) misrouted++
            return ACK
          },
  })
  w.on("sender:ready", () => tell({ type: "ready" }))
  w.on("error", (err) => tell({ type: "error", message: err.message }))
  worker = w
  await w.open()
  tell({ type: "connected" })
}

async function close(): Promise<void> {
  const w = worker
  worker = undefined
  await w?.close()
  const used = process.cpuUsage(cpu)
  tell({ type: "closed", cpuUs: used.user + used.system, handled, queue, byQueue, misrouted })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (m: Command) => {
  const done =
    m.type === "connect" ? connect(m.endpoint, m.queue) : m.type === "close" ? close() : undefined
  done?.catch((err: unknown) => {
    tell({ type: "error", message: err instanceof Error ? err.message : String(err) })
  })
})
tell({ type: "started" })
