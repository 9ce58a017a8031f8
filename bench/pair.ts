/**
 * What does a sender pair cost, and how fast does it recover (issue 15)? Three questions, both
 * senders on this machine (docs/bench-pair.md explains every field and gives one run's figures):
 *
 *   raw-zeromq   the raw zeromq.js baseline of the same run: a DEALER here → a ROUTER in a child
 *                (bench/fixtures/raw-sink.ts), one-way, each send awaited
 *   os           one plain `Sender` in this process, a `LevelJournal` at durability "os"
 *   replicated   the primary of a pair in this process (a `LevelJournal`), the backup in a child
 *                process (its own `LevelJournal`), durability "replicated": a send resolves once
 *                the backup acked its append
 *     Both: the default codec (msgpack), SIZE-byte payloads, sends awaited PUBLISH_BATCH at a time
 *     (the peers' harness's shape), 2 worker processes (connected to both senders of the pair),
 *     first send → `drained()`; msgs/s, the ratio to `os` (target ≥ 0.7), and the sender CPU µs
 *     per message (`process.cpuUsage()` of this process; the backup's own in `backupCpuUsPerMsg`).
 *   failover, failover-short
 *                both senders as child processes, 2 worker processes, a light load streaming on
 *                the active (STREAM_BATCH sends awaited together, then STREAM_PAUSE_MS); KILLS
 *                times: SIGKILL the active, time until the passive emits `pair:active`, restart
 *                the killed node (same ports and journal), wait until it is passive, the active's
 *                `stats().pair.replicated` is true and it has its workers back. p50 and max over
 *                the kills; target p50 ≤ pair.timeout + 200 ms. `failover`: the default heartbeat
 *                (1000 ms, pair.timeout 3000 ms); `failover-short`: 100 ms, pair.timeout 300 ms.
 *   catchup      the primary in this process with CATCHUP pending messages (SIZE bytes, no worker,
 *                filled with the backup killed and `whenAlone: "local"`), then the backup starts in
 *                a child process with an empty journal (its directory deleted: a lost disk); time
 *                from its start until the primary's `stats().pair.replicated` is true (a full
 *                copy), msgs/s, and the backup's peak RSS (target < 200 MB).
 *
 *   npx tsx bench/pair.ts
 *   env: N (50000 messages per throughput run), SIZE (256 bytes), RUNS (5), WARMUP (5000),
 *        PUBLISH_BATCH (1000), CONCURRENCY (64: each worker's concurrency and prefetch),
 *        KILLS (10 per failover case), STREAM_BATCH (10), STREAM_PAUSE_MS (10),
 *        CATCHUP (1000000 pending), CATCHUP_RUNS (1), CASES (comma-separated subset of
 *        raw-zeromq, os, replicated, failover, failover-short, catchup),
 *        BENCH_QUICK=1 (N 10000, RUNS 2, WARMUP 2000, KILLS 3, CATCHUP 100000: about a minute),
 *        CPU_PROF_DIR (the child processes write `--cpu-prof` profiles there; run this process
 *        with `node --cpu-prof --import tsx bench/pair.ts` for the primary's)
 *
 * Prints JSON lines: one per case per run (per kill for the failover cases), then one per case
 * with the medians (`stat: "median"`), ratios and targets. The throughput cases of one run are
 * interleaved (their order rotates from run to run), so that the noise of a shared machine falls
 * on every case alike.
 */
import { randomBytes } from "node:crypto"
import { createServer, type AddressInfo } from "node:net"
import { rm } from "node:fs/promises"
import { join } from "node:path"
import type { Sender as SenderType } from "../patterns/index.js"
import { forkModule, runBench, sleep, withTimeout, type Child } from "./lib/children.js"
import { loadLibrary } from "./lib/compiled.js"
import { removeDir, tempDir } from "./lib/temp-dirs.js"
import { openSink, rawOneWay, type Sink } from "./lib/raw-sink.js"
import { envInt, printLine } from "./lib/env.js"
import { max, median, medianOf, percentile, round } from "./lib/stats.js"

