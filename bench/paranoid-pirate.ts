/**
 * Paranoid Pirate benchmark: `npx tsx bench/paranoid-pirate.ts`
 *
 * Env: N (messages, default 50000), SIZE (payload bytes, default 256), RUNS (default 5),
 * BENCH_QUICK=1 (reduced run, < 20 s), FAILOVER_RUNS (default 10, quick 3), FAILOVER_SENDER_HB
 * (the failover sender's heartbeatInterval, default 100 like its workers), CONCURRENCY and
 * PREFETCH (of the throughput workers, default 64 and 64), CASES (comma-separated groups —
 * throughput, rtt, failover — or case names to run; default all groups), PIPELINE (sends
 * outstanding at most in the pipelined send→ack case, default 256), PRODUCER_BATCH (sends per
 * awaited batch in send-ack-batch1000 and outstanding at most in send-ack-window1000, default
 * 1000).
 *
 * Prints one JSON line per case per run, then one summary line per case (medians over the runs,
 * and the ratio to the case's raw zeromq.js baseline). docs/bench-paranoid-pirate.md explains
 * each case and records measured numbers.
 */
import { once, type EventEmitter } from "node:events"
import { Dealer } from "zeromq"
import { msgpackCodec } from "../lib/index.js"
import type * as Pirate from "../patterns/index.js"
import { loadLibrary } from "./lib/compiled.js"
import { forkFixture, runBench, withTimeout, type Child } from "./lib/children.js"
import { envInt, printLine } from "./lib/env.js"
import { latencySummaryUs, max, median, percentile, round } from "./lib/stats.js"

const { Sender, Worker } = await loadLibrary()

const QUICK = process.env["BENCH_QUICK"] === "1"
const N = envInt("N", QUICK ? 10_000 : 50_000)
const SIZE = envInt("SIZE", 256)
const RUNS = envInt("RUNS", QUICK ? 2 : 5)
const N_RT = Math.min(N, QUICK ? 1000 : 5000)
const FAILOVER_RUNS = envInt("FAILOVER_RUNS", QUICK ? 3 : 10)
const WORKERS = 2
const CONCURRENCY = envInt("CONCURRENCY", 64)
const PREFETCH = envInt("PREFETCH", CONCURRENCY)
const MULTIPART = 64
/** Sends outstanding at most in the pipelined send→ack case. */
const PIPELINE = envInt("PIPELINE", 256)
/** Producer shapes: sends per awaited batch, and sends outstanding at most in a sliding window. */
const PRODUCER_BATCH = envInt("PRODUCER_BATCH", 1000)
/** Messages a killed worker holds in the failover cases. */
const HELD = 10
/** Heartbeats of the failover cases: a hung worker is presumed dead after 3 × 100 ms. */
const FAILOVER_HB = { heartbeatInterval: 100, liveness: 3 }
/** The failover sender's own heartbeatInterval (its tick is a quarter of it): 100 unless set. */
const FAILOVER_SENDER_HB = envInt("FAILOVER_SENDER_HB", FAILOVER_HB.heartbeatInterval)
const SELECTED = new Set(
  (process.env["CASES"] ?? "throughput,rtt,failover").split(",").map((s) => s.trim()),
)
/** True when the group or the case itself was selected with CASES. */
function wanted(group: string, name?: string): boolean {
  return SELECTED.has(group) || (name !== undefined && SELECTED.has(name))
}
/** True when anything of the group was selected. */
function anyOf(group: string, names: string[]): boolean {
  return SELECTED.has(group) || names.some((n) => SELECTED.has(n))
}

/** Upper bound for any single timed phase: nothing here should take a minute. */
const PHASE_MS = 120_000
const SPAWN_MS = 30_000

interface Row {
  case: string
  run: number
  msgsPerSec: number | null
  p50us: number | null
  p99us: number | null
  [k: string]: unknown
}

const rows = new Map<string, Row[]>()

function emit(row: Row): void {
  const list = rows.get(row.case) ?? []
  list.push(row)
  rows.set(row.case, list)
  printLine({ bench: "paranoid-pirate", ...row })
}

const common = () => ({ n: N, size: SIZE, durability: "memory" })

// -------------------------------------------------------------------------------------------
// raw zeromq.js baselines

/** A raw zeromq.js fixture child (`raw-sink.ts`, `raw-echo.ts`) and the DEALER connected to it. */
interface RawPeer {
  child: Child
  dealer: Dealer
}

