/**
 * zeromq-pirate against what users would pick instead, on one durable work queue of N messages
 * of SIZE bytes with 2 worker processes that ack at once (prefetch / concurrency 64 each), every
 * system configured not to lose an acknowledged publication, in three phases:
 *
 *   publish-only  no consumer connected: the producer publishes N messages, PUBLISH_BATCH (1000)
 *                 at a time, each batch awaited (confirmed) before the next; first publication →
 *                 last confirmation
 *   drain         consumers start on the backlog publish-only left (zeromq-pirate: that sender
 *                 is closed, a restarted sender opens the same journal and 2 workers connect;
 *                 a peer: 2 consumers on the existing queue); consumer start → last ack
 *   end-to-end    consumers first, then N publications (≤ OUTSTANDING unconfirmed); first
 *                 publication → last ack
 *
 * Each system runs in every round, in turn (the order rotates), so the ratios come from one run on
 * one machine.
 *
 *   bash bench/peers/setup.sh              # installs + starts RabbitMQ, NATS, Redis on 127.0.0.1
 *   npx tsx bench/peers/work-queue.ts      # docs/benchmarks.md explains every case and field
 *   bash bench/peers/stop.sh
 *
 * env: N (50000), SIZE (256, at least 8), RUNS (5: each case runs once in every round, the order
 *      rotating), WARMUP (5000 messages per case, once), PHASES (comma-separated: publish-only,
 *      drain, end-to-end; default all; drain needs publish-only), PUBLISH_BATCH (1000: publications
 *      awaited together in publish-only), PREFETCH (64: per worker), OUTSTANDING (1000:
 *      end-to-end publications awaiting their confirmation at most, for every system), BULK (100:
 *      jobs per BullMQ addBulk), SYSTEMS (comma-separated case names or groups: pirate, rabbitmq,
 *      nats, bullmq; default all; "rabbitmq-quorum" adds a quorum-queue case), WINDOW (the
 *      zeromq-pirate senders' `window`; default: the library's), PEERS_DIR
 *      (/tmp/zeromq-pirate-peers: where setup.sh keeps the servers' pid files, read for their CPU
 *      time), BENCH_QUICK=1 (N 5000, RUNS 1, WARMUP 3000).
 *
 * Cases:
 *   zeromq-pirate-os / -fsync  Sender (this process) with a LevelJournal in a fresh temp dir,
 *                              durability "os" / "fsync"; 2 Worker processes. publish-only and
 *                              drain and end-to-end: with the default codec (msgpack) and with
 *                              codec "raw"
 *   zeromq-pirate-memory       publish-only and drain only: the same with durability "memory"
 *                              (send() resolves at once, the journal is written behind it)
 *   rabbitmq                   durable classic queue, persistent messages, a ConfirmChannel
 *                              (publish resolves on the broker's confirm), consumers with
 *                              manual ack and prefetch 64 each
 *   nats-jetstream             stream with file storage and work-queue retention, a durable pull
 *                              consumer with AckExplicit and max ack pending 2 × 64, each worker
 *                              pulling 64 at a time, publish resolves on the PubAck
 *   bullmq                     Redis with appendonly yes + appendfsync everysec; Queue.addBulk of
 *                              BULK jobs (removeOnComplete), 2 Worker processes, concurrency 64
 *
 * Prints JSON lines: a config line, one line per phase per case per run (`skipped: true` for a
 * system whose server does not answer), one `summary: true` line per phase and case (medians; for
 * zeromq-pirate the ratio to the best peer of that phase, `vsBestPeer`, and the phase's target;
 * for a peer, the ratios zeromq-pirate ÷ peer), then a Markdown table. Exits 1 when a case
 * failed. Loopback only; every wait is bounded; every child process is killed at the end.
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
const PUBLISH_BATCH = envInt("PUBLISH_BATCH", 1_000)
const WINDOW = process.env["WINDOW"] ? envInt("WINDOW", 1) : undefined
const WORKERS = 2
const PEERS_DIR = process.env["PEERS_DIR"] ?? "/tmp/zeromq-pirate-peers"
const SELECTED = (process.env["SYSTEMS"] ?? "pirate,rabbitmq,nats,bullmq")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "")
const PHASE_NAMES = ["publish-only", "drain", "end-to-end"] as const
type Phase = (typeof PHASE_NAMES)[number]
const PHASES = (process.env["PHASES"] ?? PHASE_NAMES.join(","))
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "")
for (const p of PHASES)
  if (!(PHASE_NAMES as readonly string[]).includes(p))
    throw new RangeError(`PHASES: unknown phase ${p}; known: ${PHASE_NAMES.join(", ")}`)
if (PHASES.includes("drain") && !PHASES.includes("publish-only"))
  throw new RangeError("PHASES: drain consumes what publish-only left: select publish-only too")
/** Targets of the issue: zeromq-pirate's median ÷ the best peer's median, at least. */
const TARGETS: Partial<Record<Phase, number>> = { "publish-only": 5, drain: 2 }
/** End to end, by zeromq-pirate case: ≥ this many times the best peer, with either codec. */
const E2E_TARGETS: Partial<Record<string, number>> = {
  "zeromq-pirate-os": 4,
  "zeromq-pirate-fsync": 3.5,
}
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
type CodecName = "msgpack" | "raw"

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
  /** Figures of the publisher after publish-only (zeromq-pirate: its backlog on disk). */
  figures?(): Record<string, number>
  /**
   * Between publish-only and drain: stops the publisher and starts the consuming side again on
   * the same data (zeromq-pirate: closes the sender, keeping its journal, then opens a new one on
   * it, timed as part of the drain); resolves with the new target.
   */
  restart?(): Promise<{ target: string; openMs: number; closeMs: number }>
  /** Deletes the queue (stream, keys, journal) of the run. */
  close(): Promise<void>
}

