/**
 * The throughput cases of bench/pair.ts: `raw-zeromq` (the raw zeromq.js baseline), `os` (one
 * plain `Sender`) and `replicated` (the primary of a pair here, its backup in a child process),
 * interleaved run by run, then their medians and ratios.
 */
import type { Sender as SenderType } from "../../patterns/index.js"
import { withTimeout } from "../lib/children.js"
import { loadLibrary } from "../lib/compiled.js"
import { printLine } from "../lib/env.js"
import { openSink, rawOneWay, type Sink } from "../lib/raw-sink.js"
import { median, medianOf, round } from "../lib/stats.js"
import { removeDir, tempDir } from "../lib/temp-dirs.js"
import {
  closeNode,
  closeWorkers,
  connectWorkers,
  nodeStats,
  openPrimary,
  pairConfig,
  pairUp,
  startNode,
  startWorkers,
  type Closed,
  type Opened,
  type Proc,
} from "./nodes.js"
import {
  BENCH,
  BODIES,
  CONCURRENCY,
  N,
  POOL,
  PUBLISH_BATCH,
  RATIO_TARGET,
  RUNS,
  SIZE,
  WARMUP,
  WORKERS,
  wanted,
  type Result,
} from "./settings.js"

const { Sender } = await loadLibrary()

/** Process CPU time (user + system, every thread) per message, in µs. */
export function cpuPerMsg(usage: NodeJS.CpuUsage, n: number): number {
  return round((usage.user + usage.system) / n, 2)
}

/** n sends PUBLISH_BATCH at a time, each batch awaited, then `drained()`; the figures of that. */
async function pump(sender: SenderType, n: number, name: string): Promise<Result> {
  const limit = Math.max(60_000, n)
  const cpu = process.cpuUsage()
  const start = performance.now()
  const sending = async (): Promise<void> => {
    for (let i = 0; i < n;) {
      const sends: Promise<string>[] = []
      for (const end = Math.min(n, i + PUBLISH_BATCH); i < end; i++)
        sends.push(sender.send(BODIES[i % POOL]))
      await Promise.all(sends)
    }
  }
  await withTimeout(sending(), limit, `${name}: ${n} sends resolved`)
  const accepted = performance.now()
  await sender.drained({ signal: AbortSignal.timeout(limit) })
  const ms = performance.now() - start
  const used = process.cpuUsage(cpu)
  const stats = sender.stats()
  if (stats.acked !== n) throw new Error(`${name}: ${stats.acked} of ${n} acked`)
  return {
    case: name,
    n,
    size: SIZE,
    codec: "msgpack",
    batch: PUBLISH_BATCH,
    workers: WORKERS,
    concurrency: CONCURRENCY,
    ms: round(ms, 1),
    acceptedMs: round(accepted - start, 1),
    msgsPerSec: Math.round((n * 1000) / ms),
    cpuUsPerMsg: cpuPerMsg(used, n),
    p50us: Math.round(stats.latency.p50 * 1000),
    p99us: Math.round(stats.latency.p99 * 1000),
    redelivered: stats.redelivered,
  }
}

async function osCase(n: number, workers: Proc[]): Promise<Result> {
  const dir = await tempDir("pair-os")
  const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", journal: dir, durability: "os" })
  let connected = false
  try {
    connected = true
    await connectWorkers(workers, [sender.endpoint])
    const r = await pump(sender, n, "os")
    connected = false
    const closed = await closeWorkers(workers)
    return { ...r, durability: "os", workerCpuUsPerMsg: workerCpu(closed, n) }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await sender.close()
    await removeDir(dir)
  }
}

async function replicatedCase(n: number, workers: Proc[]): Promise<Result> {
  const pair = await pairConfig("pair-repl")
  const backup = startNode(pair.backup)
  let primary: SenderType | undefined
  let connected = false
  try {
    primary = await openPrimary(pair.primary)
    await pairUp(primary, backup)
    const { endpoint } = await backup.next<Opened>("open", 30_000)
    connected = true
    await connectWorkers(workers, [primary.endpoint, endpoint])
    const before = await nodeStats(backup)
    const r = await pump(primary, n, "replicated")
    const after = await nodeStats(backup)
    const pairStats = primary.stats().pair
    connected = false
    const closed = await closeWorkers(workers)
    return {
      ...r,
      durability: "replicated",
      backupCpuUsPerMsg: round((after.cpuUs - before.cpuUs) / n, 2),
      workerCpuUsPerMsg: workerCpu(closed, n),
      lagAfter: pairStats?.lag,
      dropped: pairStats?.dropped,
    }
  } finally {
    if (connected) await closeWorkers(workers).catch(() => undefined)
    await primary?.close()
    await closeNode(backup)
    await removeDir(pair.dir)
  }
}

