/**
 * The chaos runner: a sender (with a LevelDB journal, also the producer) and worker processes,
 * faults injected at random from a seeded PRNG, and the delivery invariants checked at the end.
 * Used by `npm run chaos` (test/chaos/run.ts) and by the short run in test/chaos.test.ts.
 *
 * Faults: SIGKILL a worker (a new one takes its place), SIGSTOP a worker and SIGCONT it later,
 * SIGKILL the sender and restart it on its journal (the producer resumes after the last message
 * whose `send()` was reported resolved).
 *
 * Invariants (verdict.ts): every message whose send resolved is processed at least once (no
 * loss); the last sender drains with an empty journal; every duplicate is explained by a fault (a
 * sender crash, or a worker killed or stopped while it held the message) and within that fault's
 * bound; the sender's RSS stays under a bound. Every process is killed on the way out, whatever
 * happens. What the children report is kept in observations.ts, their processes in proc.ts.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { Observations } from "./observations.js"
import { Proc, freePort } from "./proc.js"
import type { SenderChildConfig } from "./sender.js"
import {
  chaosSettings,
  type ChaosOptions,
  type ChaosResult,
  type Fault,
  type FaultKind,
  type Msg,
} from "./types.js"
import { verdict } from "./verdict.js"
import type { WorkerChildConfig } from "./worker.js"

export { summary } from "./verdict.js"
export type { ChaosOptions, ChaosResult, FaultKind } from "./types.js"

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

/** Runs one chaos experiment; never throws for a failed invariant (see `result.failures`). */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const o = chaosSettings(options)
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

  const obs = new Observations(now)
  let final: ChaosResult["final"]
  const watchExit = (p: Proc): void => {
    void p.exited.then(() => {
      if (!p.killedByUs)
        obs.fatal ??= `${p.name} ${p.pid} exited unexpectedly (${p.exitInfo ?? "?"})`
    })
  }

  let senderIncarnation = 0
  const startSender = (): Proc => {
    const from = obs.confirmed
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
    obs.allSent = false
    const p = new Proc("./sender.ts", `sender#${++senderIncarnation}`, config, (proc, m) => {
      obs.fromSender(m, proc === sender)
    })
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
    const p = new Proc("./worker.ts", `worker#${++workerIncarnation}`, config, (proc, m) => {
      obs.fromWorker(proc, m)
    })
    procs.add(p)
    watchExit(p)
    return p
  }
  const cont = (w: Proc): void => {
    clearTimeout(w.contTimer)
    w.contTimer = undefined
    if (w.stoppedAt === undefined) return
    const stopped = now() - w.stoppedAt
    if (stopped >= expiry) obs.longStops++
    w.stoppedAt = undefined
    if (w.stopFault) w.stopFault.end = now()
    w.stopFault = undefined
    w.signal("SIGCONT")
    o.log(`${ms(now())} SIGCONT ${w.name} (pid ${w.pid}) after ${Math.round(stopped)} ms`)
  }

  let sender = startSender()
  const workers: Proc[] = []

  const progress = setInterval(() => {
    const stopped = workers.filter((w) => w.stoppedAt !== undefined).length
    o.log(
      `${ms(now())} progress: ${obs.confirmed} sends confirmed, ${obs.unique} processed (${obs.processings.length} with duplicates), ${stopped} workers stopped`,
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
    while (now() < chaosEnd && !(obs.allSent && obs.unique >= o.messages)) {
      obs.check()
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
        obs.lastCrash = {
          kind,
          t,
          end: t,
          epoch: Date.now(),
          pid: old.pid,
          dupIds: new Set(),
          resent: new Set(),
          resumeFrom: obs.confirmed,
          producerNext: obs.producerNext,
        }
        obs.fault(obs.lastCrash)
        sender = startSender()
        senderOpen = sender.waitFor((m) => m.type === "open", o.startTimeout, "open")
        senderOpen.catch(() => undefined)
        o.log(
          `${ms(t)} SIGKILL ${old.name}; restarting on its journal from n=${obs.confirmed} (the producer had started up to n=${obs.producerNext - 1})`,
        )
      } else if (kind === "worker-kill") {
        const old = workers[target] as Proc
        const t = now()
        if (old.stopFault) old.stopFault.end = t // killed while stopped
        await old.kill()
        obs.fault({
          kind,
          t,
          end: t,
          epoch: Date.now(),
          pid: old.pid,
          dupIds: new Set(),
          resent: new Set(),
        })
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
        obs.fault(fault)
        w.stopFault = fault
        o.log(`${ms(t)} SIGSTOP ${w.name} (pid ${w.pid}) for ${Math.round(duration)} ms`)
      }
    }

    // Recovery phase: no more faults; everything must be processed and drained.
    const deadline = performance.now() + o.recoverySeconds * 1000
    const left = (): number => Math.max(1, deadline - performance.now())
    for (const w of workers) cont(w)
    if (senderOpen) await senderOpen
    o.log(`${ms(now())} chaos phase over; waiting for the producer and the workers`)
    while (!obs.allSent) {
      obs.check()
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
    while (obs.unique < o.messages && performance.now() < until) await sleep(10)
    obs.check()
  } catch (err) {
    failures.push(err instanceof Error ? err.message : String(err))
  } finally {
    clearInterval(progress)
    await Promise.all([...procs].map((p) => p.kill()))
    await rm(journal, { recursive: true, force: true })
  }

  return verdict(obs, o, { durationMs: now(), final, failures, workers })
}

function ms(t: number): string {
  return `[${(t / 1000).toFixed(2)} s]`
}
