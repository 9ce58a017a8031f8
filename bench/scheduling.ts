/**
 * What do the scheduling options of `send()` cost (issue 13)? Work-queue throughput of a `Sender`
 * (a `LevelJournal` in a fresh temp dir per run, default codec and durability) with 2 worker
 * processes, 256-byte payloads, sends awaited in batches of PUBLISH_BATCH, first send → `drained()`:
 *
 *   plain            no send option (the reference: this is `os-batched` of bench/journal.ts)
 *   key              every send with `key`, KEYS distinct keys round robin (`vsPlain`, target ≥ 0.8)
 *   priority         every send with a mixed `priority` 0–9 (`vsPlain`, target ≥ 0.9)
 *   memory-plain     `plain` without a journal, for reference
 *   raw-oneway       the raw zeromq.js baseline in the same process: a DEALER here → a ROUTER in a
 *                    child (bench/fixtures/raw-sink.ts), one-way, each send awaited, same payloads
 *
 * and due-time accuracy of delayed messages, with the workers connected:
 *
 *   delay-accuracy         DELAY_N messages sent with `notBefore` = one instant LEAD_MS ahead
 *   delay-accuracy-spread  DELAY_N messages with due times spread evenly over SPREAD_MS, LEAD_MS
 *                          ahead (the "10 000 due in the same second")
 *
 * Each worker records when its handler runs; lateness = handler time − the message's due time
 * (ms, across processes by wall clock; target p99 ≤ 50 ms).
 *
 *   npx tsx bench/scheduling.ts              (docs/bench-scheduling.md explains every field)
 *   env: N (50000 messages), SIZE (256 bytes), RUNS (5), WARMUP (5000), BENCH_QUICK=1 (N 10000,
 *        RUNS 2, WARMUP 2000, LEAD_MS 1000: well under a minute), CONCURRENCY (64: each worker's
 *        concurrency and prefetch), PUBLISH_BATCH (1000), KEYS (1000), DELAY_N (10000),
 *        LEAD_MS (1500), SPREAD_MS (1000), CASES (comma-separated subset of the case names)
 *
 * Prints JSON lines: one per case per run, then one per case with the medians (`stat: "median"`),
 * the ratios and the targets. The cases of one run are interleaved (their order rotates from run
 * to run), so that the noise of a shared machine falls on every case alike.
 */
import { randomBytes } from "node:crypto"
import type { SendOptions } from "../patterns/index.js"
import { forkModule, runBench, withTimeout } from "./lib/children.js"
import { loadLibrary } from "./lib/compiled.js"
import { removeDir, tempDir } from "./lib/temp-dirs.js"
import { openSink, rawOneWay, type Sink } from "./lib/raw-sink.js"
import { envInt, printLine } from "./lib/env.js"
import { median, medianOf, percentileSorted, round } from "./lib/stats.js"

const { Sender } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 10_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 2 : 5)
const WARMUP = envInt("WARMUP", QUICK ? 2000 : 5000)
const CONCURRENCY = envInt("CONCURRENCY", 64)
const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1000)
const KEYS = envInt("KEYS", 1000)
const DELAY_N = envInt("DELAY_N", 10_000)
const LEAD_MS = envInt("LEAD_MS", QUICK ? 1000 : 1500)
const SPREAD_MS = envInt("SPREAD_MS", 1000)
/** Comma-separated subset of the cases to run (default: all). */
const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
const WORKERS = 2
/** Distinct random payloads cycled through (random: nothing for LevelDB's compression to squeeze). */
const POOL = 1024
const BIND = "tcp://127.0.0.1:*"
const BENCH = "scheduling"

/** Targets from the issue: ratios to `plain`, and the p99 lateness of delayed messages. */
const VS_PLAIN_TARGETS: Partial<Record<string, number>> = { key: 0.8, priority: 0.9 }
const LATENESS_P99_TARGET_MS = 50

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
  lateMs: number[]
  /** Epoch ms of the first and last handler call; null (NaN over IPC) when none. */
  firstAt: number | null
  lastAt: number | null
}