interface Case {
  name: string
  /** The group SYSTEMS selects it by, and the worker fixture it uses. */
  fixture: Fixture
  /** zeromq-pirate: the codec of its sender and workers. */
  codec?: CodecName
  /** The phases it runs in. */
  phases: readonly Phase[]
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
  phase: Phase
  case: string
  run: number
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

const PEER_PHASES: readonly Phase[] = PHASE_NAMES

const PIRATE_DURABILITY = {
  memory:
    'LevelJournal, durability "memory" (send() resolves at once; written to the OS behind it)',
  os: 'LevelJournal, durability "os" (written to the OS, no fsync)',
  fsync: 'LevelJournal, durability "fsync" (fdatasync before send() resolves)',
} as const

function pirateCase(
  durability: "memory" | "os" | "fsync",
  codec: CodecName,
  phases: readonly Phase[],
): Case {
  return {
    name: `zeromq-pirate-${durability}`,
    fixture: "pirate",
    codec,
    phases,
    sync: durability === "fsync",
    durability: PIRATE_DURABILITY[durability],
    async open() {
      const dir = await mkdtemp(join(tmpdir(), "pirate-bench-peers-"))
      const openSender = (): Promise<Pirate.Sender> =>
        Sender.open({
          bind: `tcp://${HOST}:*`,
          codec,
          durability,
          journal: dir,
          ...(WINDOW !== undefined ? { window: WINDOW } : {}),
        })
      let s: Pirate.Sender
      try {
        s = await openSender()
      } catch (err) {
        await rm(dir, { recursive: true, force: true })
        throw err
      }
      return {
        target: s.endpoint,
        batch: 1,
        publish: (i) => s.send(body(i)),
        async settle(ms) {
          await s.drained({ signal: AbortSignal.timeout(ms) })
        },
        figures() {
          const stats = s.stats()
          return { backlog: stats.backlog }
        },
        async restart() {
          const t0 = performance.now()
          await s.close()
          const t1 = performance.now()
          s = await openSender()
          return {
            target: s.endpoint,
            closeMs: round(t1 - t0, 1),
            openMs: round(performance.now() - t1, 1),
          }
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
    phases: PEER_PHASES,
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
    phases: PEER_PHASES,
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
    phases: PEER_PHASES,
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
  // end-to-end: codec "raw" (as it always ran) and the default codec
  pirateCase("os", "raw", ["end-to-end"]),
  pirateCase("fsync", "raw", ["end-to-end"]),
  pirateCase("os", "msgpack", ["end-to-end"]),
  pirateCase("fsync", "msgpack", ["end-to-end"]),
  // store and forward: the default codec, and "raw"
  ...(["os", "fsync", "memory"] as const).flatMap((d) =>
    (["msgpack", "raw"] as const).map((codec) => pirateCase(d, codec, ["publish-only", "drain"])),
  ),
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

/** CPU time per message (µs) of the benchmark's process, the workers and the server. */
function cpuFigures(
  n: number,
  publisherUs: number,
  workerUs: number | undefined,
  serverUs: number | undefined,
): Record<string, number> {
  const perMsg = (us: number): number => round(us / n, 2)
  return {
    cpuUsPerMsg: perMsg(publisherUs),
    ...(workerUs !== undefined ? { workerCpuUsPerMsg: perMsg(workerUs) } : {}),
    ...(serverUs !== undefined ? { serverCpuUsPerMsg: perMsg(serverUs) } : {}),
    totalCpuUsPerMsg: perMsg(publisherUs + (workerUs ?? 0) + (serverUs ?? 0)),
  }
}

function cpuSince(cpu0: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(cpu0)
  return used.user + used.system
}

function serverCpuSince(c: Case, server0: number | undefined): number | undefined {
  const server1 = serverCpuUs(c.pidFile)
  return server0 !== undefined && server1 !== undefined ? server1 - server0 : undefined
}

/** Starts every worker on `target` and resolves once all of them consume. */
async function startWorkers(workers: Child[], c: Case, target: string): Promise<void> {
  await Promise.all(
    workers.map((w) => {
      const ready = w.next((m) => m.type === "consuming", SPAWN_MS, `${c.name} consuming`)
      w.send({ type: "start", target, ...(c.codec !== undefined ? { codec: c.codec } : {}) })
      return ready
    }),
  )
}

async function stopWorkers(workers: Child[]): Promise<Stopped[]> {
  return Promise.all(workers.map((w) => ask<Stopped>(w, "stop", "stopped", 30_000)))
}

/** Publishes `n` messages PUBLISH_BATCH at a time, each batch confirmed before the next. */
async function publishInBatches(session: Session, n: number, deadline: number): Promise<void> {
  for (let i = 0; i < n;) {
    const end = Math.min(n, i + PUBLISH_BATCH)
    const confirmations: Promise<unknown>[] = []
    for (; i < end;) {
      const k = Math.min(session.batch, end - i)
      confirmations.push(session.publish(i, k))
      i += k
    }
    await Promise.all(confirmations)
    if (performance.now() > deadline) throw new Error("publishing took longer than the run's limit")
  }
}

/**
 * publish-only (no consumer), then, when PHASES has it, drain: the consumers start on the backlog
 * publish-only left. Returns one result per phase.
 */
async function publishAndDrain(c: Case, n: number, run: number): Promise<Result[]> {
  const session = await c.open()
  const results: Result[] = []
  const common = {
    case: c.name,
    ...(c.codec !== undefined ? { codec: c.codec } : {}),
    run,
    n,
    size: SIZE,
    sync: c.sync,
  }
  let workers: Child[] = []
  let consuming = false
  try {
    let server0 = serverCpuUs(c.pidFile)
    let cpu0 = process.cpuUsage()
    let deadline = performance.now() + RUN_MS
    const t0 = now()
    await withTimeout(
      publishInBatches(session, n, deadline),
      RUN_MS,
      `${c.name}: ${n} publications`,
    )
    const ms = now() - t0
    results.push({
      phase: "publish-only",
      ...common,
      batch: PUBLISH_BATCH,
      ms: round(ms, 1),
      msgsPerSec: Math.round((n * 1000) / ms),
      ...(session.figures?.() ?? {}),
      ...cpuFigures(n, cpuSince(cpu0), undefined, serverCpuSince(c, server0)),
    })
    if (!PHASES.includes("drain")) return results

    workers = await workersOf(c.fixture)
    server0 = serverCpuUs(c.pidFile)
    deadline = performance.now() + RUN_MS
    cpu0 = process.cpuUsage()
    // zeromq-pirate: the sender is closed first, untimed (restart() reports how long it took).
    const restarted = await session.restart?.()
    const d0 = now() - (restarted?.openMs ?? 0)
    const settled = session
      .settle?.(Math.max(1000, Math.round(deadline - performance.now())))
      .then(() => now())
    // Awaited below; handled now so that an early failure leaves no unhandled rejection behind.
    settled?.catch(() => undefined)
    consuming = true
    await startWorkers(workers, c, restarted?.target ?? session.target)
    const settledAt = await settled
    await awaitCount(workers, n, deadline)
    const publisherUs = cpuSince(cpu0)
    const serverUs = serverCpuSince(c, server0)
    consuming = false
    const stops = await stopWorkers(workers)
    const delivered = stops.reduce((a, s) => a + s.count, 0)
    const lastAck = Math.max(...stops.map((s) => s.lastAt))
    // As in end-to-end: for a peer, the last ack a worker sent; for zeromq-pirate, drained().
    const dms = (settledAt ?? lastAck) - d0
    results.push({
      phase: "drain",
      ...common,
      workers: WORKERS,
      prefetch: PREFETCH,
      ms: round(dms, 1),
      ...(restarted !== undefined
        ? { openMs: restarted.openMs, closeBeforeMs: restarted.closeMs }
        : {}),
      lastAckMs: round(lastAck - d0, 1),
      msgsPerSec: Math.round((n * 1000) / dms),
      delivered,
      ...cpuFigures(
        n,
        publisherUs,
        stops.reduce((a, s) => a + s.cpuUs, 0),
        serverUs,
      ),
    })
    return results
  } finally {
    if (consuming)
      await Promise.allSettled(workers.map((w) => ask<Stopped>(w, "stop", "stopped", 30_000)))
    await withTimeout(session.close(), 60_000, `${c.name}: cleanup`)
  }
}

/** Consumers first, then `n` publications (≤ OUTSTANDING unconfirmed), to the last ack. */
async function endToEnd(c: Case, n: number, run: number): Promise<Result> {
  const workers = await workersOf(c.fixture)
  const session = await c.open()
  let consuming = false
  try {
    consuming = true
    await startWorkers(workers, c, session.target)
    const server0 = serverCpuUs(c.pidFile)
    const cpu0 = process.cpuUsage()
    const deadline = performance.now() + RUN_MS
    const t0 = now()
    await withTimeout(pump(session, n, deadline), RUN_MS, `${c.name}: ${n} publications`)
    const published = now()
    await session.settle?.(Math.max(1000, Math.round(deadline - performance.now())))
    const settled = now()
    await awaitCount(workers, n, deadline)
    const publisherUs = cpuSince(cpu0)
    const serverUs = serverCpuSince(c, server0)
    consuming = false
    const stops = await stopWorkers(workers)
    const delivered = stops.reduce((a, s) => a + s.count, 0)
    const lastAck = Math.max(...stops.map((s) => s.lastAt))
    // The end: for a peer, the last ack sent by a worker (after every confirmation); for
    // zeromq-pirate, the sender's drained() (every ack back at the sender and off its journal).
    const end = session.settle ? settled : Math.max(published, lastAck)
    const ms = end - t0
    const latency = stops.flatMap((s) => s.latencyUs).sort((a, b) => a - b)
    return {
      phase: "end-to-end",
      case: c.name,
      ...(c.codec !== undefined ? { codec: c.codec } : {}),
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
      ...cpuFigures(
        n,
        publisherUs,
        stops.reduce((a, s) => a + s.cpuUs, 0),
        serverUs,
      ),
    }
  } finally {
    if (consuming)
      await Promise.allSettled(workers.map((w) => ask<Stopped>(w, "stop", "stopped", 30_000)))
    await withTimeout(session.close(), 60_000, `${c.name}: cleanup`)
  }
}

// ---------------------------------------------------------------------------------------------
// main

/** A case in the output and in the maps: its name, and the codec for zeromq-pirate. */
function label(c: Case): string {
  return c.codec !== undefined ? `${c.name} (${c.codec})` : c.name
}

/** One case's results of one phase. */
function keyOf(phase: Phase, c: Case): string {
  return `${phase}: ${label(c)}`
}

async function main(): Promise<number> {
  const probed = await probePeers()
  const cases: Case[] = []
  for (const c of ALL_CASES.filter(selected)) {
    if (!c.phases.some((p) => PHASES.includes(p))) continue
    const peer = probed.find((p) => p.name === c.fixture)
    if (peer && !peer.up) {
      const reason = `${peer.server} does not answer on ${HOST}:${peer.port}: ${SETUP_HINT}`
      process.stderr.write(`peers: skipping ${label(c)}: ${reason}\n`)
      printLine({ bench: BENCH, case: c.name, skipped: true, reason })
      continue
    }
    cases.push(c)
  }
  const stored = PHASES.includes("publish-only")
    ? cases.filter((c) => c.phases.includes("publish-only"))
    : []
  const e2e = PHASES.includes("end-to-end")
    ? cases.filter((c) => c.phases.includes("end-to-end"))
    : []
  printLine({
    bench: BENCH,
    config: true,
    phases: PHASES,
    n: N,
    size: SIZE,
    runs: RUNS,
    warmup: WARMUP,
    workers: WORKERS,
    prefetch: PREFETCH,
    publishBatch: PUBLISH_BATCH,
    outstanding: OUTSTANDING,
    bulk: BULK,
    ...(WINDOW !== undefined ? { window: WINDOW } : {}),
    cases: [...new Set(cases.map(label))],
    quick: QUICK,
    node: process.version,
  })

  /** Failed units (a case's publish-only + drain, or its end-to-end), not run again. */
  const failed = new Map<string, string>()
  const fail = (unit: string, run: number | "warmup", err: unknown): void => {
    const message = err instanceof Error ? err.message : String(err)
    failed.set(unit, message)
    process.stderr.write(`peers: ${unit} failed (run ${run}): ${message}\n`)
    printLine({ bench: BENCH, case: unit, run, error: message })
  }
  const connected = new Set<Case>()
  for (const c of cases) {
    try {
      await withTimeout(c.connect?.() ?? Promise.resolve(), 30_000, `${c.name}: connect`)
      connected.add(c)
      await workersOf(c.fixture)
    } catch (err) {
      fail(`${PHASES.join("+")}: ${label(c)}`, "warmup", err)
    }
  }
  const storedUnit = (c: Case): string =>
    PHASES.includes("drain")
      ? keyOf("publish-only", c).replace(":", " + drain:")
      : keyOf("publish-only", c)
  for (const c of stored) {
    if (!connected.has(c)) continue
    await publishAndDrain(c, WARMUP, 0).catch((err: unknown) => fail(storedUnit(c), "warmup", err))
  }
  for (const c of e2e) {
    if (!connected.has(c)) continue
    await endToEnd(c, WARMUP, 0).catch((err: unknown) =>
      fail(keyOf("end-to-end", c), "warmup", err),
    )
  }

  const results = new Map<string, Result[]>()
  const keep = (c: Case, r: Result): void => {
    const key = keyOf(r.phase, c)
    results.set(key, [...(results.get(key) ?? []), r])
    printLine({ bench: BENCH, ...r })
  }
  for (let run = 1; run <= RUNS; run++) {
    // Every case once per round, starting with another one each round.
    for (let k = 0; k < stored.length; k++) {
      const c = stored[(run - 1 + k) % stored.length] as Case
      if (!connected.has(c) || failed.has(storedUnit(c))) continue
      try {
        for (const r of await publishAndDrain(c, N, run)) keep(c, r)
      } catch (err) {
        fail(storedUnit(c), run, err)
      }
    }
    for (let k = 0; k < e2e.length; k++) {
      const c = e2e[(run - 1 + k) % e2e.length] as Case
      if (!connected.has(c) || failed.has(keyOf("end-to-end", c))) continue
      try {
        keep(c, await endToEnd(c, N, run))
      } catch (err) {
        fail(keyOf("end-to-end", c), run, err)
      }
    }
  }

  summarize([...new Set([...stored, ...e2e])], results, failed)
  await Promise.allSettled(
    cases.map((c) => withTimeout(c.disconnect?.() ?? Promise.resolve(), 10_000, "disconnect")),
  )
  return failed.size > 0 ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// summary

/** The end-to-end zeromq-pirate cases every peer is compared with, and their fields. */
const PIRATE_E2E = [
  ["zeromq-pirate-os", "pirateOs"],
  ["zeromq-pirate-fsync", "pirateFsync"],
] as const

function summarize(
  cases: Case[],
  results: Map<string, Result[]>,
  failed: Map<string, string>,
): void {
  const summaries: Record<string, unknown>[] = []
  for (const phase of PHASE_NAMES) {
    if (!PHASES.includes(phase)) continue
    // zeromq-pirate first, then the peers.
    const inPhase = cases
      .filter((c) => c.phases.includes(phase) && (results.get(keyOf(phase, c)) ?? []).length > 0)
      .sort((a, b) => Number(a.fixture !== "pirate") - Number(b.fixture !== "pirate"))
    const rs = (c: Case): Result[] => results.get(keyOf(phase, c)) ?? []
    const rate = (c: Case): number => median(rs(c).map((r) => r.msgsPerSec))
    const peers = inPhase.filter((c) => c.fixture !== "pirate")
    const best = peers.reduce<Case | undefined>(
      (b, c) => (b === undefined || rate(c) > rate(b) ? c : b),
      undefined,
    )
    /** The best peer's rate in each round (the peers that ran in it). */
    const bestOfRound = new Map<number, number>()
    for (const c of peers)
      for (const r of rs(c))
        bestOfRound.set(r.run, Math.max(bestOfRound.get(r.run) ?? 0, r.msgsPerSec))
    for (const c of inPhase) {
      const target = phase === "end-to-end" ? E2E_TARGETS[c.name] : TARGETS[phase]
      const mine = rate(c)
      const summary: Record<string, unknown> = {
        bench: BENCH,
        phase,
        case: c.name,
        ...(c.codec !== undefined ? { codec: c.codec } : {}),
        summary: true,
        runs: rs(c).length,
        n: N,
        size: SIZE,
        sync: c.sync,
        ...(phase === "publish-only" ? { batch: PUBLISH_BATCH } : {}),
        msgsPerSec: Math.round(mine),
        min: Math.min(...rs(c).map((r) => r.msgsPerSec)),
        max: Math.max(...rs(c).map((r) => r.msgsPerSec)),
        ...medianOf(rs(c), [
          "backlog",
          "openMs",
          "p50us",
          "p99us",
          "cpuUsPerMsg",
          "workerCpuUsPerMsg",
          "serverCpuUsPerMsg",
          "totalCpuUsPerMsg",
        ]),
        durability: c.durability,
      }
      if (c.fixture === "pirate" && best !== undefined) {
        const vs = mine / rate(best)
        const perRound: number[] = []
        for (const r of rs(c)) {
          const b = bestOfRound.get(r.run)
          if (b !== undefined && b > 0) perRound.push(r.msgsPerSec / b)
        }
        summary["bestPeer"] = best.name
        summary["bestPeerMsgsPerSec"] = Math.round(rate(best))
        summary["vsBestPeer"] = round(vs, 3)
        if (perRound.length > 0) summary["vsBestPeerRun"] = round(median(perRound), 3)
        if (target !== undefined) {
          summary["target"] = `≥ ${target}× the best peer`
          summary["meetsTarget"] = vs >= target
        }
      }
      if (c.fixture !== "pirate" && phase === "end-to-end") {
        for (const [name, key] of PIRATE_E2E) {
          const p = inPhase.find((x) => x.name === name && x.codec === "raw")
          if (p === undefined) continue
          summary[`${key}Ratio`] = round(rate(p) / mine, 3)
          // Both ran in every round, one after the other: the median of the per-round ratios.
          const perRun: number[] = []
          for (const r of rs(c)) {
            const theirs = rs(p).find((x) => x.run === r.run)
            if (theirs) perRun.push(theirs.msgsPerSec / r.msgsPerSec)
          }
          if (perRun.length > 0) summary[`${key}RunRatio`] = round(median(perRun), 3)
        }
      }
      summaries.push(summary)
      printLine(summary)
    }
  }
  process.stdout.write(`\n${table(summaries, failed)}\n`)
}

function table(summaries: Record<string, unknown>[], failed: Map<string, string>): string {
  const fmt = (v: unknown, digits = 0): string =>
    typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: digits }) : "—"
  const lines = [
    `N=${N} × ${SIZE} B, ${WORKERS} worker processes, prefetch ${PREFETCH}; publish-only: batches of ${PUBLISH_BATCH} awaited; end-to-end: ≤ ${OUTSTANDING} unconfirmed publications; medians of ${RUNS} run(s); ÷ best peer: of the medians (median of the per-round ratios)`,
    "",
    "| phase | system | msgs/s (median) | min – max | ÷ best peer | target | CPU µs/msg, all processes (server) |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: |",
  ]
  for (const s of summaries) {
    const server =
      typeof s["serverCpuUsPerMsg"] === "number" ? ` (${fmt(s["serverCpuUsPerMsg"], 1)})` : ""
    const vs =
      typeof s["vsBestPeer"] === "number"
        ? `${fmt(s["vsBestPeer"], 2)}× (${fmt(s["vsBestPeerRun"], 2)}×)`
        : "—"
    const target =
      typeof s["meetsTarget"] === "boolean"
        ? `${String(s["target"])}: ${s["meetsTarget"] ? "met" : "missed"}`
        : ""
    const system =
      typeof s["codec"] === "string" ? `${String(s["case"])} (${s["codec"]})` : String(s["case"])
    lines.push(
      `| ${String(s["phase"])} | ${system} | ${fmt(s["msgsPerSec"])} | ${fmt(s["min"])} – ${fmt(s["max"])} | ` +
        `${vs} | ${target} | ${fmt(s["totalCpuUsPerMsg"], 1)}${server} |`,
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