async function openRawPeer(fixture: string, receiveTimeout: number): Promise<RawPeer> {
  const child = forkFixture(fixture, [])
  const { endpoint } = await child.next<{ type: string; endpoint: string }>(
    (m) => m.type === "ready",
    SPAWN_MS,
    `${fixture} ready`,
  )
  const dealer = new Dealer({ linger: 0, sendTimeout: 10_000, receiveTimeout })
  dealer.connect(endpoint)
  return { child, dealer }
}

interface OneWay {
  msgsPerSec: number
  /** CPU time of this process per message (µs). */
  cpuUsPerMsg: number
  /** CPU time of the receiving child(ren) per message (µs). */
  peerCpuUsPerMsg: number
}

/** CPU time (µs, user + system) the children have used so far. */
async function childrenCpu(children: Child[]): Promise<number> {
  const answers = children.map((c) =>
    c.next<{ type: string; us: number }>((m) => m.type === "cpu", 5000, "cpu usage"),
  )
  for (const c of children) c.send({ type: "cpu" })
  return (await Promise.all(answers)).reduce((sum, m) => sum + m.us, 0)
}

function cpuNow(): number {
  const { user, system } = process.cpuUsage()
  return user + system
}

/** Sends `sends` messages of `frames` frames each, awaiting every send(); times until the sink counted them all. */
async function rawOneWay(sink: RawPeer, sends: number, frames: Buffer[]): Promise<OneWay> {
  const peer0 = await childrenCpu([sink.child])
  const cpu0 = cpuNow()
  const t0 = performance.now()
  for (let i = 0; i < sends; i++) await sink.dealer.send(frames)
  await sink.dealer.send("END")
  const [count] = await sink.dealer.receive()
  const ms = performance.now() - t0
  const cpu = cpuNow() - cpu0
  const peer = (await childrenCpu([sink.child])) - peer0
  const expected = sends * frames.length
  if (Number(count?.toString()) !== expected)
    throw new Error(`raw sink counted ${count?.toString() ?? "?"} of ${expected} frames`)
  return oneWay(expected, ms, cpu, peer)
}

function oneWay(n: number, ms: number, cpuUs: number, peerCpuUs: number): OneWay {
  return {
    msgsPerSec: Math.round((n * 1000) / ms),
    cpuUsPerMsg: round(cpuUs / n, 2),
    peerCpuUsPerMsg: round(peerCpuUs / n, 2),
  }
}

async function rawRoundTrips(
  echo: RawPeer,
  n: number,
  payload: Buffer,
): Promise<{ samples: number[]; ms: number }> {
  const samples = new Array<number>(n)
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await echo.dealer.send(payload)
    await echo.dealer.receive()
    samples[i] = performance.now() - t
  }
  return { samples, ms: performance.now() - t0 }
}

// -------------------------------------------------------------------------------------------
// Sender + Worker children

interface WorkerChildOptions {
  codec: "raw" | "msgpack"
  concurrency: number
  prefetch?: number
  mode: "ack" | "echo" | "hold"
  heartbeatInterval?: number
  liveness?: number
}

/**
 * Forks a worker child and resolves once the sender counts it as ready: the child reports
 * "ready" when it hears the sender's WELCOME, which the sender sends after registering it.
 */
async function startWorker(sender: Pirate.Sender, o: WorkerChildOptions): Promise<Child> {
  const child = forkFixture("pp-worker.ts", [sender.endpoint, JSON.stringify(o)])
  await child.next((m) => m.type === "ready", SPAWN_MS, "worker ready")
  return child
}

interface Pp {
  sender: Pirate.Sender
  workers: Child[]
}

async function openPp(
  codec: "raw" | "msgpack",
  workers: number,
  o: Omit<WorkerChildOptions, "codec">,
): Promise<Pp> {
  const sender = await Sender.open({ bind: "tcp://127.0.0.1:*", codec })
  const children = await Promise.all(
    Array.from({ length: workers }, () => startWorker(sender, { codec, ...o })),
  )
  return { sender, workers: children }
}

async function closePp(pp: Pp): Promise<void> {
  for (const w of pp.workers) w.send({ type: "close" })
  await Promise.all(
    pp.workers.map((w) =>
      withTimeout(once(w.process, "exit"), 5000, "worker exit").catch(() => w.kill()),
    ),
  )
  await pp.sender.close()
}

