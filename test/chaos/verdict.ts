/**
 * The verdict of a chaos run: the delivery invariants checked against what it observed (no
 * loss, an empty journal at the end, every duplicate explained by a fault and within that fault's
 * bound, a bounded RSS), as a ChaosResult, and its one-line summary.
 */
import type { Observations } from "./observations.js"
import type { Proc } from "./proc.js"
import type { ChaosResult, ChaosSettings, Fault, Processing } from "./types.js"

/** What the harness knows at the end of a run, beyond the observations. */
export interface RunEnd {
  durationMs: number
  /** Stats and journal of the last sender after `drained()`, if it drained. */
  final: ChaosResult["final"]
  /** Why the run stopped early, if it did. */
  failures: string[]
  /** The workers at the end, for the diagnostics of a failed run. */
  workers: Proc[]
}

/** Checks the invariants; every broken one is a line of `failures` in the result. */
export function verdict(obs: Observations, o: ChaosSettings, run: RunEnd): ChaosResult {
  const { final, failures, workers } = run
  const missing: number[] = []
  let lost = 0
  for (let n = 0; n < obs.confirmed; n++) {
    if (!obs.byN.has(n)) {
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
  if (obs.confirmed < o.messages && failures.length === 0)
    failures.push(`only ${obs.confirmed} of ${o.messages} sends confirmed`)
  if (final && final.journal.pending !== 0)
    failures.push(`journal still holds ${final.journal.pending} pending messages after drained()`)
  if (final && final.journal.dead !== 0)
    failures.push(`${final.journal.dead} dead letters (no handler fails in a chaos run)`)

  // Duplicates, each attributed to the fault that explains it.
  const senderKills = obs.faults.filter((f) => f.kind === "sender-kill")
  // How late a report may reach us after the event it belongs to (a loaded machine is slow).
  const slack = 1000
  const byCause = { senderCrash: 0, resent: 0, workerFault: 0, spuriousLoss: 0, unexplained: 0 }
  const unexplainedSamples: unknown[] = []
  for (const list of obs.byN.values()) {
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
          fault ??= obs.faults.find(
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
        const loss = obs.losses.findLast(
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
  const duplicates = obs.processings.length - obs.byN.size
  // Bounds per fault, in distinct messages: a worker holds at most its credit; a crashed sender
  // can only redeliver what the next one found in its journal; the producer resends at most the
  // sends it had outstanding.
  const worstOf = <T>(list: T[], size: (x: T) => number): T | undefined =>
    list.reduce<T | undefined>((a, x) => (a !== undefined && size(a) >= size(x) ? a : x), undefined)
  const worstCrash = worstOf(senderKills, (f) => f.dupIds.size)
  const worstWorker = worstOf(
    obs.faults.filter((f) => f.kind !== "sender-kill"),
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
      duplicates: Math.max(0, ...obs.losses.map((l) => l.dupIds.size)),
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
  if (obs.nacks.length > 0)
    failures.push(
      `${obs.nacks.length} messages nacked or dead-lettered although no handler ever fails: ${obs.nacks.slice(0, 3).join("; ")}`,
    )

  const rssPeakMb = Math.round(obs.rssPeak / 1048576)
  if (rssPeakMb >= o.maxRssMb) failures.push(`sender RSS peaked at ${rssPeakMb} MB ≥ ${o.maxRssMb}`)
  if (obs.rssPeak === 0) failures.push("no RSS sample from the sender")

  return {
    ok: failures.length === 0,
    failures,
    seed: o.seed,
    messages: o.messages,
    durationMs: Math.round(run.durationMs),
    faults: obs.faultCount,
    longStops: obs.longStops,
    confirmed: obs.confirmed,
    processed: obs.processings.length,
    unique: obs.byN.size,
    lost,
    missing,
    duplicates,
    duplicatesByCause: byCause,
    worstFault,
    redeliveries: obs.processings.filter((p) => p.attempt > 1).length,
    workerLosses: obs.workerLosses,
    recovered: obs.recovered,
    pppRegistrations: obs.pppRegistrations,
    nacks: obs.nacks.slice(0, 20),
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
            sender: obs.senderStats,
            workers: workers.map((w) => ({
              name: w.name,
              pid: w.pid,
              stats: obs.workerStats.get(w),
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
