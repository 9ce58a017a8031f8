/**
 * zeromq-pirate against what users would pick instead, on one durable work-queue workload:
 * N messages of SIZE bytes, 2 worker processes that ack at once (prefetch / concurrency 64 each),
 * every system configured not to lose an acknowledged publication, timed end to end from the
 * first publication to the last ack. Each system runs in every round, in turn (the order rotates),
 * so the ratios come from one run on one machine.
 *
 *   bash bench/peers/setup.sh              # installs + starts RabbitMQ, NATS, Redis on 127.0.0.1
 *   npx tsx bench/peers/work-queue.ts      # docs/benchmarks.md explains every case and field
 *   bash bench/peers/stop.sh
 *
 * env: N (50000), SIZE (256, at least 8), RUNS (5: with 5 cases, each runs once in every position
 *      of the rotating order), WARMUP (5000 messages per case, once),
 *      PREFETCH (64: per worker), OUTSTANDING (1000: publications awaiting their confirmation at
 *      most, for every system), BULK (100: jobs per BullMQ addBulk), SYSTEMS (comma-separated
 *      case names or groups: pirate, rabbitmq, nats, bullmq; default all; "rabbitmq-quorum" adds
 *      a quorum-queue case), PEERS_DIR (/tmp/zeromq-pirate-peers: where setup.sh keeps the
 *      servers' pid files, read for their CPU time), BENCH_QUICK=1 (N 5000, RUNS 1, WARMUP 3000).
 *
 * Cases:
 *   zeromq-pirate-os / -fsync  Sender (this process) with a LevelJournal in a fresh temp dir,
 *                              durability "os" / "fsync"; 2 Worker processes
 *   rabbitmq                   durable classic queue, persistent messages, a ConfirmChannel
 *                              (publish resolves on the broker's confirm), consumers with
 *                              manual ack and prefetch 64 each
 *   nats-jetstream             stream with file storage and work-queue retention, a durable pull
 *                              consumer with AckExplicit and max ack pending 2 × 64, each worker
 *                              pulling 64 at a time, publish resolves on the PubAck
 *   bullmq                     Redis with appendonly yes + appendfsync everysec; Queue.addBulk of
 *                              BULK jobs (removeOnComplete), 2 Worker processes, concurrency 64
 *
 * Prints JSON lines: a config line, one line per case per run (`skipped: true` for a system whose
 * server does not answer), one `summary: true` line per case (medians; for a peer, the ratios
 * zeromq-pirate ÷ peer), then a Markdown table. Exits 1 when a case failed. Loopback only; every
 * wait is bounded; every child process is killed at the end.
 */
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { ChannelModel, ConfirmChannel } from "amqplib"
import type { JetStreamClient, JetStreamManager, NatsConnection } from "nats"
import type * as Pirate from "../../patterns/index.js"
import { loadLibrary } from "../lib/compiled.js"
import { forkModule, killAll, sleep, withTimeout, type Child } from "../lib/children.js"
import { envInt, printLine } from "../lib/env.js"
import { median, medianOf, percentileSorted, round } from "../lib/stats.js"
import { HOST, SETUP_HINT, probePeers, redisConfig, type PeerName } from "./probe.js"

const { Sender } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 5_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 1 : 5)
// A shorter warm-up leaves the first timed run of the quick mode cold (JIT: 2–3× the CPU).
const WARMUP = envInt("WARMUP", QUICK ? 3_000 : 5_000)
const PREFETCH = envInt("PREFETCH", 64)
const OUTSTANDING = envInt("OUTSTANDING", 1_000)
const BULK = envInt("BULK", 100)
const WORKERS = 2
const PEERS_DIR = process.env["PEERS_DIR"] ?? "/tmp/zeromq-pirate-peers"
const SELECTED = (process.env["SYSTEMS"] ?? "pirate,rabbitmq,nats,bullmq")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "")
/** One run's limit: generous (a broker may manage a few thousand messages a second here). */
const RUN_MS = Math.max(120_000, N * 3)
const SPAWN_MS = 60_000
/** How often the workers' counts are polled while a run waits for its last ack. */
const POLL_MS = 5
/** Distinct random payloads cycled through (incompressible, as in bench/journal.ts). */
const POOL = 1024
const BENCH = "peers"

if (SIZE < 8) throw new RangeError("SIZE must be at least 8 (a message carries its 8-byte stamp)")