/** Fires `n` sends at once (the window applies backpressure) and times first send → drained(). */
async function sendAck(pp: Pp, n: number, payload: unknown): Promise<OneWay> {
  const ackedBefore = pp.sender.stats().acked
  const peer0 = await childrenCpu(pp.workers)
  const cpu0 = cpuNow()
  const t0 = performance.now()
  const sends = new Array<Promise<string>>(n)
  for (let i = 0; i < n; i++) sends[i] = pp.sender.send(payload)
  await withTimeout(Promise.all(sends), PHASE_MS, "send() of every message")
  await withTimeout(pp.sender.drained(), PHASE_MS, "drained()")
  const ms = performance.now() - t0
  const cpu = cpuNow() - cpu0
  const peer = (await childrenCpu(pp.workers)) - peer0
  const acked = pp.sender.stats().acked - ackedBefore
  if (acked !== n) throw new Error(`expected ${n} acks, got ${acked}`)
  return oneWay(n, ms, cpu, peer)
}

/**
 * Like {@link sendAck} with at most `depth` sends outstanding (`depth` lanes, each awaiting its
 * send() before the next), so that at most `depth` producers ever wait for room in the window.
 */
async function sendAckPipelined(
  pp: Pp,
  n: number,
  payload: unknown,
  depth: number,
): Promise<OneWay> {
  const ackedBefore = pp.sender.stats().acked
  const peer0 = await childrenCpu(pp.workers)
  const cpu0 = cpuNow()
  const t0 = performance.now()
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < n) {
      next++
      await pp.sender.send(payload)
    }
  }
  const lanes = Array.from({ length: Math.min(depth, n) }, lane)
  await withTimeout(Promise.all(lanes), PHASE_MS, "send() of every message")
  await withTimeout(pp.sender.drained(), PHASE_MS, "drained()")
  const ms = performance.now() - t0
  const cpu = cpuNow() - cpu0
  const peer = (await childrenCpu(pp.workers)) - peer0
  const acked = pp.sender.stats().acked - ackedBefore
  if (acked !== n) throw new Error(`expected ${n} acks, got ${acked}`)
  return oneWay(n, ms, cpu, peer)
}

/**
 * A producer that awaits each batch of `batch` sends (`await Promise.all(batch)`) before it starts
 * the next, as many applications (and the peers' harness) do; first send → drained().
 */
async function sendAckBatched(pp: Pp, n: number, payload: unknown, batch: number): Promise<OneWay> {
  const ackedBefore = pp.sender.stats().acked
  const peer0 = await childrenCpu(pp.workers)
  const cpu0 = cpuNow()
  const t0 = performance.now()
  const sends = new Array<Promise<string>>()
  for (let sent = 0; sent < n;) {
    sends.length = 0
    for (const end = Math.min(n, sent + batch); sent < end; sent++)
      sends.push(pp.sender.send(payload))
    await withTimeout(Promise.all(sends), PHASE_MS, "send() of a batch")
  }
  await withTimeout(pp.sender.drained(), PHASE_MS, "drained()")
  const ms = performance.now() - t0
  const cpu = cpuNow() - cpu0
  const peer = (await childrenCpu(pp.workers)) - peer0
  const acked = pp.sender.stats().acked - ackedBefore
  if (acked !== n) throw new Error(`expected ${n} acks, got ${acked}`)
  return oneWay(n, ms, cpu, peer)
}

async function requestRoundTrips(
  sender: Pirate.Sender,
  n: number,
  payload: Buffer,
): Promise<{ samples: number[]; ms: number }> {
  const samples = new Array<number>(n)
  const deadline = performance.now() + PHASE_MS
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    await sender.request(payload)
    samples[i] = performance.now() - t
    if (t > deadline) throw new Error("request() round trips took longer than the phase limit")
  }
  return { samples, ms: performance.now() - t0 }
}

/** A msgpack object payload that encodes to about `size` bytes. */
function objectPayload(size: number): { seq: number; task: string; file: string } {
  // map(3) 1 + "seq" 4 + uint32 5 + "task" 5 + "resize" 7 + "file" 5 + str header (2–3) + body
  const fixed = 1 + 4 + 5 + 5 + 7 + 5 + (size > 255 + 30 ? 3 : 2)
  return { seq: 123_456_789, task: "resize", file: "x".repeat(Math.max(0, size - fixed)) }
}

/**
 * A structured msgpack payload of 10 fields, as most applications send, padded (its `note`) to
 * encode to about `size` bytes.
 */
