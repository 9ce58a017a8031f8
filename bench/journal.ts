/**
 * What does durability cost? Work-queue throughput of a `Sender` with 2 worker processes, end to
 * end (first `send()` to the last ack, `await sender.drained()`), at each durability level:
 * `memory` (no journal), `os` and `fsync` (a `LevelJournal` in a fresh temp dir per run), against
 * the ceiling LevelDB itself sets: raw `level` batch puts of the same values, measured in the same
 * run (`level-raw-os`: sync false, `level-raw-fsync`: sync true, both through a chained batch;
 * `level-raw-os-array`: the array form `db.batch(ops, { sync })`, for comparison).
 *
 * `<durability>-batched`: the same in the peers' producer shape, the default codec (msgpack) and
 * PUBLISH_BATCH sends awaited together (`vsMemory`, `cpuVsMemory` against `memory-batched`).
 *
 * Store and forward, at each durability level with a `LevelJournal` (`memory`, `os`, `fsync`) and
 * each codec (the default, msgpack, and "raw"): publish-only (no worker: N sends, PUBLISH_BATCH at a
 * time, each batch awaited), then drain (that sender closed, a new one opened on its journal, 2
 * worker processes connect; `Sender.open()` → `drained()`). And offline-1m: a sender process
 * sends OFFLINE_N messages with no worker (default codec and durability), reporting its peak RSS,
 * then a fresh sender process drains them to the 2 workers.
 *
 *   npx tsx bench/journal.ts                 (docs/bench-journal.md explains every field)
 *   env: N (50000 messages), SIZE (256 bytes), RUNS (5), BATCH (1000, raw level batch size),
 *        CONCURRENCY (64: each worker's concurrency and prefetch), WARMUP (5000),
 *        BENCH_QUICK=1 (N 10000, RUNS 3, WARMUP 2000, no restart case: well under 30 s),
 *        BIG (1 runs the restart case, 0 skips it; on by default), BIG_N (1000000 pending),
 *        BIG_DELIVER (20000), BIG_RUNS (3), PUBLISH_BATCH (1000: sends awaited together in
 *        publish-only and offline-1m), OFFLINE (1 runs offline-1m, 0 skips it; on by default,
 *        off in quick mode), OFFLINE_N (1000000), OFFLINE_RUNS (RUNS), WINDOW (the senders'
 *        `window`; default: the library's), CASES (comma-separated subset, e.g. "os,fsync",
 *        "publish-drain" (all six publish-drain-<durability>[-raw] cases), "publish-drain-os",
 *        "restart-1m" or "offline-1m"), CPU_PROF_DIR (the child processes write `--cpu-prof`
 *        profiles there)
 *
 * The restart case builds a journal of BIG_N pending SIZE-byte messages once, then per run, on a
 * fresh copy of it: a worker process waits on a free loopback port, a fresh sender process opens
 * the journal and binds that port, and the bench measures `Sender.open()`, the time until the
 * worker gets the first message and until it has handled BIG_DELIVER, and the sender's peak RSS.
 *
 * Prints JSON lines: one per case per run, then one per case with the medians (`stat: "median"`),
 * the ratio to its LevelDB ceiling and its target (offline-1m: peak RSS < 200 MB). Cases of one run are interleaved, so that the
 * noise of a shared machine falls on every case alike.
 */
import { randomBytes } from "node:crypto"
import { cp } from "node:fs/promises"
import { createServer } from "node:net"
import { join } from "node:path"
import { Level } from "level"
import type { Durability, Sender as SenderType } from "../patterns/index.js"
import { forkModule, killAll, withTimeout } from "./lib/children.js"
import { loadLibrary } from "./lib/compiled.js"
import { removeDir, tempDir } from "./lib/temp-dirs.js"
import { envInt, printLine } from "./lib/env.js"
import { median, medianOf, round } from "./lib/stats.js"

