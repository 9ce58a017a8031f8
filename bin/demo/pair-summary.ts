/**
 * The closing summary of `pirate demo --pair`: what was sent, processed, lost and duplicated, and
 * why, and how the pair failed over. The layout and the counting are those of `pirate demo`'s
 * summary (summary.ts); the wording of the faults is the pair's.
 */
import { fmt, seconds } from "./display.js"
import { count, summaryStart, type DemoRun } from "./summary.js"

export type PairRole = "primary" | "backup"

export interface PairFaults {
  /** The active sender, killed with SIGKILL mid-stream. */
  kill?: { name: PairRole; pid: number; at: number; confirmed: number }
  /** The passive became active; `after`: seconds since the kill. */
  takeover?: {
    name: PairRole
    at: number
    after: number
    reason: string
    /** Unacked messages in its replica of the journal, which it redelivered. */
    pending: number
    /** Votes the workers cast, as they reported them. */
    votes: number
  }
  /**
   * The killed sender restarted at `at`; seconds from then until its process was up, until it
   * was passive, and until the active had it caught up.
   */
  rejoin?: {
    name: PairRole
    pid: number
    at: number
    up?: number
    passive?: number
    caughtUp?: number
  }
}

/** What a `pirate demo --pair` run observed. */
export interface PairDemoRun extends Omit<DemoRun, "faults"> {
  faults: PairFaults
}

/** The summary's text, and whether nothing was lost. */
export function renderPairSummary(run: PairDemoRun): { text: string; ok: boolean } {
  const f = run.faults
  const active = f.kill?.name ?? "active sender"
  const passive = f.takeover?.name ?? "passive sender"
  const { out, lost } = summaryStart(run, 'durability "replicated": written on both senders', {
    journal: (n, acks, them) =>
      `${n} processed around the kill of the ${active}: ${acks} did not reach it before it died, or reached it but not yet the ${passive}'s replica of the journal (acks are streamed to the passive, not waited for), so the ${passive} redelivered ${them} when it took over`,
    requeued: (n, acks, them) =>
      `${n} redelivered with a higher attempt: processed, but ${acks} never reached the sender, which gave ${them} to another worker once it presumed the first one lost`,
    resent: (n, them) =>
      `${n} sent twice by the producer: the ${active} had written ${them} when it was killed, but their send() had not resolved yet (or not been reported), so the producer on the ${passive} sent ${them} again; the first copy was delivered too, from the ${passive}'s replica or handed over by the ${active} when it rejoined`,
  })

  const faults: string[] = []
  if (f.kill) {
    faults.push(
      `${seconds(f.kill.at)}: the ${f.kill.name} (pid ${f.kill.pid}), active, killed with SIGKILL after send() #${fmt(f.kill.confirmed)}`,
    )
  }
  if (f.takeover) {
    const t = f.takeover
    const votes = t.votes === 0 ? "" : ` (${count(t.votes, "worker vote")})`
    faults.push(
      `${seconds(t.at)}: the ${t.name} took over ${seconds(t.after)} after the kill${votes} and redelivered the ${count(t.pending, "unacked message")} of its replica; its producer went on after #${fmt(f.kill?.confirmed ?? 0)}`,
    )
  }
  if (f.rejoin) {
    const r = f.rejoin
    const steps = [
      r.up === undefined ? "" : `up after ${seconds(r.up)}`,
      r.passive === undefined ? "" : `passive after ${seconds(r.passive)}`,
      r.caughtUp === undefined ? "" : `caught up after ${seconds(r.caughtUp)}`,
    ].filter((step) => step !== "")
    faults.push(
      `${seconds(r.at)}: the ${r.name} restarted on its own journal${steps.length > 0 ? `: ${steps.join(", ")}` : ""}`,
    )
  }
  faults.forEach((text, i) => out.item(text, i === 0 ? "failover" : undefined))
  return out.finish(run, lost)
}