function structuredPayload(size: number): Record<string, unknown> {
  const fields = {
    id: 123_456_789,
    type: "image.resize",
    user: "user-4711@example.com",
    width: 1920,
    height: 1080,
    quality: 0.85,
    tags: ["thumbnail", "webp", "retina"],
    createdAt: 1_765_000_000_000,
    source: "s3://media-uploads/2026/12/07/IMG_4711.jpg",
    note: "",
  }
  // The note's str header grows (1, 2, 3 bytes) with it: shorten it until the whole fits.
  let pad = size - msgpackCodec.encode(fields).length
  const padded = (): Record<string, unknown> => ({ ...fields, note: "n".repeat(Math.max(0, pad)) })
  while (pad > 0 && msgpackCodec.encode(padded()).length > size) pad--
  return padded()
}

// -------------------------------------------------------------------------------------------
// cases

/** A send→ack case of the msgpack (default codec) sender. */
interface PackCase {
  name: string
  payload: unknown
  run: (pp: Pp, n: number) => Promise<OneWay>
  /** Fields added to each row. */
  extra?: Record<string, unknown>
}

/** `cases` with the batch and window producer shapes in each other's place. */
function swapShapes(cases: PackCase[]): PackCase[] {
  const out = [...cases]
  const b = out.findIndex((c) => c.name.startsWith("send-ack-batch"))
  const w = out.findIndex((c) => c.name.startsWith("send-ack-window"))
  if (b >= 0 && w >= 0) [out[b], out[w]] = [out[w] as PackCase, out[b] as PackCase]
  return out
}

async function throughput(): Promise<void> {
  const payload = Buffer.alloc(SIZE, 0x61)
  const multipart = Array.from({ length: MULTIPART }, () => payload)
  const object = objectPayload(SIZE)
  const structured = structuredPayload(SIZE)
  const workerOpts = { concurrency: CONCURRENCY, prefetch: PREFETCH, mode: "ack" } as const
  const settings = { workers: WORKERS, concurrency: CONCURRENCY, prefetch: PREFETCH }
  const wantAwait = wanted("throughput", "raw-send-await")
  const wantMulti = wanted("throughput", "raw-send-multipart64")
  const wantAckRaw = wanted("throughput", "send-ack-raw")
  const wantPipe = wanted("throughput", "send-ack-raw-pipelined")
  // msgpack (the default codec), each with its own payload: see docs/bench-paranoid-pirate.md.
  const allPackCases: PackCase[] = [
    { name: "send-ack-msgpack", payload: object, run: (pp, n) => sendAck(pp, n, object) },
    {
      name: "send-ack-msgpack-object",
      payload: structured,
      run: (pp, n) => sendAck(pp, n, structured),
    },
    {
      name: "send-ack-msgpack-buffer",
      payload,
      run: (pp, n) => sendAck(pp, n, payload),
    },
    {
      name: `send-ack-batch${PRODUCER_BATCH}`,
      payload: object,
      run: (pp, n) => sendAckBatched(pp, n, object, PRODUCER_BATCH),
      extra: { producer: "batch", batch: PRODUCER_BATCH },
    },
    {
      name: `send-ack-window${PRODUCER_BATCH}`,
      payload: object,
      run: (pp, n) => sendAckPipelined(pp, n, object, PRODUCER_BATCH),
      extra: { producer: "window", pipeline: PRODUCER_BATCH },
    },
  ]
  const packCases = allPackCases.filter((c) => wanted("throughput", c.name))
  const [sink, ppRaw, ppPack] = await Promise.all([
    wantAwait || wantMulti ? openRawPeer("raw-sink.ts", 30_000) : undefined,
    wantAckRaw || wantPipe ? openPp("raw", WORKERS, workerOpts) : undefined,
    packCases.length > 0 ? openPp("msgpack", WORKERS, workerOpts) : undefined,
  ])
  try {
    const warm = Math.min(N, 5000)
    const sends = Math.ceil(N / MULTIPART)
    if (sink && wantAwait) await rawOneWay(sink, warm, [payload])
    if (sink && wantMulti) await rawOneWay(sink, Math.ceil(warm / MULTIPART), multipart)
    if (ppRaw && wantAckRaw) await sendAck(ppRaw, warm, payload)
    if (ppRaw && wantPipe) await sendAckPipelined(ppRaw, warm, payload, PIPELINE)
    if (ppPack) for (const c of packCases) await c.run(ppPack, warm)
    for (let run = 0; run < RUNS; run++) {
      if (sink && wantAwait) {
        const r = await rawOneWay(sink, N, [payload])
        emit({ case: "raw-send-await", run, ...r, p50us: null, p99us: null, ...common() })
      }
      if (sink && wantMulti) {
        const r = await rawOneWay(sink, sends, multipart)
        const n = sends * MULTIPART
        emit({ case: "raw-send-multipart64", run, ...r, p50us: null, p99us: null, ...common(), n })
      }
      // A send→ack case's line: the run's figures, the machine's and the workers' settings.
      const emitAck = (name: string, r: OneWay, extra: Record<string, unknown>): void =>
        emit({
          case: name,
          run,
          ...r,
          p50us: null,
          p99us: null,
          ...common(),
          ...settings,
          ...extra,
        })
      if (ppRaw && wantPipe) {
        const r = await sendAckPipelined(ppRaw, N, payload, PIPELINE)
        emitAck("send-ack-raw-pipelined", r, { pipeline: PIPELINE })
      }
      const ackRaw = async (pp: Pp): Promise<void> =>
        emitAck("send-ack-raw", await sendAck(pp, N, payload), { codec: "raw" })
      const pack = async (pp: Pp, c: PackCase): Promise<void> =>
        emitAck(c.name, await c.run(pp, N), {
          codec: "msgpack",
          encodedSize: msgpackCodec.encode(c.payload).length,
          ...c.extra,
        })
      // The two producer shapes take turns going first: each run's garbage from the cases
      // before weighs on whichever comes next.
      const order = ppPack ? (run % 2 === 1 ? swapShapes(packCases) : packCases) : []
      // send-ack-raw and send-ack-msgpack, compared run by run, take turns too: in odd runs
      // send-ack-msgpack goes first (right after the raw cases), so that neither of them always
      // runs in the other's wake.
      const first = run % 2 === 1 ? order.find((c) => c.name === "send-ack-msgpack") : undefined
      if (ppPack && first) await pack(ppPack, first)
      if (ppRaw && wantAckRaw) await ackRaw(ppRaw)
      if (ppPack) for (const c of order) if (c !== first) await pack(ppPack, c)
    }
  } finally {
    sink?.dealer.close()
    await Promise.allSettled([
      sink?.child.kill(),
      ppRaw ? closePp(ppRaw) : undefined,
      ppPack ? closePp(ppPack) : undefined,
    ])
  }
}

