/**
 * Large messages at the speed of the wire and the disk: throughput of a `Sender` by payload size,
 * against what the socket and the file system manage with the same bytes.
 *
 * Per payload size (256 B, 4 KiB, 64 KiB, 1 MiB, 8 MiB) and per run, interleaved:
 *   raw-oneway        raw zeromq.js: a DEALER in this process sends to a ROUTER in a child process
 *                     (bench/fixtures/raw-sink.ts) that counts; first send → the child's count
 *   file-write-os     one `writeSync` per message, appended to a file in a fresh temp dir
 *   file-write-fsync  the same with `fdatasync` after every group of max(1 MiB, size) bytes
 *   memory            `Sender` (codec "raw", no journal) → 2 worker processes, first send → `drained()`
 *   memory-msgpack    the same with the default codec (msgpack; the payload is a Buffer)
 *   os, fsync         the same as memory with a `LevelJournal` in a fresh temp dir
 *
 *   npx tsx bench/payload-sizes.ts            (docs/bench-payload-sizes.md explains every field)
 *   env: SIZES (comma-separated bytes; default 256,4096,65536,1048576,8388608), TOTAL_MB (MiB of
 *        payload per case per run, default 128; at least 20 messages), N (messages per run, for
 *        every size: overrides TOTAL_MB), RUNS (5), WARMUP_MB (MiB of the warm-up run of each
 *        case, per size; default 16), CASES (comma-separated subset of the case names),
 *        OUTSTANDING (sends in flight at most; default min(64, 64 MiB / size)), WINDOW and
 *        WINDOW_BYTES (the senders' `window` and `windowBytes`; default the library's: 10 000
 *        messages and 64 MiB), CPU_PROF_DIR (the child processes write `--cpu-prof` profiles
 *        there), BENCH_QUICK=1 (sizes 4 KiB and 1 MiB, RUNS 2, TOTAL_MB 32, WARMUP_MB 4: < 60 s)
 *
 * Prints JSON lines: one per case per run, then one per case and size with the medians
 * (`stat: "median"`) and the ratios to the raw ceilings with their targets.
 */
import { randomBytes } from "node:crypto"
import { closeSync, fdatasyncSync, openSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Dealer } from "zeromq"
import type { Durability } from "../patterns/index.js"
import { forkFixture, forkModule, runBench, withTimeout, type Child } from "./lib/children.js"
import { loadLibrary } from "./lib/compiled.js"
import { removeDir, tempDir } from "./lib/temp-dirs.js"
import { envInt, printLine } from "./lib/env.js"
import { sampleMemory } from "./lib/statm.js"
import { median, round } from "./lib/stats.js"

const { Sender } = await loadLibrary()

const KIB = 1024
const MIB = 1024 * KIB
const QUICK = process.env["BENCH_QUICK"] === "1"
const SIZES = (process.env["SIZES"] ?? (QUICK ? "4096,1048576" : "256,4096,65536,1048576,8388608"))
  .split(",")
  .map((s) => {
    const size = Number(s.trim())
    if (!Number.isSafeInteger(size) || size <= 0)
      throw new RangeError(`SIZES must list positive integers, got ${s}`)
    return size
  })
const TOTAL_MB = envInt("TOTAL_MB", QUICK ? 32 : 128)
const N = process.env["N"] ? envInt("N", 1) : undefined
const RUNS = envInt("RUNS", QUICK ? 2 : 5)
const WARMUP_MB = envInt("WARMUP_MB", QUICK ? 4 : 16)
const OUTSTANDING = process.env["OUTSTANDING"] ? envInt("OUTSTANDING", 1) : undefined
const WINDOW = process.env["WINDOW"] ? envInt("WINDOW", 1) : undefined
const WINDOW_BYTES = process.env["WINDOW_BYTES"] ? envInt("WINDOW_BYTES", 1) : undefined
const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
const CPU_PROF_DIR = process.env["CPU_PROF_DIR"]
if (CPU_PROF_DIR !== undefined)
  process.env["BENCH_CHILD_NODE_ARGS"] = `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}`

/** Fewest messages per run, whatever the size. */
const MIN_N = 20
/** Bytes the producer may have in flight (unresolved sends), and the senders' window, at most. */
const MEMORY_BOUND = 64 * MIB
/** Sends outstanding at most for small payloads. */
const MAX_OUTSTANDING = 64
/** file-write-fsync: `fdatasync` after every group of this many bytes (or every message, when larger). */
const SYNC_GROUP = MIB
/** Payload bytes of the distinct random buffers cycled through, at most. */
const POOL_BYTES = 16 * MIB
const POOL_MAX = 64
const WORKERS = 2
const CONCURRENCY = 64
/** RSS sampling period (ms). */
const SAMPLE_MS = 20
const BIND = "tcp://127.0.0.1:*"
const BENCH = "payload-sizes"