type Fixture = "pirate" | PeerName

/** One run's queue (stream, sender…): what the workers consume, how to publish into it. */
interface Session {
  /** What the workers' `start` gets: an endpoint, a queue or a stream name. */
  target: string
  /** Messages per publish call (BullMQ adds in bulk). */
  batch: number
  /** Publishes messages `first` … `first + count - 1`; resolves once they are confirmed durable. */
  publish(first: number, count: number): Promise<unknown>
  /** After the last confirmation: waits until everything is acked where the publisher sees it. */
  settle?(ms: number): Promise<void>
  /** Deletes the queue (stream, keys, journal) of the run. */
  close(): Promise<void>
}

interface Case {
  name: string
  /** The group SYSTEMS selects it by, and the worker fixture it uses. */
  fixture: Fixture
  /** What a confirmed publication survives, as configured here. */
  durability: string
  /** Whether a publication is synced to the disk before it is confirmed. */
  sync: boolean
  /** The server's pid file in PEERS_DIR (its CPU time is read from /proc). */
  pidFile?: string
  /** Connects the publisher side once. */
  connect?(): Promise<void>
  disconnect?(): Promise<void>
  open(): Promise<Session>
}

interface Result {
  case: string
  msgsPerSec: number
  [key: string]: unknown
}

// ---------------------------------------------------------------------------------------------
// messages: SIZE bytes, the first 8 a little-endian double, the epoch-ms time of publication

const pool = Array.from({ length: POOL }, () => randomBytes(SIZE))
/** BullMQ's data is JSON: SIZE characters of random base64 instead of bytes. */
const textPool = pool.map((b) => b.toString("base64").slice(0, SIZE))

function now(): number {
  return performance.timeOrigin + performance.now()
}

function body(i: number): Buffer {
  const b = Buffer.allocUnsafe(SIZE)
  ;(pool[i % POOL] as Buffer).copy(b)
  b.writeDoubleLE(now(), 0)
  return b
}

let serial = 0
/** A name unique to this process and run. */
function unique(prefix: string, sep: string): string {
  return `${prefix}${sep}${process.pid}${sep}${++serial}`
}

// ---------------------------------------------------------------------------------------------
// the systems

function pirateCase(durability: "os" | "fsync"): Case {
  return {
    name: `zeromq-pirate-${durability}`,
    fixture: "pirate",
    sync: durability === "fsync",
    durability:
      durability === "os"
        ? 'LevelJournal, durability "os" (written to the OS, no fsync)'
        : 'LevelJournal, durability "fsync" (fdatasync before send() resolves)',
    async open() {
      const dir = await mkdtemp(join(tmpdir(), "pirate-bench-peers-"))
      let sender: Pirate.Sender | undefined
      try {
        sender = await Sender.open({
          bind: `tcp://${HOST}:*`,
          codec: "raw",
          durability,
          journal: dir,
        })
      } catch (err) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
      const s = sender
      return {
        target: s.endpoint,
        batch: 1,
        publish: (i) => s.send(body(i)),
        async settle(ms) {
          await s.drained({ signal: AbortSignal.timeout(ms) })
        },
        async close() {
          await s.close()
          await rm(dir, { recursive: true, force: true })
        },
      }
    },
  }
}

function rabbitmqCase(queueType: "classic" | "quorum"): Case {
  let connection: ChannelModel | undefined
  let channel: ConfirmChannel | undefined
  return {
    name: queueType === "classic" ? "rabbitmq" : "rabbitmq-quorum",
    fixture: "rabbitmq",
    sync: true,
    durability:
      queueType === "classic"
        ? "durable classic queue, persistent messages, publisher confirms (a message is confirmed once synced to disk, or once consumed and acked)"
        : "durable quorum queue, publisher confirms (confirmed once in the Raft log, synced to disk)",
    pidFile: "rabbitmq.pid",
    async connect() {
      const amqp = await import("amqplib")
      const conn = await amqp.connect(`amqp://guest:guest@${HOST}:5672`)
      conn.on("error", (err: Error) => process.stderr.write(`rabbitmq: ${err.message}\n`))
      connection = conn
      channel = await conn.createConfirmChannel()
    },
    async disconnect() {
      await connection?.close()
    },
    async open() {
      const ch = channel
      if (ch === undefined) throw new Error("rabbitmq: not connected")
      const queue = unique("pirate-bench", "-")
      await ch.assertQueue(queue, {
        durable: true,
        ...(queueType === "quorum" ? { arguments: { "x-queue-type": "quorum" } } : {}),
      })
      return {
        target: queue,
        batch: 1,
        publish: (i) =>
          new Promise<void>((resolve, reject) => {
            ch.publish("", queue, body(i), { persistent: true }, (err) =>
              err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
            )
          }),
        async close() {
          await ch.deleteQueue(queue)
        },
      }
    },
  }
}