async function roundTrip(): Promise<void> {
  const payload = Buffer.alloc(SIZE, 0x62)
  const wantRaw = wanted("rtt", "raw-rtt")
  const wantReq = wanted("rtt", "request-rtt")
  const [echo, pp] = await Promise.all([
    wantRaw ? openRawPeer("raw-echo.ts", 10_000) : undefined,
    wantReq ? openPp("raw", 1, { concurrency: 1, mode: "echo" }) : undefined,
  ])
  try {
    const warm = Math.min(1000, N_RT)
    if (echo) await rawRoundTrips(echo, warm, payload)
    if (pp) await requestRoundTrips(pp.sender, warm, payload)
    for (let run = 0; run < RUNS; run++) {
      if (echo) {
        const r = await rawRoundTrips(echo, N_RT, payload)
        const msgsPerSec = Math.round((N_RT * 1000) / r.ms)
        emit({
          case: "raw-rtt",
          run,
          msgsPerSec,
          ...latencySummaryUs(r.samples),
          ...common(),
          n: N_RT,
        })
      }
      if (pp) {
        const r = await requestRoundTrips(pp.sender, N_RT, payload)
        const msgsPerSec = Math.round((N_RT * 1000) / r.ms)
        const rtt = latencySummaryUs(r.samples)
        emit({ case: "request-rtt", run, msgsPerSec, ...rtt, ...common(), n: N_RT, codec: "raw" })
      }
    }
  } finally {
    echo?.dealer.close()
    await Promise.allSettled([echo?.child.kill(), pp ? closePp(pp) : undefined])
  }
}

interface Holder {
  child: Child
  /** Resolves once the child has loaded its modules (it connects only when told to). */
  loaded: Promise<unknown>
}