function forkWorker(): WorkerChild {
  const child = forkModule(new URL("./scheduling-fixtures/worker.ts", import.meta.url), [
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

/** Connects every worker to `endpoint`; resolves once the sender answered each of them. */
async function connectWorkers(
  workers: WorkerChild[],
  endpoint: string,
  record: boolean,
): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      const connected = w.next("connected", 10_000)
      const ready = w.next("ready", 30_000)
      w.send({ type: "connect", endpoint, record })
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
/** The keys of the `key` case, used round robin. */
const KEY_NAMES = Array.from({ length: KEYS }, (_, i) => `key-${String(i)}`)
/** Mixed priorities 0–9 for the `priority` case: random, drawn once, cycled through. */
const PRIORITIES = Array.from({ length: POOL }, () => Math.floor(Math.random() * 10))

type Kind = "memory-plain" | "plain" | "key" | "priority"

/** The options of the i-th send of a case (built per send, as a caller would). */
function sendOptions(kind: Kind, i: number): SendOptions | undefined {
  switch (kind) {
    case "memory-plain":
    case "plain":
      return undefined
    case "key":
      return { key: KEY_NAMES[i % KEYS] as string }
    case "priority":
      return { priority: PRIORITIES[i % POOL] as number }
  }
}

// ---------------------------------------------------------------------------------------------
// cases

/** Process CPU time (user + system, every thread) per message, in µs. */
function cpuPerMsg(usage: NodeJS.CpuUsage, n: number): number {
  return round((usage.user + usage.system) / n, 2)
}

/** A sender in this process, WORKERS worker processes, n messages end to end. */
async function throughput(kind: Kind, n: number, workers: WorkerChild[]): Promise<Result> {
  const dir = kind === "memory-plain" ? undefined : await tempDir("scheduling")
  const sender = await Sender.open({ bind: BIND, ...(dir !== undefined ? { journal: dir } : {}) })
  let connected = false
  try {
    connected = true
    await connectWorkers(workers, sender.endpoint, false)
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
              ? sender.send(BODIES[i % POOL])
              : sender.send(BODIES[i % POOL], options),
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
    connected = false
    const closed = await closeWorkers(workers)
    return {
      case: kind,
      journal: dir !== undefined,
      n,
      size: SIZE,
      workers: workers.length,
      concurrency: CONCURRENCY,
      batch: PUBLISH_BATCH,
      ...(kind === "key" ? { keys: KEYS } : {}),
      ms: round(ms, 1),
      acceptedMs: round(accepted - start, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      cpuUsPerMsg: cpuPerMsg(senderCpu, n),
      workerCpuUsPerMsg: round(closed.reduce((a, c) => a + c.cpuUs, 0) / n, 2),
      // Acceptance → ack (the sender's histogram): mostly time queued behind earlier sends.
      p50us: Math.round(stats.latency.p50 * 1000),
      p99us: Math.round(stats.latency.p99 * 1000),
      redelivered: stats.redelivered,
    }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender.close()
    if (dir !== undefined) await removeDir(dir)
  }
}

/**
 * n delayed messages with the workers connected: the first due LEAD_MS after the first send, the
 * others at the same instant (spreadMs 0) or spread evenly over spreadMs. Each payload carries its
 * due time (float64 in its first 8 bytes) so that the worker can tell how late it runs.
 */
async function delayAccuracy(
  n: number,
  leadMs: number,
  spreadMs: number,
  workers: WorkerChild[],
): Promise<Result> {
  const dir = await tempDir("scheduling-delay")
  const sender = await Sender.open({ bind: BIND, journal: dir })
  let connected = false
  try {
    connected = true
    await connectWorkers(workers, sender.endpoint, true)
    const limit = Math.max(60_000, n)
    const first = Date.now() + leadMs
    const dueOf = (i: number): number => first + Math.floor((i * spreadMs) / n)
    const bodies = Array.from({ length: n }, (_, i) => {
      const body = Buffer.from(BODIES[i % POOL] as Buffer)
      body.writeDoubleBE(dueOf(i), 0)
      return body
    })
    const cpu = process.cpuUsage()
    const start = performance.now()
    for (let i = 0; i < n;) {
      const sends: Promise<string>[] = []
      for (const end = Math.min(n, i + PUBLISH_BATCH); i < end; i++)
        sends.push(sender.send(bodies[i], { notBefore: dueOf(i) }))
      await withTimeout(Promise.all(sends), limit, `delay: ${n} sends accepted`)
    }
    const sentMs = performance.now() - start
    // Time left before the first due time once every send resolved: ≤ 0 means the sends were
    // still running when messages fell due, and the case measures something else (raise LEAD_MS).
    const leadLeftMs = first - Date.now()
    const scheduled = sender.stats().scheduled
    await sender.drained({ signal: AbortSignal.timeout(limit + leadMs + spreadMs) })
    const drainedAt = Date.now()
    const senderCpu = process.cpuUsage(cpu)
    const stats = sender.stats()
    if (stats.acked !== n) throw new Error(`delay: ${stats.acked} of ${n} acked`)
    connected = false
    const closed = await closeWorkers(workers)
    const late = closed.flatMap((c) => c.lateMs).sort((a, b) => a - b)
    const handled = closed.reduce((a, c) => a + c.handled, 0)
    const lastAt = Math.max(...closed.map((c) => c.lastAt ?? Number.NaN).filter(Number.isFinite))
    const lastDue = dueOf(n - 1)
    return {
      case: spreadMs === 0 ? "delay-accuracy" : "delay-accuracy-spread",
      n,
      size: SIZE,
      workers: workers.length,
      concurrency: CONCURRENCY,
      leadMs,
      spreadMs,
      sentMs: round(sentMs, 1),
      leadLeftMs: round(leadLeftMs, 1),
      scheduledAfterSends: scheduled,
      handled,
      lateP50Ms: round(percentileSorted(late, 50), 2),
      lateP99Ms: round(percentileSorted(late, 99), 2),
      lateMaxMs: round(late[late.length - 1] ?? Number.NaN, 2),
      lateMinMs: round(late[0] ?? Number.NaN, 2),
      early: late.filter((l) => l < 0).length,
      // The last due time → the last handler call, and → drained() (its ack back at the sender).
      allHandledMs: round(lastAt - lastDue, 1),
      drainedMs: round(drainedAt - lastDue, 1),
      // All due at once: they can only go as fast as the sender dispatches (first due → last handled).
      ...(spreadMs === 0 ? { releasedPerSec: Math.round((n * 1000) / (lastAt - first)) } : {}),
      cpuUsPerMsg: cpuPerMsg(senderCpu, n),
      redelivered: stats.redelivered,
    }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender.close()
    await removeDir(dir)
  }
}

/** The raw zeromq.js baseline (bench/lib/raw-sink.ts) as a result line. */
async function rawCase(sink: Sink, n: number): Promise<Result> {
  return { case: "raw-oneway", size: SIZE, ...(await rawOneWay(sink, n, BODIES, "raw-oneway")) }
}

// ---------------------------------------------------------------------------------------------
// summary

/** The ratio of the medians of `key` in `mine` and `theirs`, and the median of the per-run ratios. */
function compare(
  mine: Result[],
  theirs: Result[] | undefined,
  key: string,
): { ratio: number; perRun: number } | undefined {
  if (theirs === undefined || theirs.length === 0) return undefined
  const values = (rs: Result[]): number[] =>
    rs.map((r) => r[key]).filter((v): v is number => typeof v === "number")
  const ratio = median(values(mine)) / median(values(theirs))
  const perRun: number[] = []
  for (const r of mine) {
    const b = theirs.find((x) => x["run"] === r["run"])?.[key]
    const v = r[key]
    if (typeof b === "number" && typeof v === "number" && b > 0) perRun.push(v / b)
  }
  return { ratio: round(ratio, 3), perRun: round(median(perRun), 3) }
}

function summarize(results: Map<string, Result[]>): void {
  for (const [name, rs] of results) {
    const line: Record<string, unknown> = {
      bench: BENCH,
      case: name,
      stat: "median",
      runs: rs.length,
    }
    if (name.startsWith("delay-accuracy")) {
      const p99 = median(rs.map((r) => r["lateP99Ms"] as number))
      Object.assign(line, {
        n: DELAY_N,
        size: SIZE,
        leadMs: LEAD_MS,
        spreadMs: rs[0]?.["spreadMs"],
        ...medianOf(rs, [
          "lateP50Ms",
          "lateP99Ms",
          "lateMaxMs",
          "lateMinMs",
          "allHandledMs",
          "drainedMs",
          "sentMs",
          "leadLeftMs",
          "releasedPerSec",
          "cpuUsPerMsg",
        ]),
        lateP99MsWorst: Math.max(...rs.map((r) => r["lateP99Ms"] as number)),
        early: Math.max(...rs.map((r) => r["early"] as number)),
        // The run.ts table's latency columns: lateness, in µs.
        p50us: Math.round(median(rs.map((r) => r["lateP50Ms"] as number)) * 1000),
        p99us: Math.round(p99 * 1000),
        target: `lateness p99 <= ${LATENESS_P99_TARGET_MS} ms`,
        meetsTarget: p99 <= LATENESS_P99_TARGET_MS,
      })
    } else {
      const rates = rs.map((r) => r["msgsPerSec"] as number)
      Object.assign(line, {
        n: N,
        size: SIZE,
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
      })
      const raw = compare(rs, results.get("raw-oneway"), "msgsPerSec")
      const plain = compare(rs, results.get("plain"), "msgsPerSec")
      const plainCpu = compare(rs, results.get("plain"), "cpuUsPerMsg")
      const target = VS_PLAIN_TARGETS[name]
      if (name !== "raw-oneway" && raw !== undefined)
        Object.assign(line, { vsRaw: raw.ratio, vsRawPerRun: raw.perRun })
      if (target !== undefined && plain !== undefined) {
        Object.assign(line, {
          vsPlain: plain.ratio,
          vsPlainPerRun: plain.perRun,
          ...(plainCpu !== undefined ? { cpuVsPlain: plainCpu.ratio } : {}),
          // For the run.ts table.
          baseline: "plain",
          ratio: plain.ratio,
          runRatioMedian: plain.perRun,
          target,
          meetsTarget: plain.ratio >= target,
        })
      } else if (name === "plain" || name === "memory-plain") {
        if (raw !== undefined)
          Object.assign(line, {
            baseline: "raw-oneway",
            ratio: raw.ratio,
            runRatioMedian: raw.perRun,
          })
        if (name === "plain")
          // Checked against a run before issue 13 (bench/journal.ts os-batched is the same shape).
          line["target"] = "within 3 % of the same case before issue 13"
      }
    }
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
      workers: WORKERS,
      concurrency: CONCURRENCY,
      publishBatch: PUBLISH_BATCH,
      keys: KEYS,
      delayN: DELAY_N,
      leadMs: LEAD_MS,
      spreadMs: SPREAD_MS,
    },
    quick: QUICK,
    cases: CASES ?? "all",
    node: process.version,
  })
  const wanted = (name: string): boolean => CASES === undefined || CASES.includes(name)
  const workers = Array.from({ length: WORKERS }, () => forkWorker())
  const sink = wanted("raw-oneway") ? await openSink() : undefined
  await Promise.all(workers.map((w) => w.next("started", 30_000)))

  const cases: { name: string; run: (warmup: boolean) => Promise<Result> }[] = [
    ...(sink ? [{ name: "raw-oneway", run: (w: boolean) => rawCase(sink, w ? WARMUP : N) }] : []),
    ...(["memory-plain", "plain", "key", "priority"] as const).map((kind) => ({
      name: kind,
      run: (w: boolean) => throughput(kind, w ? WARMUP : N, workers),
    })),
    {
      name: "delay-accuracy",
      run: (w: boolean) =>
        delayAccuracy(w ? Math.min(WARMUP, DELAY_N) : DELAY_N, LEAD_MS, 0, workers),
    },
    {
      name: "delay-accuracy-spread",
      run: (w: boolean) =>
        delayAccuracy(w ? Math.min(WARMUP, DELAY_N) : DELAY_N, LEAD_MS, SPREAD_MS, workers),
    },
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

await runBench(main, 30 * 60_000)