const ALL_CASES = [
  "raw-oneway",
  "file-write-os",
  "file-write-fsync",
  "memory",
  "memory-msgpack",
  "os",
  "fsync",
] as const
type CaseName = (typeof ALL_CASES)[number]
const SELECTED = ALL_CASES.filter((c) => CASES === undefined || CASES.includes(c))
if (CASES !== undefined)
  for (const c of CASES)
    if (!(ALL_CASES as readonly string[]).includes(c))
      throw new RangeError(`CASES: unknown case ${c} (known: ${ALL_CASES.join(", ")})`)

interface Result {
  case: CaseName
  size: number
  n: number
  ms: number
  mbPerSec: number
  msgsPerSec: number
  cpuUsPerMsg: number
  cpuUsPerMiB: number
  [key: string]: unknown
}

/** Messages per timed run for `size`. */
function messages(size: number, mb: number): number {
  return Math.max(MIN_N, Math.round((mb * MIB) / size))
}

/** Sends in flight at most: min(64, 64 MiB / size), at least 1. */
function outstanding(size: number): number {
  return OUTSTANDING ?? Math.max(1, Math.min(MAX_OUTSTANDING, Math.floor(MEMORY_BOUND / size)))
}

/** The senders' window options: the library's defaults (`window` 10 000, `windowBytes` 64 MiB) unless set. */
function windowOptions(): { window?: number; windowBytes?: number } {
  return {
    ...(WINDOW !== undefined ? { window: WINDOW } : {}),
    ...(WINDOW_BYTES !== undefined ? { windowBytes: WINDOW_BYTES } : {}),
  }
}

/** Distinct random payloads (random: LevelDB's Snappy would shrink patterned ones). */
function payloads(size: number): Buffer[] {
  const count = Math.max(1, Math.min(POOL_MAX, Math.floor(POOL_BYTES / size)))
  return Array.from({ length: count }, () => randomBytes(size))
}

function cpuUs(since: NodeJS.CpuUsage): number {
  const { user, system } = process.cpuUsage(since)
  return user + system
}

/** The fields every case reports, from its count, time and CPU time (µs) of this process. */
function rates(size: number, n: number, ms: number, cpu: number) {
  const mib = (n * size) / MIB
  return {
    size,
    n,
    mib: round(mib, 2),
    ms: round(ms, 1),
    mbPerSec: round(mib / (ms / 1000), 1),
    msgsPerSec: Math.round((n * 1000) / ms),
    cpuUsPerMsg: round(cpu / n, 2),
    cpuUsPerMiB: Math.round(cpu / mib),
  }
}

const mb = (bytes: number): number => round(bytes / MIB, 1)

// ---------------------------------------------------------------------------------------------
// temporary directories (removed after each run, and by an exit hook on an early exit)

// ---------------------------------------------------------------------------------------------
// raw zeromq.js: DEALER here → ROUTER in a child (bench/fixtures/raw-sink.ts)

interface Sink {
  child: Child
  endpoint: string
}

async function openSink(): Promise<Sink> {
  const child = forkFixture("raw-sink.ts", [])
  const { endpoint } = await child.next<{ type: string; endpoint: string }>(
    (m) => m.type === "ready",
    30_000,
    "raw-sink ready",
  )
  return { child, endpoint }
}

async function sinkCpu(sink: Sink): Promise<number> {
  const answer = sink.child.next<{ type: string; us: number }>(
    (m) => m.type === "cpu",
    5000,
    "raw-sink cpu",
  )
  sink.child.send({ type: "cpu" })
  return (await answer).us
}

/**
 * n messages of `size` bytes, each `send()` awaited (it resolves once the message is queued), the
 * DEALER's send high-water mark at the producer's bound; then "END", and the sink answers with
 * its count once it has received every message before it.
 */