function natsCase(): Case {
  let nc: NatsConnection | undefined
  let jsm: JetStreamManager | undefined
  let js: JetStreamClient | undefined
  return {
    name: "nats-jetstream",
    fixture: "nats",
    sync: false,
    durability:
      "stream with file storage (written to the OS on store; nats-server 2.9 syncs its files periodically)",
    pidFile: "nats.pid",
    async connect() {
      const nats = await import("nats")
      nc = await nats.connect({ servers: `${HOST}:4222` })
      jsm = await nc.jetstreamManager()
      js = nc.jetstream()
    },
    async disconnect() {
      await nc?.close()
    },
    async open() {
      const { AckPolicy, RetentionPolicy, StorageType, nanos } = await import("nats")
      if (jsm === undefined || js === undefined) throw new Error("nats: not connected")
      const manager = jsm
      const client = js
      const stream = unique("PIRATE_BENCH", "_")
      const subject = stream.toLowerCase().replaceAll("_", ".")
      await manager.streams.add({
        name: stream,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Workqueue,
        num_replicas: 1,
      })
      await manager.consumers.add(stream, {
        durable_name: "workers",
        ack_policy: AckPolicy.Explicit,
        max_ack_pending: PREFETCH * WORKERS,
        ack_wait: nanos(60_000),
      })
      return {
        target: stream,
        batch: 1,
        publish: (i) => client.publish(subject, body(i)),
        async close() {
          await manager.streams.delete(stream)
        },
      }
    },
  }
}

function bullmqCase(): Case {
  return {
    name: "bullmq",
    fixture: "bullmq",
    sync: false,
    durability: "Redis AOF, appendfsync everysec (written to the OS at once, synced every second)",
    pidFile: "redis.pid",
    async connect() {
      // The comparison assumes AOF with fsync every second: say so when this Redis differs.
      const aof = `appendonly ${await redisConfig("appendonly")}, appendfsync ${await redisConfig("appendfsync")}`
      if (aof !== "appendonly yes, appendfsync everysec")
        process.stderr.write(`peers: warning: the Redis on ${HOST}:6379 has ${aof}\n`)
    },
    async open() {
      const { Queue } = await import("bullmq")
      const name = unique("pirate-bench", "-")
      const queue = new Queue<{ t: number; p: string }>(name, {
        connection: { host: HOST, port: 6379 },
      })
      await queue.waitUntilReady()
      return {
        target: name,
        batch: BULK,
        publish: (first, count) => {
          const t = now()
          return queue.addBulk(
            Array.from({ length: count }, (_, k) => ({
              name: "job",
              data: { t, p: textPool[(first + k) % POOL] as string },
              opts: { removeOnComplete: true },
            })),
          )
        },
        async close() {
          try {
            await queue.obliterate({ force: true })
          } finally {
            await queue.close()
          }
        },
      }
    },
  }
}

const ALL_CASES: Case[] = [
  pirateCase("os"),
  pirateCase("fsync"),
  rabbitmqCase("classic"),
  rabbitmqCase("quorum"),
  natsCase(),
  bullmqCase(),
]

function selected(c: Case): boolean {
  if (SELECTED.includes(c.name)) return true
  // A group selects its cases except the optional quorum one.
  return SELECTED.includes(c.fixture) && c.name !== "rabbitmq-quorum"
}

// ---------------------------------------------------------------------------------------------
// workers

const workerPools = new Map<Fixture, Child[]>()