/** Forks a worker child that will hold every job, without connecting it yet. */
function forkHolder(sender: Pirate.Sender): Holder {
  const o = { codec: "raw", concurrency: HELD, mode: "hold", lazy: true, ...FAILOVER_HB }
  const child = forkFixture("pp-worker.ts", [sender.endpoint, JSON.stringify(o)])
  const loaded = child.next((m) => m.type === "loaded", SPAWN_MS, "holder loaded")
  loaded.catch(() => undefined) // awaited later; a failure surfaces there
  return { child, loaded }
}

interface WorkerEvent {
  workerId: string
  protocol?: string
  requeued?: number
}

/** Resolves with the first `event` of `sender` that `match` accepts; rejects after `ms`. */
function waitEvent(
  sender: Pirate.Sender,
  event: "worker:ready" | "worker:lost",
  match: (e: WorkerEvent) => boolean,
  ms: number,
): Promise<WorkerEvent & { at: number }> {
  const emitter = sender as unknown as EventEmitter
  let on: ((e: WorkerEvent) => void) | undefined
  const seen = new Promise<WorkerEvent & { at: number }>((resolve) => {
    on = (e) => {
      if (!match(e)) return
      resolve({ ...e, at: performance.now() })
    }
    emitter.on(event, on)
  })
  return withTimeout(seen, ms, `${event} event`).finally(() => {
    if (on) emitter.off(event, on)
  })
}

/** A worker was lost before the kill (a starved process missed its heartbeats): run again. */
class SpuriousLoss extends Error {}

/**
 * One failover: a child worker holds HELD requests (its handler never finishes); a second worker
 * (in this process) joins; then the first is killed with `signal`. Times, from the kill: the
 * holder's `worker:lost` event, the first redelivered request answered, and the last one.
 */
async function failoverOnce(
  sender: Pirate.Sender,
  holder: Holder,
  signal: "SIGKILL" | "SIGSTOP",
): Promise<{ lostMs: number; firstAckMs: number; allAckedMs: number; requeued: number }> {
  const payload = Buffer.alloc(SIZE, 0x63)
  const emitter = sender as unknown as EventEmitter
  let survivor: Pirate.Worker | undefined
  let replies: Promise<number>[] = []
  let early: string | undefined
  const onEarlyLoss = (e: WorkerEvent & { reason?: string }): void => {
    early ??= `${e.workerId}: ${e.reason ?? "?"}`
  }
  try {
    await holder.loaded
    // A PPX READY: a plain PPP registration would be some stale peer's heartbeat.
    const registered = waitEvent(sender, "worker:ready", (e) => e.protocol === "ppx", SPAWN_MS)
    holder.child.send({ type: "open" })
    const { workerId } = await registered
    await holder.child.next((m) => m.type === "ready", SPAWN_MS, "holder ready")
    emitter.on("worker:lost", onEarlyLoss)
    replies = Array.from({ length: HELD }, () =>
      sender.request(payload, { timeout: 10_000 }).then(() => performance.now()),
    )
    for (let i = 0; i < HELD; i++)
      await holder.child.next((m) => m.type === "held", 10_000, `held job ${i + 1}`)
    survivor = new Worker({
      connect: sender.endpoint,
      codec: "raw",
      concurrency: HELD,
      ...FAILOVER_HB,
      handler: (p) => p,
    })
    const joined = waitEvent(sender, "worker:ready", (e) => e.protocol === "ppx", 10_000)
    await survivor.open()
    await joined
    emitter.off("worker:lost", onEarlyLoss)
    if (early !== undefined) throw new SpuriousLoss(`worker lost before the kill (${early})`)
    const lost = waitEvent(sender, "worker:lost", (e) => e.workerId === workerId, 10_000)
    const t0 = performance.now()
    holder.child.process.kill(signal)
    const [event, acks] = await Promise.all([
      lost,
      withTimeout(Promise.all(replies), 10_000, "redelivered replies"),
    ])
    return {
      lostMs: event.at - t0,
      firstAckMs: Math.min(...acks) - t0,
      allAckedMs: Math.max(...acks) - t0,
      requeued: event.requeued ?? -1,
    }
  } finally {
    emitter.off("worker:lost", onEarlyLoss)
    // A stopped process is woken before the kill, as an operator would; SIGKILL works either way.
    if (signal === "SIGSTOP") holder.child.process.kill("SIGCONT")
    await holder.child.kill("SIGKILL")
    // Requests of a discarded run must not linger into the next one.
    if (replies.length > 0) {
      const survivorOpen = survivor !== undefined
      await withTimeout(Promise.allSettled(replies), 12_000, "requests of the run").catch(() => {
        if (survivorOpen) throw new Error("requests of a failover run never settled")
      })
    }
    await survivor?.close()
  }
}