async function rawOneWay(sink: Sink, size: number, n: number): Promise<Result> {
  const bodies = payloads(size)
  // A fresh socket per run: its queue bound is the size's, and nothing is left from the last run.
  const dealer = new Dealer({
    linger: 0,
    sendHighWaterMark: outstanding(size),
    sendTimeout: 30_000,
    receiveTimeout: Math.max(60_000, n),
  })
  try {
    dealer.connect(sink.endpoint)
    const peer0 = await sinkCpu(sink)
    const memory = sampleMemory(SAMPLE_MS)
    const cpu = process.cpuUsage()
    const start = performance.now()
    for (let i = 0; i < n; i++) await dealer.send(bodies[i % bodies.length] as Buffer)
    await dealer.send("END")
    const [count] = await dealer.receive()
    const ms = performance.now() - start
    const used = cpuUs(cpu)
    const peaks = memory.stop()
    const peer = (await sinkCpu(sink)) - peer0
    if (Number(count?.toString()) !== n)
      throw new Error(`raw-oneway: the sink counted ${count?.toString() ?? "?"} of ${n}`)
    const r = rates(size, n, ms, used)
    return {
      case: "raw-oneway",
      ...r,
      peerCpuUsPerMiB: Math.round(peer / r.mib),
      outstanding: outstanding(size),
      peakRssMb: mb(peaks.peak),
    }
  } finally {
    dealer.close()
  }
}

// ---------------------------------------------------------------------------------------------
// raw file writes

/** One `writeSync` per message, appended; with `sync`, `fdatasync` after every group. */
async function fileWrite(sync: boolean, size: number, n: number): Promise<Result> {
  const bodies = payloads(size)
  const dir = await tempDir("sizes-file")
  const group = Math.max(1, Math.ceil(SYNC_GROUP / size))
  let syncs = 0
  try {
    const fd = openSync(join(dir, "data"), "a")
    try {
      const cpu = process.cpuUsage()
      const start = performance.now()
      for (let i = 0; i < n; i++) {
        const body = bodies[i % bodies.length] as Buffer
        for (let at = 0; at < body.length;) at += writeSync(fd, body, at)
        if (sync && ((i + 1) % group === 0 || i === n - 1)) {
          fdatasyncSync(fd)
          syncs++
        }
      }
      const ms = performance.now() - start
      const used = cpuUs(cpu)
      return {
        case: sync ? "file-write-fsync" : "file-write-os",
        ...rates(size, n, ms, used),
        ...(sync ? { syncEvery: group, syncs } : {}),
      }
    } finally {
      closeSync(fd)
    }
  } finally {
    await removeDir(dir)
  }
}

// ---------------------------------------------------------------------------------------------
// Sender → 2 worker processes (bench/journal-fixtures/worker.ts, the handler returns at once)

function forkWorker(): Child {
  return forkModule(new URL("./journal-fixtures/worker.ts", import.meta.url), [
    JSON.stringify({ concurrency: CONCURRENCY, prefetch: CONCURRENCY }),
  ])
}

type CodecName = "raw" | "msgpack"

async function connectWorkers(workers: Child[], endpoint: string, codec: CodecName): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      const connected = w.next((m) => m.type === "connected", 10_000, "worker connected")
      const ready = w.next((m) => m.type === "ready", 30_000, "worker ready")
      w.send({ type: "connect", endpoint, codec })
      await Promise.all([connected, ready])
    }),
  )
}

/** Closes every worker (acks flushed); resolves with their CPU time (µs) since the connect. */
async function closeWorkers(workers: Child[]): Promise<number> {
  const cpu = await Promise.all(
    workers.map(async (w) => {
      const closed = w.next<{ type: string; cpuUs: number }>(
        (m) => m.type === "closed",
        15_000,
        "worker closed",
      )
      w.send({ type: "close" })
      return (await closed).cpuUs
    }),
  )
  return cpu.reduce((a, b) => a + b, 0)
}

/**
 * A `Sender` in this process, end to end: first `send()` → `drained()`. The producer keeps
 * `outstanding(size)` sends unresolved at most (a send resolves once accepted: in the window for
 * memory, written to LevelDB for os, synced for fsync).
 */
