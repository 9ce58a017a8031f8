/**
 * The chaos runner: a sender (with a LevelDB journal, also the producer) and worker processes,
 * faults injected at random from a seeded PRNG, and the delivery invariants checked at the end.
 * Used by `npm run chaos` (test/chaos/run.ts) and by the short run in test/chaos.test.ts.
 *
 * Faults: SIGKILL a worker (a new one takes its place), SIGSTOP a worker and SIGCONT it later,
 * SIGKILL the sender and restart it on its journal (the producer resumes after the last message
 * whose `send()` was reported resolved).
 *
 * Invariants: every message whose send resolved is processed at least once (no loss); the last
 * sender drains with an empty journal; every duplicate is explained by a fault (a sender crash,
 * or a worker killed or stopped while it held the message) and within that fault's bound; the
 * sender's RSS stays under a bound. Every process is killed on the way out, whatever happens.
 */
import { fork, type ChildProcess } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import type { SenderChildConfig } from "./sender.js"
import type { WorkerChildConfig } from "./worker.js"

export interface ChaosOptions {
  /** Seed of the fault schedule (kinds, targets, times). */
  seed: number
  /** Messages to send. */
  messages: number
  /** Length of the chaos phase (s): the producer spreads the messages over it, faults happen in it. */
  seconds: number
  /** Worker processes. @defaultValue 3 */
  workers?: number
  /** Handler concurrency (and credit) of each worker. @defaultValue 4 */
  concurrency?: number
  /** Heartbeat period of sender and workers (ms). @defaultValue 100 */
  heartbeatInterval?: number
  /** @defaultValue 3 */
  liveness?: number
  /** Simulated work per message: random in [0, jobMs] ms. @defaultValue 4 */
  jobMs?: number
  /** Sends outstanding in the producer. @defaultValue 32 */
  producerConcurrency?: number
  /** Mean time between faults (ms). @defaultValue 700 */
  meanFaultGap?: number
  /** Longest SIGSTOP (ms); stops last a random time in [100, maxStop]. @defaultValue 1500 */
  maxStop?: number
  /** Time allowed after the chaos phase for everything to be processed and drained (s). @defaultValue 30 */
  recoverySeconds?: number
  /** Time allowed for a sender child to start and open its journal (ms). @defaultValue 15000 */
  startTimeout?: number
  /** Bound on the sender's resident set size (MB). @defaultValue 300 */
  maxRssMb?: number
  /** Progress lines (fault by fault). */
  log?: (line: string) => void
}

export type FaultKind = "worker-kill" | "worker-stop" | "sender-kill"

export interface ChaosResult {
  ok: boolean
  /** Why the run failed (empty when ok). */
  failures: string[]
  seed: number
  messages: number
  durationMs: number
  faults: Record<FaultKind, number>
  /** SIGSTOPs that lasted longer than the heartbeat expiry (so the sender gave the worker up). */
  longStops: number
  /** Messages whose send was reported resolved. */
  confirmed: number
  /** Handler completions reported by workers (all attempts). */
  processed: number
  /** Distinct message numbers processed. */
  unique: number
  lost: number
  /** Up to 20 lost message numbers. */
  missing: number[]
  /** Processings beyond the first of a message number. */
  duplicates: number
  duplicatesByCause: {
    /** Same id again after a sender crash (in flight, or acked but not yet removed from the journal). */
    senderCrash: number
    /** Same number sent again under a new id: its send had not been confirmed when the sender died. */
    resent: number
    /** Same id again after the worker that held it was killed or stopped. */
    workerFault: number
    /** Same id again after the sender gave up a worker that no fault hit (late heartbeats under load). */
    spuriousLoss: number
    unexplained: number
  }
  /** Largest number of duplicates caused by one fault, by kind, and the bound for that kind. */
  worstFault: {
    senderCrash: { duplicates: number; bound: number }
    resent: { duplicates: number; bound: number }
    workerFault: { duplicates: number; bound: number }
    spuriousLoss: { duplicates: number; bound: number }
  }
  /** Processings with attempt > 1 (a redelivery by the sender). */
  redeliveries: number
  /** Worker losses seen by the senders, by reason. */
  workerLosses: Record<string, number>
  /** Messages found in the journal by each restarted sender. */
  recovered: number[]
  /** Workers that re-registered as plain PPP (credit 1) rather than PPX. */
  pppRegistrations: number
  /** Nacks and dead letters reported by the senders (none expected: handlers never fail). */
  nacks: string[]
  /** Stats and journal of the last sender after `drained()` (absent if it never drained). */
  final?: { stats: Record<string, number>; journal: { pending: number; dead: number } }
  rssPeakMb: number
  maxRssMb: number
  /** Each sender kill: where the producer resumed, how far it had got, what the next sender recovered, and the duplicates it caused. */
  senderCrashes: {
    t: number
    resumeFrom: number
    producerNext: number
    recovered: number
    duplicates: number
    resent: number
    resentRange: [number, number] | null
  }[]
  /** Up to 10 unexplained duplicates, for debugging. */
  unexplainedSamples: unknown[]
  /** On failure: the last stats of the sender and of the live workers. */
  diagnostics?: unknown
}

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Msg = Record<string, unknown> & { type?: string }