const { Sender } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 10_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 3 : 5)
const BATCH = envInt("BATCH", 1000)
const CONCURRENCY = envInt("CONCURRENCY", 64)
const WARMUP = envInt("WARMUP", QUICK ? 2000 : 5000)
const BIG = process.env["BIG"] === undefined ? !QUICK : process.env["BIG"] === "1"
const BIG_N = envInt("BIG_N", 1_000_000)
const BIG_DELIVER = envInt("BIG_DELIVER", 20_000)
const BIG_RUNS = envInt("BIG_RUNS", 3)
const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1000)
const OFFLINE = process.env["OFFLINE"] === undefined ? !QUICK : process.env["OFFLINE"] === "1"
const OFFLINE_N = envInt("OFFLINE_N", 1_000_000)
const OFFLINE_RUNS = envInt("OFFLINE_RUNS", RUNS)
const WINDOW = process.env["WINDOW"] ? envInt("WINDOW", 1) : undefined
/** Comma-separated subset of the cases to run (default: all). */
const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
/** When set, the child processes write V8 CPU profiles there (`--cpu-prof`). */
const CPU_PROF_DIR = process.env["CPU_PROF_DIR"]
const WORKERS = 2
/** Distinct random payloads cycled through (see `payloads()`). */
const POOL = 1024

/** Targets from the issue (msgs/s end to end; restart: ms and MB). */
const TARGETS: Partial<Record<string, number>> = { os: 40_000, fsync: 30_000 }
const BIG_TARGETS = { firstMessageMs: 1000, peakRssMb: 200 }
const OFFLINE_TARGETS = { maxRssMb: 200 }
/** Which raw LevelDB rate bounds each case (publish-only: with either codec). */
const CEILING: Record<string, string> = {
  memory: "level-raw-os",
  os: "level-raw-os",
  fsync: "level-raw-fsync",
  "publish-only-memory": "level-raw-os",
  "publish-only-os": "level-raw-os",
  "publish-only-fsync": "level-raw-fsync",
}
type CodecName = "msgpack" | "raw"

const BIND = "tcp://127.0.0.1:*"
const BENCH = "journal"

interface Result {
  case: string
  msgsPerSec: number
  [key: string]: unknown
}

// ---------------------------------------------------------------------------------------------
// child processes (bench/lib/children.ts: every one tracked, killed at the end, on error and on
// Ctrl-C) and temporary directories

interface Child {
  readonly pid: number
  /** The next IPC message of `type` (buffered ones first); rejects after `ms` or on exit. */
  next<T extends { type: string }>(type: string, ms: number): Promise<T>
  send(message: object): void
  /** Lets the fixture exit by itself (writing its CPU profile), SIGKILL if it does not. */
  kill(): Promise<void>
}

/** Temp directories not removed yet: the exit hook removes them on an early exit. */
// CPU_PROF_DIR: the fixtures write V8 CPU profiles there.
if (CPU_PROF_DIR !== undefined)
  process.env["BENCH_CHILD_NODE_ARGS"] = `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}`

/** Forks `bench/journal-fixtures/<file>`, compiled to JavaScript as users run it (./lib/compiled.ts). */
function forkFixture(file: string, args: string[]): Child {
  const child = forkModule(new URL(`./journal-fixtures/${file}`, import.meta.url), args)
  child.process.on("message", (m: { type: string; message?: string }) => {
    if (m.type === "error") console.error(`${file} (${String(child.pid)}): ${m.message ?? "?"}`)
  })
  return {
    pid: child.pid,
    next: <T extends { type: string }>(type: string, ms: number) =>
      child.next<T>((m: T) => m.type === type, ms, `"${type}" from ${file}`),
    send: (message) => child.send(message),
    kill: () => child.end(),
  }
}

// ---------------------------------------------------------------------------------------------
// cases

/**
 * Raw LevelDB: `n` puts of SIZE-byte values under journal-like keys, in batches of BATCH, through
 * a chained batch (`db.batch().put(…).write({ sync })`, the fastest way through `level`), or with
 * `api: "array"` through `db.batch(ops, { sync })`, the form `LevelJournal` uses today.
 */