async function endToEnd(
  durability: Durability,
  codec: CodecName,
  size: number,
  n: number,
  workers: Child[],
): Promise<Result> {
  const bodies = payloads(size)
  const dir = durability === "memory" ? undefined : await tempDir("sizes-journal")
  const sender = await Sender.open({
    bind: BIND,
    codec,
    durability,
    ...windowOptions(),
    ...(dir !== undefined ? { journal: dir } : {}),
  })
  let connected = false
  try {
    connected = true
    await connectWorkers(workers, sender.endpoint, codec)
    const limit = Math.max(120_000, n)
    const bound = outstanding(size)
    let peakBacklog = 0
    let peakInMemory = 0
    const watch = setInterval(() => {
      const s = sender.stats()
      peakBacklog = Math.max(peakBacklog, s.backlog)
      peakInMemory = Math.max(peakInMemory, s.ready + s.inFlight)
    }, SAMPLE_MS)
    const memory = sampleMemory(SAMPLE_MS)
    const cpu = process.cpuUsage()
    const start = performance.now()
    // A counter and one waiter, not Promise.race() over the pending sends: that would cost this
    // process (whose CPU time is the sender's figure) one reaction per pending send per send.
    const produce = async (): Promise<void> => {
      let pending = 0
      let failed: { error: unknown } | undefined
      let wake: (() => void) | undefined
      const settled = (): void => {
        pending--
        const w = wake
        wake = undefined
        w?.()
      }
      const room = (max: number): Promise<void> | undefined =>
        pending > max && failed === undefined
          ? new Promise<void>((resolve) => (wake = resolve))
          : undefined
      for (let i = 0; i < n && failed === undefined; i++) {
        while (pending >= bound && failed === undefined) await room(bound - 1)
        pending++
        sender.send(bodies[i % bodies.length]).then(settled, (error: unknown) => {
          failed ??= { error }
          settled()
        })
      }
      while (pending > 0) await new Promise<void>((resolve) => (wake = resolve))
      if (failed !== undefined) throw failed.error
    }
    try {
      await withTimeout(produce(), limit, `${durability}: ${n} sends accepted`)
      const accepted = performance.now()
      await sender.drained({ signal: AbortSignal.timeout(limit) })
      const ms = performance.now() - start
      const used = cpuUs(cpu)
      const peaks = memory.stop()
      clearInterval(watch)
      const stats = sender.stats()
      if (stats.acked !== n) throw new Error(`${durability}: ${stats.acked} of ${n} acked`)
      connected = false
      const workerCpu = await closeWorkers(workers)
      const r = rates(size, n, ms, used)
      return {
        case: (codec === "msgpack" ? `${durability}-msgpack` : durability) as CaseName,
        ...r,
        acceptedMs: round(accepted - start, 1),
        workerCpuUsPerMiB: Math.round(workerCpu / r.mib),
        peakRssMb: mb(peaks.peak),
        rssBeforeMb: mb(peaks.rssBefore),
        outstanding: bound,
        peakInMemory,
        peakBacklog,
        redelivered: stats.redelivered,
        p50us: Math.round(stats.latency.p50 * 1000),
      }
    } finally {
      memory.stop()
      clearInterval(watch)
    }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender.close()
    if (dir !== undefined) await removeDir(dir)
  }
}

// ---------------------------------------------------------------------------------------------
// summary

interface Ratio {
  /** The summary field. */
  field: string
  /** Numerator case (the summary's own) over `of`, by `metric`. */
  of: CaseName
  metric: "mbPerSec" | "cpuUsPerMiB"
  target: number
  /** Lower is better (CPU), else higher. */
  atMost?: boolean
  /** Sizes the target applies to (the ratio is printed at every size). */
  applies: (size: number) => boolean
}

const every = (): boolean => true
/** The sender's CPU per MiB against raw zeromq.js's, at every size. */
const CPU_VS_RAW: Ratio = {
  field: "cpuVsRaw",
  of: "raw-oneway",
  metric: "cpuUsPerMiB",
  target: 2,
  atMost: true,
  applies: every,
}
/** A sender without a journal against raw zeromq.js: its speed and its CPU per MiB. */
const AGAINST_THE_WIRE: Ratio[] = [
  {
    field: "vsRawOneway",
    of: "raw-oneway",
    metric: "mbPerSec",
    target: 0.7,
    applies: (s) => s === 64 * KIB || s === MIB,
  },
  CPU_VS_RAW,
]
/** A journaled sender against a plain file write with the same syncs, and its CPU per MiB. */
function againstTheDisk(file: CaseName): Ratio[] {
  return [
    { field: "vsFile", of: file, metric: "mbPerSec", target: 0.5, applies: (s) => s >= 64 * KIB },
    CPU_VS_RAW,
  ]
}
const RATIOS: Partial<Record<CaseName, Ratio[]>> = {
  memory: AGAINST_THE_WIRE,
  "memory-msgpack": AGAINST_THE_WIRE,
  os: againstTheDisk("file-write-os"),
  fsync: againstTheDisk("file-write-fsync"),
}

function medianField(rs: readonly Result[], key: string): number | undefined {
  const values = rs.map((r) => r[key]).filter((v): v is number => typeof v === "number")
  return values.length === 0 ? undefined : median(values)
}