/** A forked child with fork IPC, its messages, and a way to wait for one. */
class Proc {
  readonly child: ChildProcess
  readonly name: string
  readonly exited: Promise<void>
  exitInfo: string | undefined
  /** Set before we end it ourselves, so its exit is not reported as a crash. */
  killedByUs = false
  stoppedAt: number | undefined
  /** The SIGSTOP fault in progress (its `end` is set at SIGCONT). */
  stopFault: Fault | undefined
  contTimer: NodeJS.Timeout | undefined
  #waiters: { match: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = []

  constructor(file: string, name: string, config: object, onMessage: (p: Proc, m: Msg) => void) {
    this.name = name
    this.child = fork(new URL(file, import.meta.url), [JSON.stringify(config)], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    })
    this.child.on("message", (m: Msg) => {
      onMessage(this, m)
      for (const w of [...this.#waiters]) {
        if (w.match(m)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(m)
        }
      }
    })
    const exit = new Promise<void>((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exitInfo = signal ?? `code ${code ?? "?"}`
        resolve()
      })
    })
    // Messages still in the pipe arrive before "disconnect": wait for both, so that everything
    // a killed sender reported (resolved sends) is known before its successor starts.
    const disconnect = new Promise<void>((resolve) => {
      if (!this.child.connected) resolve()
      else this.child.once("disconnect", resolve)
    })
    this.exited = Promise.all([exit, disconnect]).then(() => undefined)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get alive(): boolean {
    return this.exitInfo === undefined
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child.kill(sig)
  }

  /** SIGKILL (after SIGCONT, in case it is stopped) and wait for the exit. */
  async kill(): Promise<void> {
    this.killedByUs = true
    clearTimeout(this.contTimer)
    if (this.alive) {
      this.child.kill("SIGCONT")
      this.child.kill("SIGKILL")
    }
    await this.exited
  }

  waitFor(match: (m: Msg) => boolean, timeoutMs: number, what: string): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer)
          resolve(m)
        },
      })
      void this.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${this.exitInfo ?? "?"}) before ${what}`))
      })
    })
  }
}

/** A free TCP port below the ephemeral range, so no outgoing connection takes it while the sender is down. */
async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once("error", () => resolve(false))
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
    })
    if (free) return port
  }
  throw new Error("no free port found")
}

interface Processing {
  n: number
  id: string
  attempt: number
  pid: number
  t: number
}

interface Fault {
  kind: FaultKind
  t: number
  pid: number
  /** Date.now() at the fault (message ids count µs from the clock). */
  epoch: number
  /** Messages (ids) processed again because of this fault. */
  dupIds: Set<string>
  /** Sender kills: message numbers the producer sent again under a new id. */
  resent: Set<number>
  /** When the fault ended (SIGCONT of a stop; the kill itself otherwise). */
  end: number
  /** Sender kills: where the producer resumes. */
  resumeFrom?: number
  /** Sender kills: the next number the producer was about to send, as last reported. */
  producerNext?: number
  /** Sender kills: messages the next sender found in the journal. */
  recovered?: number
  recoveredIds?: Set<string>
}

/** Runs one chaos experiment; never throws for a failed invariant (see `result.failures`). */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const o = {
    workers: 3,
    concurrency: 4,
    heartbeatInterval: 100,
    liveness: 3,
    jobMs: 4,
    producerConcurrency: 32,
    meanFaultGap: 700,
    maxStop: 1500,
    recoverySeconds: 30,
    startTimeout: 15_000,
    maxRssMb: 300,
    log: (): void => undefined,
    ...options,
  }
  const random = prng(o.seed)
  const t0 = performance.now()
  /** Date.now() when the producer's schedule starts (0 until the chaos phase starts). */
  let epoch = 0
  const now = (): number => performance.now() - t0
  const failures: string[] = []
  const procs = new Set<Proc>()
  const journal = await mkdtemp(join(tmpdir(), "pirate-chaos-"))
  const endpoint = `tcp://127.0.0.1:${await freePort()}`
  const expiry = o.heartbeatInterval * o.liveness

  const processings: Processing[] = []
  const byN = new Map<number, Processing[]>()
  const faults: Fault[] = []
  const faultCount: Record<FaultKind, number> = {
    "worker-kill": 0,
    "worker-stop": 0,
    "sender-kill": 0,
  }
  let longStops = 0
  const workerLosses: Record<string, number> = {}
  const recovered: number[] = []
  /** The sender kill whose replacement has not opened yet. */
  let lastCrash: Fault | undefined
  const losses: { t: number; reason: string; requeued: number; dupIds: Set<string> }[] = []
  let pppRegistrations = 0
  const nacks: string[] = []
  /** The last stats of the current sender, and of each worker (for the report of a failed run). */
  let senderStats: unknown
  const workerStats = new Map<Proc, unknown>()
  let rssPeak = 0
  let confirmed = 0
  /** The next number the producer was about to send, as last reported. */
  let producerNext = 0
  let allSent = false
  let fatal: string | undefined
  let final: ChaosResult["final"]

  const onSenderMessage = (p: Proc, m: Msg): void => {
    switch (m.type ?? "") {
      case "sent":
        if (p === sender) {
          confirmed = Math.max(confirmed, m["upTo"] as number)
          producerNext = Math.max(producerNext, m["next"] as number)
        }
        break
      case "all-sent":
        if (p === sender) {
          allSent = true
          confirmed = Math.max(confirmed, m["upTo"] as number)
        }
        break
      case "stats":
        if (p === sender) senderStats = { stats: m["stats"], workers: m["workers"] }
        break
      case "open":
        recovered.push(m["recovered"] as number)
        if (lastCrash) {
          lastCrash.recovered = m["recovered"] as number
          lastCrash.recoveredIds = new Set(m["recoveredIds"] as string[])
        }
        lastCrash = undefined
        break
      case "rss":
        rssPeak = Math.max(rssPeak, m["rss"] as number)
        break
      case "worker:lost": {
        const reason = (m["reason"] as string).replace(/\d+ ms/, "N ms")
        workerLosses[reason] = (workerLosses[reason] ?? 0) + 1
        losses.push({ t: now(), reason, requeued: m["requeued"] as number, dupIds: new Set() })
        break
      }
      case "nacked":
      case "dead": {
        // Handlers never fail here: a nack or a dead letter is the sender's mistake.
        const error = `${m.type} ${String(m["id"])}: ${String(m["error"])}`
        nacks.push(error)
        break
      }
      case "worker:ready":
        if (m["protocol"] === "ppp") pppRegistrations++
        break
      case "error":
        fatal ??= `sender error: ${String(m["message"])}`
        break
      default:
    }
  }
  const onWorkerMessage = (p: Proc, m: Msg): void => {
    if (m.type === "done") {
      const rec: Processing = {
        n: m["n"] as number,
        id: m["id"] as string,
        attempt: m["attempt"] as number,
        pid: p.pid,
        t: now(),
      }
      processings.push(rec)
      const list = byN.get(rec.n)
      if (list) list.push(rec)
      else byN.set(rec.n, [rec])
    } else if (m.type === "stats") workerStats.set(p, m["stats"])
    else if (m.type === "error") fatal ??= `worker ${p.pid} error: ${String(m["message"])}`
  }
  const watchExit = (p: Proc): void => {
    void p.exited.then(() => {
      if (!p.killedByUs) fatal ??= `${p.name} ${p.pid} exited unexpectedly (${p.exitInfo ?? "?"})`
    })
  }

  let senderIncarnation = 0
  const startSender = (): Proc => {
    const from = confirmed
    const config: SenderChildConfig = {
      bind: endpoint,
      journal,
      from,
      count: o.messages - from,
      concurrency: o.producerConcurrency,
      rate: o.messages / (o.seconds * 0.8),
      epoch,
      heartbeatInterval: o.heartbeatInterval,
      liveness: o.liveness,
      sampleInterval: 50,
    }
    allSent = false
    const p = new Proc("./sender.ts", `sender#${++senderIncarnation}`, config, onSenderMessage)
    procs.add(p)
    watchExit(p)
    return p
  }
  let workerIncarnation = 0
  const startWorker = (): Proc => {
    const config: WorkerChildConfig = {
      endpoint,
      concurrency: o.concurrency,
      heartbeatInterval: o.heartbeatInterval,
      liveness: o.liveness,
      reconnect: { initial: 50, max: 500 },
      jobMs: o.jobMs,
    }
    const p = new Proc("./worker.ts", `worker#${++workerIncarnation}`, config, onWorkerMessage)
    procs.add(p)
    watchExit(p)
    return p
  }
  const cont = (w: Proc): void => {
    clearTimeout(w.contTimer)
    w.contTimer = undefined
    if (w.stoppedAt === undefined) return
    const stopped = now() - w.stoppedAt
    if (stopped >= expiry) longStops++
    w.stoppedAt = undefined
    if (w.stopFault) w.stopFault.end = now()
    w.stopFault = undefined
    w.signal("SIGCONT")
    o.log(`${ms(now())} SIGCONT ${w.name} (pid ${w.pid}) after ${Math.round(stopped)} ms`)
  }

  let sender = startSender()
  const workers: Proc[] = []
  const unique = (): number => byN.size
  const check = (): void => {
    if (fatal !== undefined) throw new Error(fatal)
  }

  const progress = setInterval(() => {
    const stopped = workers.filter((w) => w.stoppedAt !== undefined).length
    o.log(
      `${ms(now())} progress: ${confirmed} sends confirmed, ${byN.size} processed (${processings.length} with duplicates), ${stopped} workers stopped`,
    )
  }, 1000)
  try {
    await sender.waitFor((m) => m.type === "open", o.startTimeout, "open")
    for (let i = 0; i < o.workers; i++) workers.push(startWorker())
    // Faults start once every worker is connected (starting a process under tsx takes a while).
    await Promise.all(
      workers.map((w) => w.waitFor((m) => m.type === "sender:ready", o.startTimeout, "ready")),
    )
    const chaosStart = now()
    epoch = Date.now()
    sender.child.send({ type: "start", epoch })
    o.log(`${ms(chaosStart)} ${o.workers} workers connected; chaos starts`)

    // Chaos phase. The first faults cover every kind once (in a seeded order), then random kinds.
    const kinds: FaultKind[] = ["worker-kill", "worker-stop", "sender-kill"]
    const first = [...kinds]
    for (let i = first.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[first[i], first[j]] = [first[j] as FaultKind, first[i] as FaultKind]
    }
    const chaosEnd = chaosStart + o.seconds * 1000
    let senderOpen: Promise<Msg> | undefined
    while (now() < chaosEnd && !(allSent && unique() >= o.messages)) {
      check()
      await sleep(o.meanFaultGap * (0.3 + 1.4 * random()))
      if (now() >= chaosEnd) break
      let kind = first.shift()
      if (kind === undefined) {
        const r = random()
        kind = r < 0.4 ? "worker-kill" : r < 0.8 ? "worker-stop" : "sender-kill"
      }
      const target = Math.floor(random() * workers.length)
      const duration = 100 + random() * (o.maxStop - 100)
      if (kind === "sender-kill") {
        // One sender restart at a time: wait until the last one is up before killing it again.
        if (senderOpen) {
          await senderOpen
          senderOpen = undefined
        }
        const old = sender
        const t = now()
        await old.kill()
        lastCrash = {
          kind,
          t,
          end: t,
          epoch: Date.now(),
          pid: old.pid,
          dupIds: new Set(),
          resent: new Set(),
          resumeFrom: confirmed,
          producerNext,
        }
        faults.push(lastCrash)
        faultCount[kind]++
        sender = startSender()
        senderOpen = sender.waitFor((m) => m.type === "open", o.startTimeout, "open")
        senderOpen.catch(() => undefined)
        o.log(
          `${ms(t)} SIGKILL ${old.name}; restarting on its journal from n=${confirmed} (the producer had started up to n=${producerNext - 1})`,
        )
      } else if (kind === "worker-kill") {
        const old = workers[target] as Proc
        const t = now()
        if (old.stopFault) old.stopFault.end = t // killed while stopped
        await old.kill()
        faults.push({
          kind,
          t,
          end: t,
          epoch: Date.now(),
          pid: old.pid,
          dupIds: new Set(),
          resent: new Set(),
        })
        faultCount[kind]++
        workers[target] = startWorker()
        o.log(`${ms(t)} SIGKILL ${old.name} (pid ${old.pid}); started ${workers[target].name}`)
      } else {
        const running = workers.filter((x) => x.stoppedAt === undefined)
        const w = running[target % Math.max(1, running.length)]
        if (!w) continue
        const t = now()
        w.signal("SIGSTOP")
        w.stoppedAt = t
        w.contTimer = setTimeout(() => cont(w), duration)
        const fault: Fault = {
          kind,
          t,
          end: Infinity,
          epoch: Date.now(),
          pid: w.pid,
          dupIds: new Set(),
          resent: new Set(),
        }
        faults.push(fault)
        w.stopFault = fault
        faultCount[kind]++
        o.log(`${ms(t)} SIGSTOP ${w.name} (pid ${w.pid}) for ${Math.round(duration)} ms`)
      }
    }

    // Recovery phase: no more faults; everything must be processed and drained.
    const deadline = performance.now() + o.recoverySeconds * 1000
    const left = (): number => Math.max(1, deadline - performance.now())
    for (const w of workers) cont(w)
    if (senderOpen) await senderOpen
    o.log(`${ms(now())} chaos phase over; waiting for the producer and the workers`)
    while (!allSent) {
      check()
      if (performance.now() > deadline) throw new Error("the producer did not finish in time")
      await sleep(20)
    }
    const drainedMsg = sender.waitFor((m) => m.type === "drained", left(), "drained()")
    sender.killedByUs = true // it exits by itself once drained
    sender.child.send({ type: "finish" })
    const drained = await drainedMsg
    final = {
      stats: drained["stats"] as Record<string, number>,
      journal: drained["journal"] as { pending: number; dead: number },
    }
    // The processed reports were written before the acks; give the pipes a moment to deliver.
    const until = performance.now() + 2000
    while (unique() < o.messages && performance.now() < until) await sleep(10)
    check()
  } catch (err) {
    failures.push(err instanceof Error ? err.message : String(err))
  } finally {
    clearInterval(progress)
    await Promise.all([...procs].map((p) => p.kill()))
    await rm(journal, { recursive: true, force: true })
  }

  // ---- invariants -------------------------------------------------------------------------
  const missing: number[] = []
  let lost = 0
  for (let n = 0; n < confirmed; n++) {
    if (!byN.has(n)) {
      lost++
      if (missing.length < 20) missing.push(n)
    }
  }
  if (lost > 0 && final)
    failures.push(`${lost} messages lost (sent, never processed): ${missing.join(", ")}`)
  else if (lost > 0)
    failures.push(
      `${lost} sent messages not processed when the run stopped (not verified: the last sender never drained): ${missing.join(", ")}`,
    )
  if (confirmed < o.messages && failures.length === 0)
    failures.push(`only ${confirmed} of ${o.messages} sends confirmed`)
  if (final && final.journal.pending !== 0)
    failures.push(`journal still holds ${final.journal.pending} pending messages after drained()`)
  if (final && final.journal.dead !== 0)
    failures.push(`${final.journal.dead} dead letters (no handler fails in a chaos run)`)

  // Duplicates, each attributed to the fault that explains it.
  const senderKills = faults.filter((f) => f.kind === "sender-kill")
  // How late a report may reach us after the event it belongs to (a loaded machine is slow).
  const slack = 1000
  const byCause = { senderCrash: 0, resent: 0, workerFault: 0, spuriousLoss: 0, unexplained: 0 }
  const unexplainedSamples: unknown[] = []
  for (const list of byN.values()) {
    if (list.length < 2) continue
    const ids = new Map<string, Processing[]>()
    for (const p of list) ids.set(p.id, [...(ids.get(p.id) ?? []), p])
    // Several ids for one number: the producer sent it again after a sender crash. Ids count µs
    // from the clock, so the crash that explains it is the first sender kill after the first send.
    const [firstId, ...otherIds] = [...ids.keys()].sort()
    const firstSent = parseInt(firstId as string, 16) / 1000
    for (const id of otherIds) {
      const p = (ids.get(id) as Processing[])[0] as Processing
      const crash = senderKills.find(
        (f) => f.epoch >= firstSent - 50 && (f.resumeFrom ?? Infinity) <= p.n,
      )
      if (crash) {
        byCause.resent++
        crash.resent.add(p.n)
      } else {
        byCause.unexplained++
        if (unexplainedSamples.length < 10)
          unexplainedSamples.push({ n: p.n, cause: "second id", processings: list })
      }
    }
    // One id processed more than once: the sender handed it out again.
    for (const same of ids.values()) {
      for (let j = 1; j < same.length; j++) {
        const prev = same[j - 1] as Processing
        const pj = same[j] as Processing
        // A sender crash between the two, and the next sender found the message in its journal
        // (it was in flight, or acked but not yet removed from the journal).
        const crash = senderKills.find(
          (f) => f.t > prev.t - slack && f.t < pj.t && f.recoveredIds?.has(pj.id) === true,
        )
        if (crash) {
          byCause.senderCrash++
          crash.dupIds.add(pj.id)
          continue
        }
        // A worker that processed it was killed or stopped around then: its ack was lost (killed
        // or given up before it went out), or it finished the job after a stop, too late.
        // A worker holds at most its credit, so one fault explains at most that many messages.
        let fault: Fault | undefined
        for (const p of same.slice(0, j + 1)) {
          fault ??= faults.find(
            (f) =>
              f.kind !== "sender-kill" &&
              f.pid === p.pid &&
              p.t >= f.t - slack &&
              p.t <= f.end + slack &&
              (f.dupIds.size < o.concurrency || f.dupIds.has(pj.id)),
          )
        }
        if (fault) {
          byCause.workerFault++
          fault.dupIds.add(pj.id)
          continue
        }
        // A worker lost without an injected fault: its heartbeats came late (CPU starvation) or
        // its connection dropped; the sender gave its messages to others, as it must.
        // It can explain at most the messages it requeued.
        const loss = losses.findLast(
          (l) =>
            l.t >= (same[0] as Processing).t - o.maxStop - slack &&
            l.t <= pj.t &&
            (l.dupIds.size < l.requeued || l.dupIds.has(pj.id)),
        )
        if (loss) {
          byCause.spuriousLoss++
          loss.dupIds.add(pj.id)
          continue
        }
        byCause.unexplained++
        if (unexplainedSamples.length < 10)
          unexplainedSamples.push({ n: pj.n, cause: "same id", processings: same })
      }
    }
  }
  const duplicates = processings.length - byN.size
  // Bounds per fault, in distinct messages: a worker holds at most its credit; a crashed sender
  // can only redeliver what the next one found in its journal; the producer resends at most the
  // sends it had outstanding.
  const worstOf = <T>(list: T[], size: (x: T) => number): T | undefined =>
    list.reduce<T | undefined>((a, x) => (a !== undefined && size(a) >= size(x) ? a : x), undefined)
  const worstCrash = worstOf(senderKills, (f) => f.dupIds.size)
  const worstWorker = worstOf(
    faults.filter((f) => f.kind !== "sender-kill"),
    (f) => f.dupIds.size,
  )
  const worstFault = {
    senderCrash: { duplicates: worstCrash?.dupIds.size ?? 0, bound: worstCrash?.recovered ?? 0 },
    resent: {
      duplicates: Math.max(0, ...senderKills.map((f) => f.resent.size)),
      bound: o.producerConcurrency,
    },
    workerFault: { duplicates: worstWorker?.dupIds.size ?? 0, bound: o.concurrency },
    spuriousLoss: {
      duplicates: Math.max(0, ...losses.map((l) => l.dupIds.size)),
      bound: o.concurrency, // a lost worker held at most its credit
    },
  }
  for (const [name, w] of Object.entries(worstFault))
    if (w.duplicates > w.bound)
      failures.push(
        `${w.duplicates} messages duplicated by one ${name} fault exceed its bound ${w.bound}`,
      )
  if (byCause.unexplained > 0)
    failures.push(`${byCause.unexplained} duplicates not explained by a fault`)
  if (nacks.length > 0)
    failures.push(
      `${nacks.length} messages nacked or dead-lettered although no handler ever fails: ${nacks.slice(0, 3).join("; ")}`,
    )

  const rssPeakMb = Math.round(rssPeak / 1048576)
  if (rssPeakMb >= o.maxRssMb) failures.push(`sender RSS peaked at ${rssPeakMb} MB ≥ ${o.maxRssMb}`)
  if (rssPeak === 0) failures.push("no RSS sample from the sender")

  return {
    ok: failures.length === 0,
    failures,
    seed: o.seed,
    messages: o.messages,
    durationMs: Math.round(now()),
    faults: faultCount,
    longStops,
    confirmed,
    processed: processings.length,
    unique: byN.size,
    lost,
    missing,
    duplicates,
    duplicatesByCause: byCause,
    worstFault,
    redeliveries: processings.filter((p) => p.attempt > 1).length,
    workerLosses,
    recovered,
    pppRegistrations,
    nacks: nacks.slice(0, 20),
    senderCrashes: senderKills.map((f) => ({
      t: Math.round(f.t),
      resumeFrom: f.resumeFrom ?? 0,
      producerNext: f.producerNext ?? 0,
      recovered: f.recovered ?? 0,
      duplicates: f.dupIds.size,
      resent: f.resent.size,
      resentRange: f.resent.size > 0 ? [Math.min(...f.resent), Math.max(...f.resent)] : null,
    })),
    ...(final ? { final } : {}),
    rssPeakMb,
    maxRssMb: o.maxRssMb,
    unexplainedSamples,
    ...(failures.length > 0
      ? {
          diagnostics: {
            sender: senderStats,
            workers: workers.map((w) => ({
              name: w.name,
              pid: w.pid,
              stats: workerStats.get(w),
            })),
          },
        }
      : {}),
  }
}