async function workersOf(fixture: Fixture): Promise<Child[]> {
  const existing = workerPools.get(fixture)
  if (existing) return existing
  const options = JSON.stringify({ prefetch: PREFETCH, concurrency: PREFETCH })
  const workers = Array.from({ length: WORKERS }, () =>
    forkModule(new URL("./fixtures/consumer.ts", import.meta.url), [fixture, options]),
  )
  workerPools.set(fixture, workers)
  for (const w of workers)
    w.process.on("message", (m: { type: string; message?: string }) => {
      if (m.type === "error")
        process.stderr.write(`${fixture} worker ${w.pid}: ${m.message ?? "?"}\n`)
    })
  await Promise.all(
    workers.map((w) => w.next((m) => m.type === "started", SPAWN_MS, `${fixture} worker started`)),
  )
  return workers
}

interface Stopped {
  type: "stopped"
  count: number
  lastAt: number
  cpuUs: number
  latencyUs: number[]
}

/** Sends `{ type: command }`; resolves with the next message of type `answer`. */
async function ask<T extends { type: string }>(
  w: Child,
  command: string,
  answer: string,
  ms: number,
): Promise<T> {
  const reply = w.next<T>((m) => m.type === answer, ms, `"${answer}"`)
  w.send({ type: command })
  return reply
}

/** Polls the workers until together they acked `n` messages; bounded by `deadline`. */
async function awaitCount(workers: Child[], n: number, deadline: number): Promise<void> {
  for (;;) {
    const counts = await Promise.all(
      workers.map((w) => ask<{ type: string; count: number }>(w, "count", "count", 5_000)),
    )
    const total = counts.reduce((a, c) => a + c.count, 0)
    if (total >= n) return
    if (performance.now() > deadline)
      throw new Error(`the workers acked ${total} of ${n} messages within the run's time limit`)
    await sleep(POLL_MS)
  }
}

// ---------------------------------------------------------------------------------------------
// one run

/** Keeps at most OUTSTANDING messages awaiting their confirmation; rejects on the first failure. */
async function pump(session: Session, n: number, deadline: number): Promise<void> {
  let inflight = 0
  let failure: Error | undefined
  let wake: (() => void) | undefined
  const settled = (k: number): void => {
    inflight -= k
    const w = wake
    wake = undefined
    w?.()
  }
  const waitForRoom = async (): Promise<void> => {
    if (performance.now() > deadline) throw new Error("publishing took longer than the run's limit")
    await new Promise<void>((resolve) => {
      wake = resolve
    })
  }
  for (let i = 0; i < n;) {
    if (failure !== undefined) throw failure
    const k = Math.min(session.batch, n - i)
    if (inflight > 0 && inflight + k > OUTSTANDING) {
      await waitForRoom()
      continue
    }
    inflight += k
    session.publish(i, k).then(
      () => settled(k),
      (err: unknown) => {
        failure ??= err instanceof Error ? err : new Error(String(err))
        settled(k)
      },
    )
    i += k
  }
  while (inflight > 0) await waitForRoom()
  if (failure !== undefined) throw failure
}

/** USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100 on every Linux this runs on. */
const USER_HZ = 100
/** CPU time (µs, user + system) of the server in PEERS_DIR/`pidFile`; undefined if unknown. */
function serverCpuUs(pidFile: string | undefined): number | undefined {
  if (pidFile === undefined) return undefined
  try {
    const pid = readFileSync(join(PEERS_DIR, pidFile), "utf8").trim()
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / USER_HZ
  } catch {
    return undefined
  }
}