function summarize(results: Map<string, Result[]>): void {
  const key = (c: string, size: number): string => `${c}@${size}`
  for (const size of SIZES) {
    for (const name of SELECTED) {
      const rs = results.get(key(name, size)) ?? []
      if (rs.length === 0) continue
      const line: Record<string, unknown> = {
        bench: BENCH,
        case: name,
        size,
        stat: "median",
        runs: rs.length,
        n: rs[0]?.n,
      }
      for (const field of [
        "mbPerSec",
        "msgsPerSec",
        "cpuUsPerMsg",
        "cpuUsPerMiB",
        "peerCpuUsPerMiB",
        "workerCpuUsPerMiB",
        "peakRssMb",
        "peakInMemory",
        "peakBacklog",
        "acceptedMs",
        "p50us",
      ]) {
        const m = medianField(rs, field)
        if (m !== undefined) line[field] = round(m, field === "cpuUsPerMsg" ? 2 : 1)
      }
      line["min"] = Math.min(...rs.map((r) => r.mbPerSec))
      line["max"] = Math.max(...rs.map((r) => r.mbPerSec))
      if (name === "memory-msgpack") {
        const base = results.get(key("memory", size))
        const mine = medianField(rs, "mbPerSec")
        const theirs = base && medianField(base, "mbPerSec")
        if (mine !== undefined && theirs !== undefined) line["vsMemory"] = round(mine / theirs, 3)
      }
      for (const ratio of RATIOS[name] ?? []) {
        const base = results.get(key(ratio.of, size))
        const mine = medianField(rs, ratio.metric)
        const theirs = base && medianField(base, ratio.metric)
        if (base === undefined || mine === undefined || theirs === undefined) continue
        const value = round(mine / theirs, 3)
        // The baseline ran in the same run, just before: per-run ratios are steadier on a busy machine.
        const perRun: number[] = []
        for (const r of rs) {
          const b = base.find((x) => x["run"] === r["run"])?.[ratio.metric]
          const v = r[ratio.metric]
          if (typeof b === "number" && typeof v === "number" && b > 0) perRun.push(v / b)
        }
        line[ratio.field] = value
        if (perRun.length > 0) line[`${ratio.field}RunMedian`] = round(median(perRun), 3)
        if (ratio.applies(size)) {
          line[`${ratio.field}Target`] = `${ratio.atMost ? "<=" : ">="} ${ratio.target}`
          line[`${ratio.field}MeetsTarget`] = ratio.atMost
            ? value <= ratio.target
            : value >= ratio.target
        }
      }
      printLine(line)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<void> {
  printLine({
    bench: BENCH,
    config: {
      sizes: SIZES,
      totalMb: N === undefined ? TOTAL_MB : null,
      n: N ?? SIZES.map((s) => messages(s, TOTAL_MB)),
      runs: RUNS,
      warmupMb: WARMUP_MB,
      outstanding: SIZES.map(outstanding),
      window: WINDOW ?? "default",
      windowBytes: WINDOW_BYTES ?? "default",
      syncGroupBytes: SYNC_GROUP,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      cases: SELECTED,
      quick: QUICK,
    },
    tmpdir: tmpdir(),
    node: process.version,
  })
  const needSink = SELECTED.includes("raw-oneway")
  const needWorkers = SELECTED.some((c) => !c.startsWith("raw") && !c.startsWith("file"))
  const sink = needSink ? await openSink() : undefined
  const workers = needWorkers ? Array.from({ length: WORKERS }, forkWorker) : []
  await Promise.all(
    workers.map((w) => w.next((m) => m.type === "started", 30_000, "worker started")),
  )

  const run1 = (name: CaseName, size: number, n: number): Promise<Result> => {
    switch (name) {
      case "raw-oneway":
        if (!sink) throw new Error("no sink")
        return rawOneWay(sink, size, n)
      case "file-write-os":
        return fileWrite(false, size, n)
      case "file-write-fsync":
        return fileWrite(true, size, n)
      case "memory":
        return endToEnd("memory", "raw", size, n, workers)
      case "memory-msgpack":
        return endToEnd("memory", "msgpack", size, n, workers)
      case "os":
        return endToEnd("os", "raw", size, n, workers)
      case "fsync":
        return endToEnd("fsync", "raw", size, n, workers)
    }
  }

  const results = new Map<string, Result[]>()
  for (const size of SIZES) {
    const n = N ?? messages(size, TOTAL_MB)
    const warm = Math.min(n, messages(size, WARMUP_MB))
    for (const name of SELECTED) await run1(name, size, warm)
    for (let run = 1; run <= RUNS; run++) {
      for (const name of SELECTED) {
        const r = await run1(name, size, n)
        const k = `${name}@${size}`
        results.set(k, [...(results.get(k) ?? []), { ...r, run }])
        printLine({ bench: BENCH, ...r, run })
      }
    }
  }
  summarize(results)
  await Promise.all([sink?.child.end(), ...workers.map((w) => w.end())])
}

await runBench(main, 40 * 60_000)