/** One human line. */
export function summary(r: ChaosResult): string {
  const f = r.faults
  const d = r.duplicatesByCause
  const losses = Object.values(r.workerLosses).reduce((a, b) => a + b, 0)
  return (
    `chaos seed=${r.seed} ${r.ok ? "OK" : "FAILED"}: ${r.messages} messages in ${(r.durationMs / 1000).toFixed(1)} s; ` +
    `faults: ${f["worker-kill"]} worker kills, ${f["worker-stop"]} worker stops (${r.longStops} past the heartbeat expiry), ` +
    `${f["sender-kill"]} sender kills; ${r.redeliveries} redeliveries, ${losses} workers lost; ` +
    `${r.duplicates} duplicates (sender crash ${d.senderCrash}, resent ${d.resent}, worker faults ${d.workerFault}, spurious losses ${d.spuriousLoss}, unexplained ${d.unexplained}); ` +
    `lost ${r.final ? r.lost : `? (${r.lost} unprocessed when the run stopped)`}; journal pending ${r.final?.journal.pending ?? "?"}; sender RSS peak ${r.rssPeakMb} MB` +
    (r.pppRegistrations > 0
      ? `; ${r.pppRegistrations} workers came back from a stop registered as plain PPP (credit 1)`
      : "") +
    (r.ok ? "" : ` — ${r.failures.join("; ")}`)
  )
}

function ms(t: number): string {
  return `[${(t / 1000).toFixed(2)} s]`
}