async function runOnce(c: Case, n: number, run: number): Promise<Result> {
  const workers = await workersOf(c.fixture)
  const session = await c.open()
  let consuming = false
  try {
    await Promise.all(
      workers.map((w) => {
        const ready = w.next((m) => m.type === "consuming", SPAWN_MS, `${c.name} consuming`)
        w.send({ type: "start", target: session.target })
        return ready
      }),
    )
    consuming = true
    const server0 = serverCpuUs(c.pidFile)
    const cpu0 = process.cpuUsage()
    const deadline = performance.now() + RUN_MS
    const t0 = now()
    await withTimeout(pump(session, n, deadline), RUN_MS, `${c.name}: ${n} publications`)
    const published = now()
    await session.settle?.(Math.max(1000, Math.round(deadline - performance.now())))
    const settled = now()
    await awaitCount(workers, n, deadline)
    const cpu = process.cpuUsage(cpu0)
    const server1 = serverCpuUs(c.pidFile)
    consuming = false
    const stops = await Promise.all(workers.map((w) => ask<Stopped>(w, "stop", "stopped", 30_000)))
    const delivered = stops.reduce((a, s) => a + s.count, 0)
    const lastAck = Math.max(...stops.map((s) => s.lastAt))
    // The end: for a peer, the last ack sent by a worker (after every confirmation); for
    // zeromq-pirate, the sender's drained() (every ack back at the sender and off its journal).
    const end = session.settle ? settled : Math.max(published, lastAck)
    const ms = end - t0
    const latency = stops.flatMap((s) => s.latencyUs).sort((a, b) => a - b)
    const perMsg = (us: number): number => round(us / n, 2)
    const publisherCpu = cpu.user + cpu.system
    const workerCpu = stops.reduce((a, s) => a + s.cpuUs, 0)
    const serverCpu = server0 !== undefined && server1 !== undefined ? server1 - server0 : undefined
    return {
      case: c.name,
      run,
      n,
      size: SIZE,
      workers: WORKERS,
      prefetch: PREFETCH,
      outstanding: OUTSTANDING,
      sync: c.sync,
      ms: round(ms, 1),
      publishMs: round(published - t0, 1),
      lastAckMs: round(lastAck - t0, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      delivered,
      // Publication (stamped in the message) to handling by a worker, per message.
      p50us: percentileSorted(latency, 50),
      p99us: percentileSorted(latency, 99),
      cpuUsPerMsg: perMsg(publisherCpu),
      workerCpuUsPerMsg: perMsg(workerCpu),
      ...(serverCpu !== undefined ? { serverCpuUsPerMsg: perMsg(serverCpu) } : {}),
      totalCpuUsPerMsg: perMsg(publisherCpu + workerCpu + (serverCpu ?? 0)),
    }
  } finally {
    if (consuming)
      await Promise.allSettled(workers.map((w) => ask<Stopped>(w, "stop", "stopped", 30_000)))
    await withTimeout(session.close(), 60_000, `${c.name}: cleanup`)
  }
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<number> {
  const probed = await probePeers()
  const cases: Case[] = []
  for (const c of ALL_CASES.filter(selected)) {
    const peer = probed.find((p) => p.name === c.fixture)
    if (peer && !peer.up) {
      const reason = `${peer.server} does not answer on ${HOST}:${peer.port}: ${SETUP_HINT}`
      process.stderr.write(`peers: skipping ${c.name}: ${reason}\n`)
      printLine({ bench: BENCH, case: c.name, skipped: true, reason })
      continue
    }
    cases.push(c)
  }
  printLine({
    bench: BENCH,
    config: true,
    n: N,
    size: SIZE,
    runs: RUNS,
    warmup: WARMUP,
    workers: WORKERS,
    prefetch: PREFETCH,
    outstanding: OUTSTANDING,
    bulk: BULK,
    cases: cases.map((c) => c.name),
    quick: QUICK,
    node: process.version,
  })

  const failed = new Map<string, string>()
  const fail = (c: Case, run: number | "warmup", err: unknown): void => {
    const message = err instanceof Error ? err.message : String(err)
    failed.set(c.name, message)
    process.stderr.write(`peers: ${c.name} failed (run ${run}): ${message}\n`)
    printLine({ bench: BENCH, case: c.name, run, error: message })
  }
  for (const c of cases) {
    try {
      await withTimeout(c.connect?.() ?? Promise.resolve(), 30_000, `${c.name}: connect`)
      await workersOf(c.fixture)
      await runOnce(c, WARMUP, 0)
    } catch (err) {
      fail(c, "warmup", err)
    }
  }

  const results = new Map<string, Result[]>(cases.map((c) => [c.name, []]))
  for (let run = 1; run <= RUNS; run++) {
    // Every case once per round, starting with another one each round.
    for (let k = 0; k < cases.length; k++) {
      const c = cases[(run - 1 + k) % cases.length] as Case
      if (failed.has(c.name)) continue
      try {
        const r = await runOnce(c, N, run)
        results.get(c.name)?.push(r)
        printLine({ bench: BENCH, ...r })
      } catch (err) {
        fail(c, run, err)
      }
    }
  }

  summarize(cases, results, failed)
  await Promise.allSettled(
    cases.map((c) => withTimeout(c.disconnect?.() ?? Promise.resolve(), 10_000, "disconnect")),
  )
  return failed.size > 0 ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// summary

const PIRATE = ["zeromq-pirate-os", "zeromq-pirate-fsync"] as const

function summarize(
  cases: Case[],
  results: Map<string, Result[]>,
  failed: Map<string, string>,
): void {
  const medians = new Map<string, number>()
  for (const [name, rs] of results)
    if (rs.length > 0) medians.set(name, median(rs.map((r) => r.msgsPerSec)))
  const summaries: Record<string, unknown>[] = []
  for (const c of cases) {
    const rs = results.get(c.name) ?? []
    if (rs.length === 0) continue
    const rate = medians.get(c.name) as number
    const summary: Record<string, unknown> = {
      bench: BENCH,
      case: c.name,
      summary: true,
      runs: rs.length,
      n: N,
      size: SIZE,
      sync: c.sync,
      msgsPerSec: Math.round(rate),
      min: Math.min(...rs.map((r) => r.msgsPerSec)),
      max: Math.max(...rs.map((r) => r.msgsPerSec)),
      ...medianOf(rs, [
        "p50us",
        "p99us",
        "cpuUsPerMsg",
        "workerCpuUsPerMsg",
        "serverCpuUsPerMsg",
        "totalCpuUsPerMsg",
      ]),
      durability: c.durability,
    }
    if (c.fixture !== "pirate") {
      for (const p of PIRATE) {
        const mine = medians.get(p)
        if (mine === undefined) continue
        const key = p === "zeromq-pirate-os" ? "pirateOs" : "pirateFsync"
        summary[`${key}Ratio`] = round(mine / rate, 3)
        // Both ran in every round, one after the other: the median of the per-round ratios.
        const perRun: number[] = []
        for (const r of rs) {
          const theirs = results.get(p)?.find((x) => x["run"] === r["run"])
          if (theirs) perRun.push(theirs.msgsPerSec / r.msgsPerSec)
        }
        if (perRun.length > 0) summary[`${key}RunRatio`] = round(median(perRun), 3)
      }
    }
    summaries.push(summary)
    printLine(summary)
  }
  process.stdout.write(`\n${table(summaries, failed)}\n`)
}

function table(summaries: Record<string, unknown>[], failed: Map<string, string>): string {
  const fmt = (v: unknown, digits = 0): string =>
    typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: digits }) : "—"
  const ratio = (v: unknown, perRun: unknown): string =>
    typeof v === "number"
      ? `${fmt(v, 2)}×${typeof perRun === "number" ? ` (${fmt(perRun, 2)}×)` : ""}`
      : "—"
  const lines = [
    `N=${N} × ${SIZE} B, ${WORKERS} worker processes, prefetch ${PREFETCH}, ≤ ${OUTSTANDING} unconfirmed publications, medians of ${RUNS} run(s); ratios: of the medians (median of the per-round ratios)`,
    "",
    "| system | msgs/s (median) | min – max | zeromq-pirate os ÷ it | zeromq-pirate fsync ÷ it | CPU µs/msg, all processes (server) | p50 / p99 µs |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for (const s of summaries) {
    const server =
      typeof s["serverCpuUsPerMsg"] === "number" ? ` (${fmt(s["serverCpuUsPerMsg"], 1)})` : ""
    lines.push(
      `| ${String(s["case"])} | ${fmt(s["msgsPerSec"])} | ${fmt(s["min"])} – ${fmt(s["max"])} | ` +
        `${ratio(s["pirateOsRatio"], s["pirateOsRunRatio"])} | ` +
        `${ratio(s["pirateFsyncRatio"], s["pirateFsyncRunRatio"])} | ` +
        `${fmt(s["totalCpuUsPerMsg"], 1)}${server} | ${fmt(s["p50us"])} / ${fmt(s["p99us"])} |`,
    )
  }
  for (const [name, why] of failed)
    lines.push(`| ${name} | failed: ${why.replaceAll("|", "/")} | | | | | |`)
  return lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// helpers

const overall = setTimeout(() => {
  process.stderr.write("peers: overall time limit (60 min) reached\n")
  void killAll().finally(() => process.exit(2))
}, 60 * 60_000)
overall.unref()

let code = 1
try {
  code = await main()
} catch (err) {
  process.stderr.write(
    `peers failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  )
} finally {
  await killAll()
  clearTimeout(overall)
}
// Client sockets and timers of a failed run must not keep the process alive.
process.exit(code)