/** Holders forked and loaded together, so that no child loads while a run is timed. */
const HOLDER_BATCH = 4
/** Runs that are discarded and repeated at most, in all, because a worker was lost before the kill. */
const MAX_SPURIOUS = 5

async function failover(): Promise<void> {
  const sender = await Sender.open({
    bind: "tcp://127.0.0.1:*",
    codec: "raw",
    ...FAILOVER_HB,
    heartbeatInterval: FAILOVER_SENDER_HB,
  })
  const expectedStopMs = FAILOVER_HB.heartbeatInterval * FAILOVER_HB.liveness
  const killRuns = wanted("failover", "failover-sigkill") ? FAILOVER_RUNS : 0
  const stopRuns = wanted("failover", "failover-sigstop") ? Math.min(FAILOVER_RUNS, RUNS) : 0
  const plan: ("warm-up" | "SIGKILL" | "SIGSTOP")[] = [
    "warm-up",
    ...Array.from({ length: killRuns }, () => "SIGKILL" as const),
    ...Array.from({ length: stopRuns }, () => "SIGSTOP" as const),
  ]
  const runs = { SIGKILL: 0, SIGSTOP: 0 }
  let spurious = 0
  let pool: Holder[] = []
  try {
    for (const step of plan) {
      if (pool.length === 0) {
        pool = Array.from({ length: HOLDER_BATCH }, () => forkHolder(sender))
        await Promise.all(pool.map((h) => h.loaded))
      }
      const signal = step === "SIGSTOP" ? "SIGSTOP" : "SIGKILL"
      let r: Awaited<ReturnType<typeof failoverOnce>> | undefined
      while (r === undefined) {
        const holder = pool.shift() ?? forkHolder(sender)
        try {
          r = await failoverOnce(sender, holder, signal)
        } catch (err) {
          if (!(err instanceof SpuriousLoss) || ++spurious > MAX_SPURIOUS) throw err
          process.stderr.write(`bench: failover run repeated: ${err.message}\n`)
        }
      }
      if (step === "warm-up") continue
      const run = runs[signal]++
      const common = {
        msgsPerSec: null,
        p50us: null,
        p99us: null,
        ...roundMs(r),
        held: HELD,
        repeatedSoFar: spurious,
      }
      if (signal === "SIGKILL") emit({ case: "failover-sigkill", run, ...common })
      else
        emit({
          case: "failover-sigstop",
          run,
          ...common,
          expectedMs: expectedStopMs,
          ...FAILOVER_HB,
          senderHeartbeatInterval: FAILOVER_SENDER_HB,
        })
    }
  } finally {
    await Promise.allSettled(pool.map((h) => h.child.kill()))
    await sender.close()
  }
}

function roundMs<T extends Record<string, number>>(r: T): T {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(r)) out[k] = round(v, 2)
  return out as T
}

// -------------------------------------------------------------------------------------------
// summary

interface Comparison {
  of: string
  metric: "msgsPerSec" | "p50us"
  target?: number
}

/**
 * What each case is compared with: the first comparison goes into the summary's `baseline`,
 * `ratio`, `runRatioMedian`, `target` and `meetsTarget`, any further ones into `alsoVs`.
 */
const BASELINE: Record<string, Comparison[]> = {
  "raw-send-multipart64": [{ of: "raw-send-await", metric: "msgsPerSec" }],
  "send-ack-raw": [{ of: "raw-send-await", metric: "msgsPerSec", target: 0.7 }],
  "send-ack-msgpack": [
    { of: "send-ack-raw", metric: "msgsPerSec", target: 0.95 },
    { of: "raw-send-await", metric: "msgsPerSec", target: 0.7 },
  ],
  "send-ack-msgpack-object": [
    { of: "send-ack-raw", metric: "msgsPerSec" },
    { of: "send-ack-msgpack", metric: "msgsPerSec" },
  ],
  "send-ack-msgpack-buffer": [{ of: "send-ack-raw", metric: "msgsPerSec" }],
  [`send-ack-batch${PRODUCER_BATCH}`]: [
    { of: `send-ack-window${PRODUCER_BATCH}`, metric: "msgsPerSec", target: 0.9 },
  ],
  "send-ack-raw-pipelined": [{ of: "raw-send-await", metric: "msgsPerSec", target: 0.7 }],
  "request-rtt": [{ of: "raw-rtt", metric: "p50us", target: 1.5 }],
}