async function levelRaw(sync: boolean, api: "chained" | "array", n: number): Promise<Result> {
  const dir = await tempDir("level")
  const db = new Level<string, Buffer>(dir, { keyEncoding: "utf8", valueEncoding: "buffer" })
  try {
    await db.open()
    const values = payloads(SIZE)
    const base = Date.now() * 1000
    const key = (i: number): string => `p:${(base + i).toString(16).padStart(16, "0")}`
    const cpu = process.cpuUsage()
    const start = performance.now()
    for (let done = 0; done < n;) {
      const end = Math.min(n, done + BATCH)
      if (api === "chained") {
        const batch = db.batch()
        for (; done < end; done++) batch.put(key(done), values[done % POOL] as Buffer)
        await batch.write({ sync })
      } else {
        const ops: { type: "put"; key: string; value: Buffer }[] = []
        for (; done < end; done++)
          ops.push({ type: "put", key: key(done), value: values[done % POOL] as Buffer })
        await db.batch(ops, { sync })
      }
    }
    const ms = performance.now() - start
    return {
      case: `level-raw-${sync ? "fsync" : "os"}${api === "array" ? "-array" : ""}`,
      n,
      size: SIZE,
      batch: BATCH,
      api,
      sync,
      ms: round(ms, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      cpuUsPerMsg: cpuPerMsg(process.cpuUsage(cpu), n),
    }
  } finally {
    await db.close()
    await removeDir(dir)
  }
}

/** A sender in this process, WORKERS worker processes, n messages end to end. */
async function endToEnd(
  durability: Durability,
  n: number,
  workers: Child[],
  shape: "all" | "batched" = "all",
): Promise<Result> {
  const dir = durability === "memory" ? undefined : await tempDir("journal")
  // The batched shape is the peers' harness's: the default codec, PUBLISH_BATCH sends awaited together.
  const codec: CodecName = shape === "batched" ? "msgpack" : "raw"
  const sender = await Sender.open({
    bind: BIND,
    codec,
    durability,
    ...(dir !== undefined ? { journal: dir } : {}),
  })
  let connected = false
  try {
    connected = true
    await connectWorkers(workers, sender.endpoint, codec)
    const bodies = payloads(SIZE)
    // One deadline for the whole run. It is not passed to each send(): every waiting send() adds
    // an abort listener to it, and AbortSignal's EventTarget makes that quadratic (see the docs).
    const limit = Math.max(60_000, n)
    const cpu = process.cpuUsage()
    const start = performance.now()
    const sending = async (): Promise<void> => {
      const step = shape === "batched" ? PUBLISH_BATCH : n
      for (let i = 0; i < n;) {
        const sends: Promise<string>[] = []
        for (const end = Math.min(n, i + step); i < end; i++)
          sends.push(sender.send(bodies[i % POOL]))
        await Promise.all(sends)
      }
    }
    await withTimeout(sending(), limit, `${durability}: ${n} sends accepted`)
    const accepted = performance.now()
    await sender.drained({ signal: AbortSignal.timeout(limit) })
    const ms = performance.now() - start
    const senderCpu = process.cpuUsage(cpu)
    const stats = sender.stats()
    if (stats.acked !== n) throw new Error(`${durability}: ${stats.acked} of ${n} acked`)
    connected = false
    const workerCpuUs = await closeWorkers(workers)
    return {
      case: shape === "batched" ? `${durability}-batched` : durability,
      phase: "end-to-end",
      codec,
      n,
      size: SIZE,
      workers: workers.length,
      concurrency: CONCURRENCY,
      sync: durability === "fsync",
      ms: round(ms, 1),
      acceptedMs: round(accepted - start, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      cpuUsPerMsg: cpuPerMsg(senderCpu, n),
      workerCpuUsPerMsg: round(workerCpuUs / n, 2),
      // Acceptance to ack, per message (the sender's histogram): mostly time spent queued in the
      // window behind the messages sent before it, as every send() is issued at once.
      p50us: Math.round(stats.latency.p50 * 1000),
      p99us: Math.round(stats.latency.p99 * 1000),
      redelivered: stats.redelivered,
    }
  } finally {
    if (connected) await closeWorkers(workers)
    await sender.close()
    if (dir !== undefined) await removeDir(dir)
  }
}

/** The options of every sender of the store-and-forward cases. */
function storeOptions(
  durability: Durability,
  codec: CodecName,
  dir: string,
): Parameters<typeof Sender.open>[0] {
  return {
    bind: BIND,
    codec,
    durability,
    journal: dir,
    ...(WINDOW !== undefined ? { window: WINDOW } : {}),
  }
}

/** Connects every worker to `endpoint`; resolves once the sender answered each of them. */
async function connectWorkers(workers: Child[], endpoint: string, codec: CodecName): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      // Both answers are taken, so that none is left over for a later wait.
      const connected = w.next("connected", 10_000)
      const ready = w.next("ready", 30_000)
      w.send({ type: "connect", endpoint, codec })
      await Promise.all([connected, ready])
    }),
  )
}

