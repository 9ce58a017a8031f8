/**
 * A worker process for `bench/pair.ts`: one `Worker` at a time (default codec, msgpack; it replies
 * `true` at once), reused across the runs so that its JIT stays warm.
 *
 * argv: JSON `{ concurrency, prefetch }`.
 * IPC from the parent:
 *   `{ type: "connect", endpoints, heartbeatInterval? }` closes the previous worker and opens a new
 *     one connected to every endpoint (both senders of a pair, or one plain sender); answers
 *     `{ type: "connected" }` at once and `{ type: "ready", endpoint }` each time a sender answers.
 *   `{ type: "close" }` closes the worker (GOODBYE, acks flushed) and answers
 *     `{ type: "closed", cpuUs, handled, votes }`: CPU time of this process since the connect (µs),
 *     handler calls and the votes it cast.
 * The process exits when the IPC channel closes, so a parent that dies leaves nothing behind.
 */
import { Worker } from "../../patterns/index.js"

interface Options {
  concurrency: number
  prefetch: number
}

type Command =
  { type: "connect"; endpoints: string[]; heartbeatInterval?: number } | { type: "close" }

const options = JSON.parse(process.argv[2] ?? "{}") as Options
let worker: Worker | undefined
let cpu = process.cpuUsage()
let handled = 0

function tell(message: object): void {
  if (process.connected) process.send?.(message)
}

async function connect(endpoints: string[], heartbeatInterval: number | undefined): Promise<void> {
  await worker?.close()
  cpu = process.cpuUsage()
  handled = 0
  const w = new Worker({
    connect: endpoints,
    concurrency: options.concurrency,
    prefetch: options.prefetch,
    ...(heartbeatInterval !== undefined ? { heartbeatInterval } : {}),
    handler: () => {
      handled++
      return true
    },
  })
  w.on("sender:ready", ({ endpoint }) => tell({ type: "ready", endpoint }))
  w.on("error", (err) => tell({ type: "error", message: err.message }))
  worker = w
  await w.open()
  tell({ type: "connected" })
}

async function close(): Promise<void> {
  const w = worker
  worker = undefined
  const votes = w?.stats().votes ?? 0
  await w?.close()
  const used = process.cpuUsage(cpu)
  tell({ type: "closed", cpuUs: used.user + used.system, handled, votes })
}

process.on("disconnect", () => process.exit(0))
process.on("message", (m: Command) => {
  const done =
    m.type === "connect"
      ? connect(m.endpoints, m.heartbeatInterval)
      : m.type === "close"
        ? close()
        : undefined
  done?.catch((err: unknown) => {
    tell({ type: "error", message: err instanceof Error ? err.message : String(err) })
  })
})
tell({ type: "started" })