function medianOf(list: Row[], key: string): number | null {
  const values = list.map((r) => r[key]).filter((v): v is number => typeof v === "number")
  return values.length === 0 ? null : median(values)
}

/** The ratio of a case's median to its baseline's, and the median of the per-run ratios. */
function compare(list: Row[], base: Comparison): Record<string, unknown> | undefined {
  const baseRows = rows.get(base.of)
  if (!baseRows) return undefined
  const mine = medianOf(list, base.metric)
  const theirs = medianOf(baseRows, base.metric)
  if (mine === null || theirs === null) return undefined
  const ratio = round(mine / theirs, 3)
  const out: Record<string, unknown> = { baseline: base.of, ratio }
  // The baseline ran just before in the same run: the median of per-run ratios is less
  // sensitive to a noisy machine than the ratio of medians.
  const perRun: number[] = []
  for (const r of list) {
    const b = baseRows.find((x) => x.run === r.run)?.[base.metric]
    const v = r[base.metric]
    if (typeof b === "number" && typeof v === "number" && b > 0) perRun.push(v / b)
  }
  if (perRun.length > 0) out["runRatioMedian"] = round(median(perRun), 3)
  if (base.target !== undefined) {
    out["target"] = base.target
    out["meetsTarget"] = base.metric === "msgsPerSec" ? ratio >= base.target : ratio <= base.target
  }
  return out
}

function summarize(): void {
  for (const [name, list] of rows) {
    const summary: Record<string, unknown> = {
      bench: "paranoid-pirate",
      case: name,
      summary: true,
      runs: list.length,
    }
    if (name.startsWith("failover")) {
      for (const key of ["lostMs", "firstAckMs", "allAckedMs"]) {
        const values = list.map((r) => r[key] as number)
        summary[`${key}P50`] = round(percentile(values, 50), 2)
        summary[`${key}Max`] = round(max(values), 2)
      }
      const repeated = list.map((r) => r["repeatedSoFar"]).filter((v) => typeof v === "number")
      summary["repeatedRuns"] = repeated.length > 0 ? Math.max(...repeated) : 0
      if (name === "failover-sigstop")
        summary["expectedMs"] = FAILOVER_HB.heartbeatInterval * FAILOVER_HB.liveness
      if (name === "failover-sigkill") summary["target"] = "lostMs p50 <= 50"
    } else {
      for (const key of ["msgsPerSec", "p50us", "p99us"]) {
        const m = medianOf(list, key)
        summary[key] = m === null ? null : Math.round(m)
      }
      for (const key of ["cpuUsPerMsg", "peerCpuUsPerMsg"]) {
        const m = medianOf(list, key)
        if (m !== null) summary[key] = round(m, 2)
      }
      const also: Record<string, unknown>[] = []
      for (const base of BASELINE[name] ?? []) {
        const c = compare(list, base)
        if (c === undefined) continue
        if (Object.keys(summary).includes("baseline")) also.push(c)
        else Object.assign(summary, c)
      }
      if (also.length > 0) summary["alsoVs"] = also
    }
    printLine(summary)
  }
}

// -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  printLine({
    bench: "paranoid-pirate",
    config: true,
    n: N,
    size: SIZE,
    runs: RUNS,
    nRt: N_RT,
    failoverRuns: FAILOVER_RUNS,
    failoverSenderHeartbeat: FAILOVER_SENDER_HB,
    workers: WORKERS,
    concurrency: CONCURRENCY,
    prefetch: PREFETCH,
    pipeline: PIPELINE,
    producerBatch: PRODUCER_BATCH,
    quick: QUICK,
    node: process.version,
  })
  const throughputCases = [
    "raw-send-await",
    "raw-send-multipart64",
    "send-ack-raw",
    "send-ack-raw-pipelined",
    "send-ack-msgpack",
    "send-ack-msgpack-object",
    "send-ack-msgpack-buffer",
    `send-ack-batch${PRODUCER_BATCH}`,
    `send-ack-window${PRODUCER_BATCH}`,
  ]
  if (anyOf("throughput", throughputCases)) await throughput()
  if (anyOf("rtt", ["raw-rtt", "request-rtt"])) await roundTrip()
  if (anyOf("failover", ["failover-sigkill", "failover-sigstop"])) await failover()
  summarize()
}

await runBench(main, 30 * 60_000)
