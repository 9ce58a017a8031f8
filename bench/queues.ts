/**
 * What do named queues and message headers cost (issue 14)? Work-queue throughput of a `Sender`
 * (a `LevelJournal` in a fresh temp dir per run, default codec and durability) with worker
 * processes, 256-byte payloads, sends awaited in batches of PUBLISH_BATCH, first send → `drained()`:
 *
 *   raw-zeromq             the raw zeromq.js baseline in the same process: a DEALER here → a ROUTER
 *                          in a child (bench/fixtures/raw-sink.ts), one-way, each send awaited
 *   one-queue              no send option, 2 workers: the shape that must not regress (≤ 3 %)
 *   headers-3              every send with `headers` of 3 entries (tenant, a 55-character
 *                          trace-context-like value under the name `trace`, source), 2 workers:
 *                          the extra µs per message against one-queue
 *   headers-3-traceparent  the same with the middle entry named `traceparent`: with
 *                          `@opentelemetry/api` installed (it is, as a dev dependency) each handler
 *                          call runs in a consumer span (a no-op one: no SDK is registered)
 *   one-queue-16           one-queue with 16 workers (the worker count of queues-8x2)
 *   queues-8x2             8 named queues, 2 workers each (16 worker processes, each a `Worker`
 *                          with `queues: [its queue]`), sends round robin over the 8 queues; the
 *                          run fails unless every message was handled by a worker of its own queue
 *
 *   npx tsx bench/queues.ts              (docs/bench-queues.md explains every field)
 *   env: N (50000 messages), SIZE (256 bytes), RUNS (5), WARMUP (5000), BENCH_QUICK=1 (N 10000,
 *        RUNS 2, WARMUP 2000: well under a minute), CONCURRENCY (64: each worker's concurrency
 *        and prefetch), PUBLISH_BATCH (1000), CASES (comma-separated subset of the case names)
 *
 * Prints JSON lines: one per case per run, then one per case with the medians (`stat: "median"`)
 * and the ratios. The cases of one run are interleaved (their order rotates from run to run), so
 * that the noise of a shared machine falls on every case alike.
 *
 * The `one-queue` case uses nothing that named queues added, so this file (and its worker
 * fixture) runs unchanged at the commit before them (`CASES=one-queue`): that is how the
 * regression target is checked (docs/bench-queues.md).
 */
import { randomBytes } from "node:crypto"
import type { SendOptions } from "../patterns/index.js"
import { forkModule, runBench, withTimeout } from "./lib/children.js"
import { loadLibrary } from "./lib/compiled.js"
import { removeDir, tempDir } from "./lib/temp-dirs.js"
import { openSink, rawOneWay, type Sink } from "./lib/raw-sink.js"
import { envInt, printLine } from "./lib/env.js"
import { median, medianOf, round } from "./lib/stats.js"

const { Sender } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 10_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 2 : 5)
const WARMUP = envInt("WARMUP", QUICK ? 2000 : 5000)
const CONCURRENCY = envInt("CONCURRENCY", 64)
const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1000)
/** Comma-separated subset of the cases to run (default: all). */
const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
/** Named queues of queues-8x2, and workers per queue. */
const QUEUES = 8
const WORKERS_PER_QUEUE = 2
const FEW_WORKERS = 2
const MANY_WORKERS = QUEUES * WORKERS_PER_QUEUE
/** Distinct random payloads cycled through (random: nothing for LevelDB's compression to squeeze). */
const POOL = 1024
const BIND = "tcp://127.0.0.1:*"
const BENCH = "queues"
const ONE_QUEUE_TARGET = "within 3 % of one-queue before named queues (b322af4)"

interface Result {
  case: string
  [key: string]: unknown
}

// ---------------------------------------------------------------------------------------------
// children and temporary directories

interface WorkerChild {
  readonly pid: number
  next<T extends { type: string }>(type: string, ms: number): Promise<T>
  send(message: object): void
  kill(): Promise<void>
}

interface Closed {
  type: "closed"
  cpuUs: number
  handled: number
  queue: string | null
  byQueue: Record<string, number>
  misrouted: number
}