function workerCpu(closed: Closed[], n: number): number {
  return round(closed.reduce((a, c) => a + c.cpuUs, 0) / n, 2)
}

async function rawCase(sink: Sink, n: number): Promise<Result> {
  return { case: "raw-zeromq", size: SIZE, ...(await rawOneWay(sink, n, BODIES, "raw-zeromq")) }
}

export async function throughput(): Promise<void> {
  const names = ["raw-zeromq", "os", "replicated"].filter(wanted)
  if (names.length === 0) return
  const workers = startWorkers()
  await Promise.all(workers.map((w) => w.next("started", 30_000)))
  const sink = names.includes("raw-zeromq") ? await openSink() : undefined
  const run = (name: string, n: number): Promise<Result> =>
    name === "raw-zeromq"
      ? rawCase(sink as Sink, n)
      : name === "os"
        ? osCase(n, workers)
        : replicatedCase(n, workers)
  for (const name of names) await run(name, WARMUP)
  const results = new Map<string, Result[]>()
  for (let r = 1; r <= RUNS; r++) {
    // The order rotates from run to run.
    const order = names.map((_, i) => names[(i + r - 1) % names.length] as string)
    for (const name of order) {
      const result = { ...(await run(name, N)), run: r }
      results.set(name, [...(results.get(name) ?? []), result])
      printLine({ bench: BENCH, ...result })
    }
  }
  await Promise.all(workers.map((w) => w.child.end()))
  await sink?.child.end()
  sink?.dealer.close()

  const rate = (rs: Result[] | undefined): number =>
    median((rs ?? []).map((r) => r["msgsPerSec"] as number))
  const perRun = (mine: Result[], theirs: Result[] | undefined): number | undefined => {
    const ratios = mine.flatMap((m) => {
      const t = theirs?.find((x) => x["run"] === m["run"])
      return t === undefined ? [] : [(m["msgsPerSec"] as number) / (t["msgsPerSec"] as number)]
    })
    return ratios.length === 0 ? undefined : round(median(ratios), 3)
  }
  const raw = results.get("raw-zeromq")
  const os = results.get("os")
  for (const [name, rs] of results) {
    const rates = rs.map((r) => r["msgsPerSec"] as number)
    const line: Record<string, unknown> = {
      bench: BENCH,
      case: name,
      stat: "median",
      runs: rs.length,
      n: N,
      size: SIZE,
      msgsPerSec: Math.round(median(rates)),
      min: Math.min(...rates),
      max: Math.max(...rates),
      ...medianOf(rs, [
        "cpuUsPerMsg",
        "backupCpuUsPerMsg",
        "workerCpuUsPerMsg",
        "peerCpuUsPerMsg",
        "p50us",
        "p99us",
        "acceptedMs",
      ]),
    }
    if (name !== "raw-zeromq" && raw !== undefined)
      Object.assign(line, {
        rawMsgsPerSec: Math.round(rate(raw)),
        vsRaw: round(median(rates) / rate(raw), 3),
        vsRawPerRun: perRun(rs, raw),
      })
    if (name === "replicated" && os !== undefined) {
      const ratio = round(median(rates) / rate(os), 3)
      Object.assign(line, {
        baseline: "os",
        ratio,
        runRatioMedian: perRun(rs, os),
        osMsgsPerSec: Math.round(rate(os)),
        cpuVsOs: round(
          median(rs.map((r) => r["cpuUsPerMsg"] as number)) /
            median(os.map((r) => r["cpuUsPerMsg"] as number)),
          3,
        ),
        target: `≥ ${RATIO_TARGET} × os`,
        meetsTarget: ratio >= RATIO_TARGET,
      })
    }
    printLine(line)
  }
}