const { Sender } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 10_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 2 : 5)
const WARMUP = envInt("WARMUP", QUICK ? 2000 : 5000)
const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1000)
const CONCURRENCY = envInt("CONCURRENCY", 64)
const KILLS = envInt("KILLS", QUICK ? 3 : 10)
const STREAM_BATCH = envInt("STREAM_BATCH", 10)
const STREAM_PAUSE_MS = envInt("STREAM_PAUSE_MS", 10)
const CATCHUP = envInt("CATCHUP", QUICK ? 100_000 : 1_000_000)
const CATCHUP_RUNS = envInt("CATCHUP_RUNS", 1)
const CASES = process.env["CASES"]?.split(",").map((c) => c.trim())
const CPU_PROF_DIR = process.env["CPU_PROF_DIR"]
if (CPU_PROF_DIR !== undefined)
  process.env["BENCH_CHILD_NODE_ARGS"] = `--cpu-prof --cpu-prof-dir=${CPU_PROF_DIR}`

const WORKERS = 2
/** Distinct random payloads cycled through (random: nothing for LevelDB's compression to squeeze). */
const POOL = 1024
const BODIES = Array.from({ length: POOL }, () => randomBytes(SIZE))
const BENCH = "pair"
const RATIO_TARGET = 0.7
const CATCHUP_RSS_TARGET_MB = 200
/** Failover: the passive takes over within pair.timeout + this (ms). */
const FAILOVER_SLACK = 200
const FAILOVERS = [
  { name: "failover", heartbeatInterval: 1000, timeout: 3000 },
  { name: "failover-short", heartbeatInterval: 100, timeout: 300 },
] as const

const wanted = (name: string): boolean => CASES === undefined || CASES.includes(name)

interface Result {
  case: string
  [key: string]: unknown
}

// ---------------------------------------------------------------------------------------------
// children

interface Proc {
  readonly child: Child
  next<T extends { type: string }>(
    type: string,
    ms: number,
    match?: (m: T) => boolean,
  ): Promise<T & { receivedAt: number }>
  send(message: object): void
}

/** Forks `bench/pair-fixtures/<file>`, compiled; its `error` messages go to stderr. */
function fork(file: string, args: string[]): Proc {
  const child = forkModule(new URL(`./pair-fixtures/${file}`, import.meta.url), args)
  child.process.on("message", (m: { type: string; message?: string; code?: string }) => {
    if (m.type === "error")
      process.stderr.write(`${file} (${String(child.pid)}): ${m.code ?? ""} ${m.message ?? "?"}\n`)
  })
  return {
    child,
    // `receivedAt`: Date.now() when the message arrived here (stamped by the match itself).
    next: async <T extends { type: string }>(
      type: string,
      ms: number,
      match?: (m: T) => boolean,
    ) => {
      let receivedAt = 0
      const m = await child.next<T>(
        (x) => {
          const ok = x.type === type && (match === undefined || match(x))
          if (ok) receivedAt = Date.now()
          return ok
        },
        ms,
        `"${type}" from ${file}`,
      )
      return { ...m, receivedAt: receivedAt || Date.now() }
    },
    send: (message) => child.send(message),
  }
}

interface NodeConfig {
  role: "primary" | "backup"
  journal: string
  bind: string
  pairBind: string
  peer: string
  heartbeatInterval?: number
  timeout?: number
  whenAlone?: "wait" | "local"
  size?: number
}

interface Opened {
  type: "open"
  at: number
  openMs: number
  endpoint: string
}
interface StateMsg {
  type: "state"
  state: "active" | "passive"
  epoch: number
  reason: string
  at: number
}
interface NodeStats {
  type: "stats"
  stats: ReturnType<SenderType["stats"]>
  cpuUs: number
  rssMb: number
  peakRssMb: number
  peakAnonMb: number
  maxRssMb: number
}

function startNode(config: NodeConfig): Proc {
  return fork("node.ts", [JSON.stringify({ size: SIZE, ...config })])
}

async function nodeStats(node: Proc): Promise<NodeStats> {
  const reply = node.next<NodeStats>("stats", 10_000)
  node.send({ type: "stats" })
  return reply
}

async function closeNode(node: Proc): Promise<void> {
  const closed = node.next("closed", 10_000).catch(() => undefined)
  node.send({ type: "close" })
  await closed
  // It exits by itself (writing its CPU profile when asked to); SIGKILL if it has not within 2 s.
  await node.child.end()
}

function startWorkers(): Proc[] {
  return Array.from({ length: WORKERS }, () =>
    fork("worker.ts", [JSON.stringify({ concurrency: CONCURRENCY, prefetch: CONCURRENCY })]),
  )
}