function forkWorker(): WorkerChild {
  const child = forkModule(new URL("./queues-fixtures/worker.ts", import.meta.url), [
    JSON.stringify({ concurrency: CONCURRENCY, prefetch: CONCURRENCY }),
  ])
  child.process.on("message", (m: { type: string; message?: string }) => {
    if (m.type === "error")
      process.stderr.write(`worker (${String(child.pid)}): ${m.message ?? "?"}\n`)
  })
  return {
    pid: child.pid,
    next: <T extends { type: string }>(type: string, ms: number) =>
      child.next<T>((m: T) => m.type === type, ms, `"${type}" from the worker`),
    send: (message) => child.send(message),
    kill: () => child.end(),
  }
}

/**
 * Connects every worker to `endpoint` (worker k takes `queueOf(k)` when given); resolves once the
 * sender answered each of them.
 */
async function connectWorkers(
  workers: WorkerChild[],
  endpoint: string,
  queueOf: ((k: number) => string) | undefined,
): Promise<void> {
  await Promise.all(
    workers.map(async (w, k) => {
      const connected = w.next("connected", 10_000)
      const ready = w.next("ready", 30_000)
      w.send({ type: "connect", endpoint, ...(queueOf ? { queue: queueOf(k) } : {}) })
      await Promise.all([connected, ready])
    }),
  )
}