/** Closes every worker (GOODBYE, acks flushed); resolves with their CPU time since the connect. */
async function closeWorkers(workers: Child[]): Promise<number> {
  const closed = await Promise.all(
    workers.map(async (w) => {
      const reply = w.next<{ type: "closed"; cpuUs: number }>("closed", 15_000)
      w.send({ type: "close" })
      return (await reply).cpuUs
    }),
  )
  return closed.reduce((a, b) => a + b, 0)
}

/**
 * Store and forward: publish-only (a sender in this process with a LevelJournal and no worker,
 * `n` sends PUBLISH_BATCH at a time, each batch awaited; then the sender is closed), then drain
 * (a new sender on that journal, WORKERS worker processes connect; `Sender.open()` → `drained()`).
 */
async function publishAndDrain(
  durability: Durability,
  codec: CodecName,
  n: number,
  workers: Child[],
): Promise<Result[]> {
  const dir = await tempDir("store")
  const options = storeOptions(durability, codec, dir)
  const suffix = `${durability}${codec === "raw" ? "-raw" : ""}`
  const common = { durability, codec, n, size: SIZE, sync: durability === "fsync" }
  const limit = Math.max(60_000, n)
  let sender: SenderType | undefined = await Sender.open(options)
  let connected = false
  try {
    const bodies = payloads(SIZE)
    const deadline = performance.now() + limit
    let cpu = process.cpuUsage()
    const start = performance.now()
    for (let i = 0; i < n;) {
      const sends: Promise<string>[] = []
      for (const end = Math.min(n, i + PUBLISH_BATCH); i < end; i++)
        sends.push(sender.send(bodies[i % POOL]))
      await Promise.all(sends)
      if (performance.now() > deadline)
        throw new Error(`publish-only-${suffix}: ${i} of ${n} sends within ${limit} ms`)
    }
    const ms = performance.now() - start
    const publishCpu = process.cpuUsage(cpu)
    const { backlog } = sender.stats()
    const closing = performance.now()
    const s = sender
    sender = undefined
    await s.close()
    const closeMs = performance.now() - closing
    const published: Result = {
      case: `publish-only-${suffix}`,
      phase: "publish-only",
      ...common,
      batch: PUBLISH_BATCH,
      ms: round(ms, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      // Messages on disk only when the last send resolved (store and forward).
      backlog,
      closeMs: round(closeMs, 1),
      cpuUsPerMsg: cpuPerMsg(publishCpu, n),
    }

    cpu = process.cpuUsage()
    const t0 = performance.now()
    sender = await Sender.open(options)
    const openMs = performance.now() - t0
    const d = sender
    connected = true
    const ready = connectWorkers(workers, d.endpoint, codec)
    ready.catch(() => undefined) // awaited below
    await d.drained({ signal: AbortSignal.timeout(limit) })
    const drainMs = performance.now() - t0
    const drainCpu = process.cpuUsage(cpu)
    await ready
    const { acked } = d.stats()
    if (acked !== n) throw new Error(`drain-${suffix}: ${acked} of ${n} acked`)
    connected = false
    const workerCpuUs = await closeWorkers(workers)
    return [
      published,
      {
        case: `drain-${suffix}`,
        phase: "drain",
        ...common,
        workers: workers.length,
        concurrency: CONCURRENCY,
        ms: round(drainMs, 1),
        openMs: round(openMs, 1),
        msgsPerSec: Math.round((n * 1000) / drainMs),
        cpuUsPerMsg: cpuPerMsg(drainCpu, n),
        workerCpuUsPerMsg: round(workerCpuUs / n, 2),
      },
    ]
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender?.close()
    await removeDir(dir)
  }
}

interface OfflineMemory {
  rssBeforeMb: number
  peakRssMb: number
  maxRssMb: number
  peakAnonMb: number
  samples: number
}

/**
 * offline-1m: a sender process (default codec and durability) sends OFFLINE_N messages with no
 * worker, PUBLISH_BATCH at a time, and closes; then a fresh sender process opens the journal,
 * bound to a port where the WORKERS workers already wait, and runs until drained. Each sender
 * process reports its peak RSS.
 */
async function offline(run: number, workers: Child[]): Promise<Result[]> {
  const dir = await tempDir("offline")
  const settings = { ...(WINDOW !== undefined ? { window: WINDOW } : {}) }
  let sender: Child | undefined
  let connected = false
  try {
    sender = forkFixture("offline-sender.ts", [
      dir,
      JSON.stringify({
        mode: "publish",
        n: OFFLINE_N,
        size: SIZE,
        batch: PUBLISH_BATCH,
        ...settings,
      }),
    ])
    const pub = await sender.next<
      OfflineMemory & {
        type: "published"
        ms: number
        closeMs: number
        backlog: number
        cpuUs: number
      }
    >("published", 660_000)
    await sender.kill()
    sender = undefined

    const endpoint = `tcp://127.0.0.1:${await freePort()}`
    connected = true
    await Promise.all(
      workers.map(async (w) => {
        const waiting = w.next("connected", 10_000)
        w.send({ type: "connect", endpoint, codec: "msgpack" })
        await waiting
      }),
    )
    sender = forkFixture("offline-sender.ts", [
      dir,
      JSON.stringify({ mode: "drain", endpoint, ...settings }),
    ])
    const drained = await sender.next<
      OfflineMemory & { type: "drained"; openMs: number; ms: number; acked: number; cpuUs: number }
    >("drained", 660_000)
    // Every worker said "ready" once the sender answered it: take those messages.
    await Promise.all(workers.map((w) => w.next("ready", 10_000)))
    if (drained.acked !== OFFLINE_N)
      throw new Error(`offline-1m drain: ${drained.acked} of ${OFFLINE_N} acked`)
    connected = false
    const workerCpuUs = await closeWorkers(workers)
    const memory = (m: OfflineMemory): Record<string, number> => ({
      rssBeforeMb: m.rssBeforeMb,
      peakRssMb: m.peakRssMb,
      maxRssMb: m.maxRssMb,
      peakAnonMb: m.peakAnonMb,
      rssSamples: m.samples,
    })
    const common = { run, n: OFFLINE_N, size: SIZE, codec: "msgpack", durability: "os" }
    return [
      {
        case: "offline-1m-publish",
        phase: "publish-only",
        ...common,
        batch: PUBLISH_BATCH,
        ms: round(pub.ms, 1),
        msgsPerSec: Math.round((OFFLINE_N * 1000) / pub.ms),
        backlog: pub.backlog,
        closeMs: round(pub.closeMs, 1),
        cpuUsPerMsg: round(pub.cpuUs / OFFLINE_N, 2),
        ...memory(pub),
      },
      {
        case: "offline-1m-drain",
        phase: "drain",
        ...common,
        workers: workers.length,
        concurrency: CONCURRENCY,
        ms: round(drained.ms, 1),
        openMs: round(drained.openMs, 1),
        msgsPerSec: Math.round((OFFLINE_N * 1000) / drained.ms),
        cpuUsPerMsg: round(drained.cpuUs / OFFLINE_N, 2),
        workerCpuUsPerMsg: round(workerCpuUs / OFFLINE_N, 2),
        ...memory(drained),
      },
    ]
  } finally {
    await sender?.kill()
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await removeDir(dir)
  }
}

interface RestartReport {
  type: "result"
  rssBeforeMb: number
  peakRssMb: number
  maxRssMb: number
  peakAnonMb: number
  samples: number
  backlog: number
  now: Record<string, number>
}

/**
 * Time to first redelivery and peak RSS after a restart with BIG_N pending messages: a fresh
 * sender process opens a copy of the built journal while a worker already waits on its port.
 */
async function restart(source: string, run: number, worker: Child): Promise<Result> {
  const dir = await tempDir("restart")
  let sender: Child | undefined
  try {
    await cp(source, dir, { recursive: true })
    const endpoint = `tcp://127.0.0.1:${await freePort()}`
    const first = worker.next<{ type: "first"; at: number }>("first", 60_000)
    const counted = worker.next<{ type: "counted"; at: number }>("counted", 120_000)
    // Awaited below; handled now so that an early failure leaves no unhandled rejection behind.
    first.catch(() => undefined)
    counted.catch(() => undefined)
    const connected = worker.next("connected", 10_000)
    worker.send({ type: "connect", endpoint, count: BIG_DELIVER })
    await connected
    sender = forkFixture("restart-sender.ts", [dir, endpoint])
    const opened = await sender.next<{ type: "opened"; t0: number; openMs: number }>(
      "opened",
      60_000,
    )
    const firstMs = (await first).at - opened.t0
    const deliveredMs = (await counted).at - opened.t0
    const reported = sender.next<RestartReport>("result", 10_000)
    sender.send({ type: "report" })
    const report = await reported
    return {
      case: "restart-1m",
      run,
      pending: BIG_N,
      size: SIZE,
      delivered: BIG_DELIVER,
      openMs: round(opened.openMs, 1),
      firstMessageMs: round(firstMs, 1),
      deliveredMs: round(deliveredMs, 1),
      msgsPerSec: Math.round((BIG_DELIVER * 1000) / deliveredMs),
      rssBeforeOpenMb: report.rssBeforeMb,
      peakRssMb: report.peakRssMb,
      maxRssMb: report.maxRssMb,
      peakAnonMb: report.peakAnonMb,
      rssSamples: report.samples,
      backlogAfter: report.backlog,
      memoryAfter: report.now,
    }
  } finally {
    await sender?.kill()
    const closed = worker.next("closed", 15_000)
    worker.send({ type: "close" })
    await closed.catch(() => undefined)
    await removeDir(dir)
  }
}

async function buildJournal(): Promise<{ dir: string; root: string }> {
  const root = await tempDir("big")
  const dir = join(root, "journal")
  const builder = forkFixture("build-journal.ts", [dir, String(BIG_N), String(SIZE)])
  try {
    const built = await builder.next<{ type: "built"; ms: number; pending: number }>(
      "built",
      600_000,
    )
    if (built.pending !== BIG_N) throw new Error(`built ${built.pending} of ${BIG_N}`)
    printLine({
      bench: BENCH,
      case: "restart-1m-build",
      pending: BIG_N,
      size: SIZE,
      ms: round(built.ms),
    })
  } finally {
    await builder.kill()
  }
  return { dir, root }
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
      batch: BATCH,
      workers: WORKERS,
      concurrency: CONCURRENCY,
    },
    warmup: WARMUP,
    cases: CASES ?? "all",
    big:
      BIG && (CASES === undefined || CASES.includes("restart-1m"))
        ? { pending: BIG_N, deliver: BIG_DELIVER, runs: BIG_RUNS }
        : false,
    offline:
      OFFLINE && (CASES === undefined || CASES.includes("offline-1m"))
        ? { n: OFFLINE_N, runs: OFFLINE_RUNS }
        : false,
    publishBatch: PUBLISH_BATCH,
    ...(WINDOW !== undefined ? { window: WINDOW } : {}),
    node: process.version,
  })
  const workers = Array.from({ length: WORKERS }, () =>
    forkFixture("worker.ts", [JSON.stringify({ concurrency: CONCURRENCY, prefetch: CONCURRENCY })]),
  )
  await Promise.all(workers.map((w) => w.next("started", 30_000)))

  const cases: { name: string; run: (n: number) => Promise<Result | Result[]> }[] = [
    { name: "level-raw-os", run: (n) => levelRaw(false, "chained", n) },
    { name: "level-raw-fsync", run: (n) => levelRaw(true, "chained", n) },
    { name: "level-raw-os-array", run: (n) => levelRaw(false, "array", n) },
    { name: "memory", run: (n) => endToEnd("memory", n, workers) },
    { name: "os", run: (n) => endToEnd("os", n, workers) },
    { name: "fsync", run: (n) => endToEnd("fsync", n, workers) },
    ...(["memory", "os", "fsync"] as const).map((d) => ({
      name: `${d}-batched`,
      run: (n: number) => endToEnd(d, n, workers, "batched"),
    })),
    // Store and forward: each case prints publish-only-<durability>[-raw] and drain-<…>.
    ...(["memory", "os", "fsync"] as const).flatMap((d) =>
      (["msgpack", "raw"] as const).map((codec) => ({
        name: `publish-drain-${d}${codec === "raw" ? "-raw" : ""}`,
        run: (n: number) => publishAndDrain(d, codec, n, workers),
      })),
    ),
  ]
  const selected = cases.filter(
    (c) =>
      CASES === undefined ||
      CASES.includes(c.name) ||
      (CASES.includes("publish-drain") && c.name.startsWith("publish-drain-")),
  )
  for (const c of selected) await c.run(WARMUP)

  // By the case names of the results (a publish-drain case gives two).
  const results = new Map<string, Result[]>()
  for (let run = 1; run <= RUNS; run++) {
    for (const c of selected) {
      const out = await c.run(N)
      for (const r of Array.isArray(out) ? out : [out]) {
        results.set(r.case, [...(results.get(r.case) ?? []), r])
        printLine({ bench: BENCH, ...r, run })
      }
    }
  }
  const medians = new Map<string, number>()
  for (const [name, rs] of results) {
    const rate = median(rs.map((r) => r.msgsPerSec))
    medians.set(name, rate)
    const ceiling = CEILING[name.replace(/-raw$/, "")]
    const ceilingRate = ceiling !== undefined ? medians.get(ceiling) : undefined
    const target = TARGETS[name]
    const memoryRate = medians.get("memory")
    const first = rs[0]
    printLine({
      bench: BENCH,
      case: name,
      stat: "median",
      ...(first?.["phase"] !== undefined
        ? { phase: first["phase"], durability: first["durability"], codec: first["codec"] }
        : {}),
      runs: rs.length,
      n: N,
      size: SIZE,
      msgsPerSec: Math.round(rate),
      min: Math.min(...rs.map((r) => r.msgsPerSec)),
      max: Math.max(...rs.map((r) => r.msgsPerSec)),
      ...medianOf(rs, [
        "cpuUsPerMsg",
        "workerCpuUsPerMsg",
        "p50us",
        "p99us",
        "backlog",
        "closeMs",
        "openMs",
      ]),
      ...(ceiling !== undefined && ceilingRate !== undefined
        ? { ceiling, vsCeiling: round(rate / ceilingRate, 3) }
        : {}),
      ...((name === "os" || name === "fsync") && memoryRate !== undefined
        ? { vsMemory: round(rate / memoryRate, 3) }
        : {}),
      ...(/^(os|fsync)-batched$/.test(name) && medians.get("memory-batched") !== undefined
        ? {
            vsMemory: round(rate / (medians.get("memory-batched") as number), 3),
            cpuVsMemory: round(
              median(rs.map((r) => r["cpuUsPerMsg"] as number)) /
                median(
                  (results.get("memory-batched") ?? []).map((r) => r["cpuUsPerMsg"] as number),
                ),
              3,
            ),
          }
        : {}),
      ...(target !== undefined ? { target, meetsTarget: rate >= target } : {}),
    })
  }

  if (BIG && (CASES === undefined || CASES.includes("restart-1m"))) {
    const bigStart = performance.now()
    const { dir, root } = await buildJournal()
    try {
      const rs: Result[] = []
      for (let run = 1; run <= BIG_RUNS; run++) {
        const r = await restart(dir, run, workers[0] as Child)
        rs.push(r)
        printLine({ bench: BENCH, ...r })
      }
      const m = (key: string): number => median(rs.map((r) => r[key] as number))
      printLine({
        bench: BENCH,
        case: "restart-1m",
        stat: "median",
        runs: rs.length,
        pending: BIG_N,
        openMs: round(m("openMs"), 1),
        firstMessageMs: round(m("firstMessageMs"), 1),
        deliveredMs: round(m("deliveredMs"), 1),
        msgsPerSec: Math.round(m("msgsPerSec")),
        rssBeforeOpenMb: round(m("rssBeforeOpenMb"), 1),
        peakRssMb: round(m("peakRssMb"), 1),
        maxRssMb: round(m("maxRssMb"), 1),
        peakAnonMb: round(m("peakAnonMb"), 1),
        targets: BIG_TARGETS,
        meetsTargets:
          m("firstMessageMs") < BIG_TARGETS.firstMessageMs && m("maxRssMb") < BIG_TARGETS.peakRssMb,
        // The whole restart case, build included (it is on by default only while this stays
        // well under a minute).
        caseMs: Math.round(performance.now() - bigStart),
      })
    } finally {
      await removeDir(root)
    }
  }

  if (OFFLINE && (CASES === undefined || CASES.includes("offline-1m"))) {
    const rs = new Map<string, Result[]>()
    for (let run = 1; run <= OFFLINE_RUNS; run++) {
      for (const r of await offline(run, workers)) {
        rs.set(r.case, [...(rs.get(r.case) ?? []), r])
        printLine({ bench: BENCH, ...r })
      }
    }
    for (const [name, list] of rs) {
      const m = (key: string): number => median(list.map((r) => r[key] as number))
      const worst = Math.max(...list.map((r) => r["maxRssMb"] as number))
      const publish = name === "offline-1m-publish"
      printLine({
        bench: BENCH,
        case: name,
        stat: "median",
        phase: list[0]?.["phase"],
        runs: list.length,
        n: OFFLINE_N,
        size: SIZE,
        msgsPerSec: Math.round(m("msgsPerSec")),
        min: Math.min(...list.map((r) => r.msgsPerSec)),
        max: Math.max(...list.map((r) => r.msgsPerSec)),
        ms: round(m("ms"), 1),
        ...medianOf(list, [
          "backlog",
          "closeMs",
          "openMs",
          "cpuUsPerMsg",
          "workerCpuUsPerMsg",
          "rssBeforeMb",
          "peakRssMb",
          "peakAnonMb",
          "maxRssMb",
        ]),
        // The kernel's peak RSS of the sender process, the highest of the runs.
        maxRssMbWorst: worst,
        ...(publish
          ? { targets: OFFLINE_TARGETS, meetsTargets: worst < OFFLINE_TARGETS.maxRssMb }
          : {}),
      })
    }
  }
  await Promise.all(workers.map((w) => w.kill()))
}

// ---------------------------------------------------------------------------------------------
// helpers

/**
 * POOL random payloads: random, so that LevelDB's Snappy compression finds nothing to squeeze
 * (a repeated or patterned payload would shrink its tables several times), and many, so that
 * no 4 KiB table block holds two copies of one.
 */
function payloads(size: number): Buffer[] {
  return Array.from({ length: POOL }, () => randomBytes(size))
}

/** A free loopback port, from the OS's ephemeral range (released again before use). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === "string") throw new Error("no port")
  return address.port
}

/** Process CPU time (user + system, every thread) per message, in µs. */
function cpuPerMsg(usage: NodeJS.CpuUsage, n: number): number {
  return round((usage.user + usage.system) / n, 2)
}

try {
  await main()
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
  process.exitCode = 1
} finally {
  await killAll()
}