/** Connects every worker to `endpoints`; resolves once every sender answered every worker. */
async function connectWorkers(
  workers: Proc[],
  endpoints: string[],
  heartbeatInterval?: number,
): Promise<void> {
  await Promise.all(
    workers.map(async (w) => {
      const connected = w.next("connected", 10_000)
      const ready = endpoints.map((e) =>
        w.next<{ type: "ready"; endpoint: string }>("ready", 30_000, (m) => m.endpoint === e),
      )
      w.send({
        type: "connect",
        endpoints,
        ...(heartbeatInterval !== undefined ? { heartbeatInterval } : {}),
      })
      await Promise.all([connected, ...ready])
    }),
  )
}

interface Closed {
  type: "closed"
  cpuUs: number
  handled: number
  votes: number
}

async function closeWorkers(workers: Proc[]): Promise<Closed[]> {
  return Promise.all(
    workers.map(async (w) => {
      const reply = w.next<Closed>("closed", 15_000)
      w.send({ type: "close" })
      return reply
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// a pair's addresses

/** `n` distinct loopback ports the system had free a moment ago (a pair names both before binding). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer()
          server.once("error", reject)
          server.listen(0, "127.0.0.1", () => resolve(server))
        }),
    ),
  )
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  return ports
}

interface Pair {
  dir: string
  primary: NodeConfig
  backup: NodeConfig
}

async function pairConfig(name: string, options: Partial<NodeConfig> = {}): Promise<Pair> {
  const dir = await tempDir(name)
  const [pw, pp, bw, bp] = (await freePorts(4)) as [number, number, number, number]
  const at = (port: number): string => `tcp://127.0.0.1:${port}`
  return {
    dir,
    primary: {
      ...options,
      role: "primary",
      journal: join(dir, "primary"),
      bind: at(pw),
      pairBind: at(pp),
      peer: at(bp),
    },
    backup: {
      ...options,
      role: "backup",
      journal: join(dir, "backup"),
      bind: at(bw),
      pairBind: at(bp),
      peer: at(pp),
    },
  }
}

/** A pair's primary in this process. */
async function openPrimary(
  config: NodeConfig,
  whenAlone: "wait" | "local" = "wait",
): Promise<SenderType> {
  return Sender.open({
    bind: config.bind,
    journal: config.journal,
    durability: "replicated",
    pair: { role: "primary", bind: config.pairBind, peer: config.peer, whenAlone },
  })
}

/** Resolves once `cond()` holds (checked every `everyMs`); rejects after `ms`. */
async function until(cond: () => boolean, ms: number, what: string, everyMs = 5): Promise<void> {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}

/** The primary here active and replicated, the backup (a child) passive. */
async function pairUp(primary: SenderType, backup: Proc): Promise<void> {
  await backup.next<StateMsg>("state", 30_000, (m) => m.state === "passive")
  await until(
    () => primary.state === "active" && primary.stats().pair?.replicated === true,
    30_000,
    "the primary active with its backup caught up",
  )
}

// ---------------------------------------------------------------------------------------------
// throughput: os and replicated

/** Process CPU time (user + system, every thread) per message, in µs. */
function cpuPerMsg(usage: NodeJS.CpuUsage, n: number): number {
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

async function throughput(): Promise<void> {
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

// ---------------------------------------------------------------------------------------------
// failover after SIGKILL

async function failover(spec: (typeof FAILOVERS)[number]): Promise<void> {
  const pair = await pairConfig(spec.name, {
    heartbeatInterval: spec.heartbeatInterval,
    timeout: spec.timeout,
  })
  const workers = startWorkers()
  const nodes: Proc[] = []
  try {
    await Promise.all(workers.map((w) => w.next("started", 30_000)))
    const start = (config: NodeConfig): Proc => {
      const node = startNode(config)
      nodes.push(node)
      return node
    }
    let active = start(pair.primary)
    let passive = start(pair.backup)
    let activeConfig = pair.primary
    let passiveConfig = pair.backup
    const [a, b] = await Promise.all([
      active.next<Opened>("open", 30_000),
      passive.next<Opened>("open", 30_000),
    ])
    await Promise.all([
      active.next<StateMsg>("state", 30_000, (m) => m.state === "active"),
      passive.next<StateMsg>("state", 30_000, (m) => m.state === "passive"),
      active.next("replicated", 30_000),
    ])
    await connectWorkers(workers, [a.endpoint, b.endpoint], spec.heartbeatInterval)
    const stream = (node: Proc): void =>
      node.send({ type: "stream", batch: STREAM_BATCH, pauseMs: STREAM_PAUSE_MS })
    stream(active)
    const rs: Result[] = []
    for (let kill = 1; kill <= KILLS; kill++) {
      // The load has run a while on this active, and the passive holds its worker sessions.
      await sleep(Math.max(500, spec.timeout / 2))
      const ps = await nodeStats(passive)
      if (ps.stats.workers < WORKERS)
        throw new Error(`${spec.name}: the passive has ${ps.stats.workers} workers`)
      const takeover = passive.next<StateMsg>("state", 60_000, (m) => m.state === "active")
      const killedAt = Date.now()
      const killedPerf = performance.now()
      await active.child.kill("SIGKILL")
      const took = await takeover
      const tookPerf = performance.now()
      // The killed node returns on the same ports and journal, becomes passive, catches up.
      const restartedAt = Date.now()
      const returned = start(activeConfig)
      const replicated = passive.next<{ type: "replicated"; at: number }>(
        "replicated",
        120_000,
        (m) => (m as unknown as { replicated: boolean }).replicated,
      )
      stream(passive)
      const back = await returned.next<StateMsg>("state", 60_000, (m) => m.state === "passive")
      const caughtUp = await replicated
      // It has its worker sessions again (the workers reconnect after their backoff).
      await untilAsync(
        async () => (await nodeStats(returned)).stats.workers >= WORKERS,
        60_000,
        `${spec.name}: workers back on the restarted node`,
      )
      const r: Result = {
        case: spec.name,
        kill,
        heartbeatInterval: spec.heartbeatInterval,
        timeout: spec.timeout,
        // The passive's own Date.now() at pair:active − this process's Date.now() at the kill
        // (the same machine's wall clock: no monotonic clock is shared by two processes).
        failoverMs: took.at - killedAt,
        // This process's clock: the kill → the IPC message of the takeover received here.
        failoverReceivedMs: round(tookPerf - killedPerf, 1),
        reason: took.reason,
        epoch: took.epoch,
        rejoinMs: back.at - restartedAt,
        catchUpMs: caughtUp.at - restartedAt,
      }
      rs.push(r)
      printLine({ bench: BENCH, ...r })
      ;[active, passive] = [passive, returned]
      ;[activeConfig, passiveConfig] = [passiveConfig, activeConfig]
    }
    active.send({ type: "stop" })
    const closed = await closeWorkers(workers)
    const ms = rs.map((r) => r["failoverMs"] as number)
    const received = rs.map((r) => r["failoverReceivedMs"] as number)
    const p50 = percentile(ms, 50)
    const target = spec.timeout + FAILOVER_SLACK
    printLine({
      bench: BENCH,
      case: spec.name,
      stat: "median",
      // First, so that bench/run.ts's table shows them (its notes take the first numeric fields).
      failoverP50Ms: p50,
      failoverMaxMs: max(ms),
      kills: rs.length,
      timeout: spec.timeout,
      heartbeatInterval: spec.heartbeatInterval,
      failoverMinMs: Math.min(...ms),
      p50ReceivedMs: round(percentile(received, 50), 1),
      maxReceivedMs: round(max(received), 1),
      rejoinP50ms: median(rs.map((r) => r["rejoinMs"] as number)),
      catchUpP50ms: median(rs.map((r) => r["catchUpMs"] as number)),
      reasons: [...new Set(rs.map((r) => r["reason"]))],
      votes: closed.reduce((a, c) => a + c.votes, 0),
      handled: closed.reduce((a, c) => a + c.handled, 0),
      target: `p50 ≤ pair.timeout + ${FAILOVER_SLACK} ms (${target} ms)`,
      meetsTarget: p50 <= target,
    })
  } finally {
    await Promise.all(nodes.map((n) => n.child.kill()))
    await Promise.all(workers.map((w) => w.child.end()))
    await removeDir(pair.dir)
  }
}

async function untilAsync(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms
  while (!(await cond())) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
}

// ---------------------------------------------------------------------------------------------
// catch-up of a rejoining node

async function catchup(run: number): Promise<Result> {
  const pair = await pairConfig("pair-catchup")
  let backup: Proc | undefined = startNode(pair.backup)
  let primary: SenderType | undefined
  try {
    primary = await openPrimary(pair.primary, "local")
    await pairUp(primary, backup)
    // The backup goes (SIGKILL); the primary, alone, resolves its sends locally ("local") once it
    // has noticed (pair.timeout); no worker: they all stay pending.
    await backup.child.kill("SIGKILL")
    backup = undefined
    const fillStart = performance.now()
    for (let i = 0; i < CATCHUP;) {
      const sends: Promise<string>[] = []
      for (const end = Math.min(CATCHUP, i + PUBLISH_BATCH); i < end; i++)
        sends.push(primary.send(BODIES[i % POOL]))
      await Promise.all(sends)
    }
    const fillMs = performance.now() - fillStart
    const { backlog, inWindow } = primary.stats()
    if (backlog + inWindow !== CATCHUP)
      throw new Error(`catchup: ${backlog + inWindow} of ${CATCHUP} pending on the primary`)
    if (primary.stats().pair?.replicated !== false) throw new Error("catchup: replicated alone?")
    // The backup's disk is gone: it returns empty, and gets a full copy.
    await rm(pair.backup.journal, { recursive: true, force: true })
    const cpu = process.cpuUsage()
    const startedAt = Date.now()
    const startedPerf = performance.now()
    backup = startNode(pair.backup)
    const opened = await backup.next<Opened>("open", 60_000)
    const p = primary
    await until(() => p.stats().pair?.replicated === true, 600_000, "catchup: replicated", 10)
    const ms = performance.now() - startedPerf
    const primaryCpu = process.cpuUsage(cpu)
    const s = await nodeStats(backup)
    return {
      case: "catchup",
      run,
      pending: CATCHUP,
      size: SIZE,
      fillMs: round(fillMs, 1),
      ms: round(ms, 1),
      // From the backup's Sender.open() resolving (its process start and module load excluded).
      fromOpenMs: round(ms - (opened.at - startedAt), 1),
      backupOpenMs: round(opened.openMs, 1),
      msgsPerSec: Math.round((CATCHUP * 1000) / ms),
      primaryCpuUsPerMsg: cpuPerMsg(primaryCpu, CATCHUP),
      backupCpuUsPerMsg: round(s.cpuUs / CATCHUP, 2),
      peakRssMb: s.peakRssMb,
      peakAnonMb: s.peakAnonMb,
      maxRssMb: s.maxRssMb,
      rssAfterMb: s.rssMb,
    }
  } finally {
    await primary?.close()
    if (backup !== undefined) await closeNode(backup)
    await removeDir(pair.dir)
  }
}

async function catchups(): Promise<void> {
  if (!wanted("catchup")) return
  const rs: Result[] = []
  for (let run = 1; run <= CATCHUP_RUNS; run++) {
    const r = await catchup(run)
    rs.push(r)
    printLine({ bench: BENCH, ...r })
  }
  const worst = Math.max(...rs.map((r) => r["maxRssMb"] as number))
  printLine({
    bench: BENCH,
    case: "catchup",
    stat: "median",
    runs: rs.length,
    pending: CATCHUP,
    size: SIZE,
    msgsPerSec: Math.round(median(rs.map((r) => r["msgsPerSec"] as number))),
    ...medianOf(rs, [
      "ms",
      "fromOpenMs",
      "primaryCpuUsPerMsg",
      "backupCpuUsPerMsg",
      "peakRssMb",
      "peakAnonMb",
      "maxRssMb",
    ]),
    // The kernel's peak RSS of the backup process, the highest of the runs.
    maxRssMbWorst: worst,
    target: `backup peak RSS < ${CATCHUP_RSS_TARGET_MB} MB`,
    meetsTarget: worst < CATCHUP_RSS_TARGET_MB,
  })
}

// ---------------------------------------------------------------------------------------------
// main

await runBench(async () => {
  printLine({
    bench: BENCH,
    config: {
      n: N,
      size: SIZE,
      runs: RUNS,
      warmup: WARMUP,
      publishBatch: PUBLISH_BATCH,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      kills: KILLS,
      stream: { batch: STREAM_BATCH, pauseMs: STREAM_PAUSE_MS },
      catchup: CATCHUP,
      catchupRuns: CATCHUP_RUNS,
    },
    cases: CASES ?? "all",
    node: process.version,
  })
  await throughput()
  for (const spec of FAILOVERS) if (wanted(spec.name)) await failover(spec)
  await catchups()
}, 1_800_000)
