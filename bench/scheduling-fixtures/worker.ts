/**
 * A worker process for `bench/scheduling.ts`: one `Worker` at a time (default codec, replies an
 * empty Buffer at once), reused across the runs so that its JIT stays warm.
 *
 * argv: JSON `{ concurrency, prefetch }`.
 * IPC from the parent:
 *   `{ type: "connect", endpoint, record? }` closes the previous worker and opens a new one on
 *     `endpoint`; answers `{ type: "connected" }` at once (a worker never waits for its sender)
 *     and `{ type: "ready" }` when the sender answered. With `record`, every payload carries its
 *     due time (epoch ms, a float64 big-endian in its first 8 bytes) and the handler records how
 *     late it runs: `now − due` in ms, with sub-ms precision.
 *   `{ type: "close" }` closes the worker (GOODBYE, acks flushed) and answers `{ type: "closed",
 *     cpuUs, handled, lateMs, firstAt, lastAt }`: CPU time of this process since the connect (µs),
 *     handler calls, the recorded lateness of each (record mode; else empty) and the epoch ms of
 *     the first and last handler call (NaN when none).
 * The process exits when the IPC channel closes, so a parent that dies leaves nothing behind.
 */
import { Worker } from "../../patterns/index.js"

interface Options {
  concurrency: number
  prefetch: number
}

type Command = { type: "connect"; endpoint: string; record?: boolean } | { type: "close" }

const options = JSON.parse(process.argv[2] ?? "{}") as Options
const ACK = Buffer.alloc(0)
let worker: Worker | undefined
let cpu = process.cpuUsage()
let handled = 0
let lateMs: number[] = []
let firstAt = Number.NaN
let lastAt = Number.NaN

function tell(message: object): void {
  if (process.connected) process.send?.(message)
}

/** Epoch ms with sub-ms precision, on the same clock as the parent's `Date.now()`. */
function now(): number {
  return performance.timeOrigin + performance.now()
}

/** The due time written into the payload by the parent (record mode). */
function dueOf(payload: unknown): number {
  if (!(payload instanceof Uint8Array) || payload.byteLength < 8)
    throw new TypeError("record mode: the payload carries no due time")
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getFloat64(0)
}

async function connect(endpoint: string, record: boolean): Promise<void> {
  await worker?.close()
  cpu = process.cpuUsage()
  handled = 0
  lateMs = []
  firstAt = Number.NaN
  lastAt = Number.NaN
  const w = new Worker({
    connect: endpoint,
    concurrency: options.concurrency,
    prefetch: options.prefetch,
    handler: (payload) => {
      const at = now()
      if (handled === 0) firstAt = at
      lastAt = at
      handled++
      if (record) lateMs.push(at - dueOf(payload))
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
  tell({ type: "closed", cpuUs: used.user + used.system, handled, lateMs, firstAt, lastAt })
  lateMs = []
}

process.on("disconnect", () => process.exit(0))
process.on("message", (m: Command) => {
  const done =
    m.type === "connect"
      ? connect(m.endpoint, m.record === true)
      : m.type === "close"
        ? close()
        : undefined
  done?.catch((err: unknown) => {
    tell({ type: "error", message: err instanceof Error ? err.message : String(err) })
  })
})
tell({ type: "started" })