/** Closes every worker (GOODBYE, acks flushed); resolves with what each reported. */
async function closeWorkers(workers: WorkerChild[]): Promise<Closed[]> {
  return Promise.all(
    workers.map(async (w) => {
      const reply = w.next<Closed>("closed", 15_000)
      w.send({ type: "close" })
      return reply
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// payloads and send options

/** POOL random payloads of SIZE bytes. */
const BODIES = Array.from({ length: POOL }, () => randomBytes(SIZE))
/**
 * The payloads of queues-8x2: the same, each naming in its first byte the queue it is sent to
 * (send i goes to queue i % QUEUES, and POOL is a multiple of QUEUES).
 */
const QUEUE_BODIES = BODIES.map((b, j) => {
  const body = Buffer.from(b)
  body[0] = j % QUEUES
  return body
})
const QUEUE_NAMES = Array.from({ length: QUEUES }, (_, q) => `q${String(q)}`)
/** The header values, drawn once and cycled through: 16 tenants, POOL trace-context-like values. */
const TENANTS = Array.from({ length: 16 }, (_, i) => `tenant-${String(i).padStart(2, "0")}`)
/** W3C traceparent shape: "00-" 32 hex "-" 16 hex "-01", 55 characters. */
const TRACES = Array.from(
  { length: POOL },
  () => `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`,
)
const SOURCE = "bench-queues"

type Kind = "one-queue" | "headers-3" | "headers-3-traceparent" | "one-queue-16" | "queues-8x2"

/** The options of the i-th send of a case (built per send, as a caller would). */
function sendOptions(kind: Kind, i: number): SendOptions | undefined {
  switch (kind) {
    case "one-queue":
    case "one-queue-16":
      return undefined
    case "headers-3":
      return {
        headers: {
          tenant: TENANTS[i % TENANTS.length] as string,
          trace: TRACES[i % POOL] as string,
          source: SOURCE,
        },
      }
    case "headers-3-traceparent":
      return {
        headers: {
          tenant: TENANTS[i % TENANTS.length] as string,
          traceparent: TRACES[i % POOL] as string,
          source: SOURCE,
        },
      }
    case "queues-8x2":
      return { queue: QUEUE_NAMES[i % QUEUES] as string }
  }
}

/** Messages of n sent round robin that go to queue q. */
function expectedOn(q: number, n: number): number {
  return Math.floor(n / QUEUES) + (q < n % QUEUES ? 1 : 0)
}

// ---------------------------------------------------------------------------------------------
// cases

/** Process CPU time (user + system, every thread) per message, in µs. */
function cpuPerMsg(usage: NodeJS.CpuUsage, n: number): number {
  return round((usage.user + usage.system) / n, 2)
}

/**
 * queues-8x2: fails loudly unless each queue's messages were all handled, by workers of that queue
 * only (the payloads name their queue, the workers count), and the sender's per-queue counters agree.
 */
function checkRouting(
  n: number,
  closed: Closed[],
  perQueueAcked: Record<string, number>,
  redelivered: number,
): Record<string, number> {
  const handled: Record<string, number> = {}
  const problems: string[] = []
  for (const c of closed) {
    if (c.misrouted > 0)
      problems.push(
        `a worker of ${String(c.queue)} handled ${c.misrouted} message(s) of another queue`,
      )
    for (const [q, count] of Object.entries(c.byQueue)) handled[q] = (handled[q] ?? 0) + count
  }
  for (let q = 0; q < QUEUES; q++) {
    const name = QUEUE_NAMES[q] as string
    const expected = expectedOn(q, n)
    const got = handled[name] ?? 0
    // A redelivery (none in a healthy run) is handled twice.
    if (redelivered === 0 ? got !== expected : got < expected)
      problems.push(`${name}: ${got} handled, ${expected} sent`)
    if (perQueueAcked[name] !== expected)
      problems.push(
        `${name}: stats({ queue }).acked ${String(perQueueAcked[name])}, ${expected} sent`,
      )
  }
  const unknown = Object.keys(handled).filter((q) => !QUEUE_NAMES.includes(q))
  if (unknown.length > 0) problems.push(`handled for unknown queues: ${unknown.join(", ")}`)
  if (problems.length > 0) throw new Error(`queues-8x2: misrouted: ${problems.join("; ")}`)
  return handled
}

/** A sender in this process, the worker processes `workers`, n messages end to end. */
async function throughput(kind: Kind, n: number, workers: WorkerChild[]): Promise<Result> {
  const dir = await tempDir("queues")
  const sender = await Sender.open({ bind: BIND, journal: dir })
  const named = kind === "queues-8x2"
  let connected = false
  try {
    connected = true
    await connectWorkers(
      workers,
      sender.endpoint,
      named ? (k) => QUEUE_NAMES[Math.floor(k / WORKERS_PER_QUEUE)] as string : undefined,
    )
    const bodies = named ? QUEUE_BODIES : BODIES
    const limit = Math.max(60_000, n)
    const cpu = process.cpuUsage()
    const start = performance.now()
    const sending = async (): Promise<void> => {
      for (let i = 0; i < n;) {
        const sends: Promise<string>[] = []
        for (const end = Math.min(n, i + PUBLISH_BATCH); i < end; i++) {
          const options = sendOptions(kind, i)
          sends.push(
            options === undefined
              ? sender.send(bodies[i % POOL])
              : sender.send(bodies[i % POOL], options),
          )
        }
        await Promise.all(sends)
      }
    }
    await withTimeout(sending(), limit, `${kind}: ${n} sends accepted`)
    const accepted = performance.now()
    await sender.drained({ signal: AbortSignal.timeout(limit) })
    const ms = performance.now() - start
    const senderCpu = process.cpuUsage(cpu)
    const stats = sender.stats()
    if (stats.acked !== n) throw new Error(`${kind}: ${stats.acked} of ${n} acked`)
    const perQueueAcked = named
      ? Object.fromEntries(QUEUE_NAMES.map((q) => [q, sender.stats({ queue: q }).acked]))
      : {}
    connected = false
    const closed = await closeWorkers(workers)
    const perQueue = named ? checkRouting(n, closed, perQueueAcked, stats.redelivered) : undefined
    const handled = closed.reduce((a, c) => a + c.handled, 0)
    if (handled < n) throw new Error(`${kind}: the workers handled ${handled} of ${n}`)
    return {
      case: kind,
      journal: true,
      n,
      size: SIZE,
      workers: workers.length,
      ...(named ? { queues: QUEUES, workersPerQueue: WORKERS_PER_QUEUE } : {}),
      ...(kind.startsWith("headers") ? { headers: 3 } : {}),
      concurrency: CONCURRENCY,
      batch: PUBLISH_BATCH,
      ms: round(ms, 1),
      acceptedMs: round(accepted - start, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      cpuUsPerMsg: cpuPerMsg(senderCpu, n),
      workerCpuUsPerMsg: round(closed.reduce((a, c) => a + c.cpuUs, 0) / n, 2),
      // Acceptance → ack (the sender's histogram): mostly time queued behind earlier sends.
      p50us: Math.round(stats.latency.p50 * 1000),
      p99us: Math.round(stats.latency.p99 * 1000),
      redelivered: stats.redelivered,
      ...(perQueue ? { perQueue, misrouted: 0 } : {}),
    }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender.close()
    await removeDir(dir)
  }
}

/** The raw zeromq.js baseline (bench/lib/raw-sink.ts) as a result line. */
async function rawCase(sink: Sink, n: number): Promise<Result> {
  return { case: "raw-zeromq", size: SIZE, ...(await rawOneWay(sink, n, BODIES, "raw-zeromq")) }
}

// ---------------------------------------------------------------------------------------------
// summary

const numbers = (rs: Result[], key: string): number[] =>
  rs.map((r) => r[key]).filter((v): v is number => typeof v === "number")

/** The ratio of the medians of `key` in `mine` and `theirs`, and the median of the per-run ratios. */
function compare(
  mine: Result[],
  theirs: Result[] | undefined,
  key: string,
): { ratio: number; perRun: number } | undefined {
  if (theirs === undefined || theirs.length === 0) return undefined
  const ratio = median(numbers(mine, key)) / median(numbers(theirs, key))
  const perRun: number[] = []
  for (const r of mine) {
    const b = theirs.find((x) => x["run"] === r["run"])?.[key]
    const v = r[key]
    if (typeof b === "number" && typeof v === "number" && b > 0) perRun.push(v / b)
  }
  return { ratio: round(ratio, 3), perRun: round(median(perRun), 3) }
}

/**
 * What `mine` costs per message more than `theirs` (µs): `of` maps a run to its µs per message;
 * the difference of the medians, and the median of the per-run differences.
 */
function extra(
  mine: Result[],
  theirs: Result[] | undefined,
  of: (r: Result) => number,
): { us: number; perRun: number } | undefined {
  if (theirs === undefined || theirs.length === 0) return undefined
  const us = median(mine.map(of)) - median(theirs.map(of))
  const perRun: number[] = []
  for (const r of mine) {
    const b = theirs.find((x) => x["run"] === r["run"])
    if (b !== undefined) perRun.push(of(r) - of(b))
  }
  return { us: round(us, 2), perRun: round(median(perRun), 2) }
}

/** End-to-end wall time per message, µs. */
const wallUs = (r: Result): number => 1e6 / (r["msgsPerSec"] as number)
const senderCpuUs = (r: Result): number => r["cpuUsPerMsg"] as number
const workerCpuUs = (r: Result): number => r["workerCpuUsPerMsg"] as number

/** Each case's reference for the ratio column of bench/run.ts's table. */
const BASELINE: Partial<Record<string, string>> = {
  "one-queue": "raw-zeromq",
  "headers-3": "one-queue",
  "headers-3-traceparent": "one-queue",
  "one-queue-16": "one-queue",
  "queues-8x2": "one-queue-16",
}

function summarize(results: Map<string, Result[]>): void {
  const oneQueue = results.get("one-queue")
  for (const [name, rs] of results) {
    const rates = numbers(rs, "msgsPerSec")
    const line: Record<string, unknown> = {
      bench: BENCH,
      case: name,
      stat: "median",
      runs: rs.length,
      n: N,
      size: SIZE,
      ...(rs[0]?.["workers"] !== undefined ? { workers: rs[0]["workers"] } : {}),
      msgsPerSec: Math.round(median(rates)),
      min: Math.min(...rates),
      max: Math.max(...rates),
      ...medianOf(rs, [
        "cpuUsPerMsg",
        "workerCpuUsPerMsg",
        "peerCpuUsPerMsg",
        "p50us",
        "p99us",
        "acceptedMs",
      ]),
    }
    const raw = compare(rs, results.get("raw-zeromq"), "msgsPerSec")
    if (name !== "raw-zeromq" && raw !== undefined)
      Object.assign(line, { vsRaw: raw.ratio, vsRawPerRun: raw.perRun })
    if (name !== "one-queue" && name !== "raw-zeromq") {
      const one = compare(rs, oneQueue, "msgsPerSec")
      const cpu = compare(rs, oneQueue, "cpuUsPerMsg")
      if (one !== undefined)
        Object.assign(line, {
          vsOneQueue: one.ratio,
          vsOneQueuePerRun: one.perRun,
          ...(cpu !== undefined ? { cpuVsOneQueue: cpu.ratio } : {}),
        })
    }
    if (name.startsWith("headers-3")) {
      // The "cost per message" of 3 headers: sender CPU, end-to-end time, worker CPU.
      const cpu = extra(rs, oneQueue, senderCpuUs)
      const wall = extra(rs, oneQueue, wallUs)
      const workerCpu = extra(rs, oneQueue, workerCpuUs)
      if (cpu && wall && workerCpu)
        Object.assign(line, {
          extraCpuUsPerMsg: cpu.us,
          extraCpuUsPerMsgPerRun: cpu.perRun,
          extraUsPerMsg: wall.us,
          extraUsPerMsgPerRun: wall.perRun,
          extraWorkerCpuUsPerMsg: workerCpu.us,
          extraWorkerCpuUsPerMsgPerRun: workerCpu.perRun,
        })
    }
    if (name === "queues-8x2") {
      const same = compare(rs, results.get("one-queue-16"), "msgsPerSec")
      if (same !== undefined)
        Object.assign(line, { vsOneQueue16: same.ratio, vsOneQueue16PerRun: same.perRun })
      // Every run checked it (a misrouted message fails the run); repeated for the table.
      Object.assign(line, { misrouted: 0, routingChecked: rs.length })
    }
    // For the run.ts table.
    const baseline = BASELINE[name]
    const ratio =
      baseline === undefined ? undefined : compare(rs, results.get(baseline), "msgsPerSec")
    if (baseline !== undefined && ratio !== undefined)
      Object.assign(line, { baseline, ratio: ratio.ratio, runRatioMedian: ratio.perRun })
    if (name === "one-queue") line["target"] = ONE_QUEUE_TARGET
    printLine(line)
  }
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<void> {
  printLine({
    bench: BENCH,
    config: {
      n: N,
      size: SIZE,
      runs: RUNS,
      warmup: WARMUP,
      concurrency: CONCURRENCY,
      publishBatch: PUBLISH_BATCH,
      queues: QUEUES,
      workersPerQueue: WORKERS_PER_QUEUE,
    },
    quick: QUICK,
    cases: CASES ?? "all",
    node: process.version,
  })
  const wanted = (name: string): boolean => CASES === undefined || CASES.includes(name)
  const few: Kind[] = ["one-queue", "headers-3", "headers-3-traceparent"]
  const many: Kind[] = ["one-queue-16", "queues-8x2"]
  // Only as many worker processes as the selected cases use: the first FEW_WORKERS serve the
  // 2-worker cases.
  const count = many.some(wanted) ? MANY_WORKERS : few.some(wanted) ? FEW_WORKERS : 0
  const workers = Array.from({ length: count }, () => forkWorker())
  const sink = wanted("raw-zeromq") ? await openSink() : undefined
  await Promise.all(workers.map((w) => w.next("started", 30_000)))

  const cases: { name: string; run: (warmup: boolean) => Promise<Result> }[] = [
    ...(sink ? [{ name: "raw-zeromq", run: (w: boolean) => rawCase(sink, w ? WARMUP : N) }] : []),
    ...few.map((kind) => ({
      name: kind,
      run: (w: boolean) => throughput(kind, w ? WARMUP : N, workers.slice(0, FEW_WORKERS)),
    })),
    ...many.map((kind) => ({
      name: kind,
      run: (w: boolean) => throughput(kind, w ? WARMUP : N, workers),
    })),
  ]
  const selected = cases.filter((c) => wanted(c.name))
  if (selected.length === 0) throw new Error(`CASES names no case: ${String(CASES)}`)
  for (const c of selected) await c.run(true)

  const results = new Map<string, Result[]>()
  for (let run = 1; run <= RUNS; run++) {
    // Rotated from run to run, so that no case always follows the same one.
    const shift = (run - 1) % selected.length
    for (const c of [...selected.slice(shift), ...selected.slice(0, shift)]) {
      const r = { ...(await c.run(false)), run }
      results.set(r.case, [...(results.get(r.case) ?? []), r])
      printLine({ bench: BENCH, ...r })
    }
  }
  // In the order of the cases: the first run is not rotated.
  summarize(results)
  sink?.dealer.close()
  await Promise.all(workers.map((w) => w.kill()))
}

await runBench(main, 20 * 60_000)
