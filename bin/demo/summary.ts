/** The closing summary of `pirate demo`: what was sent, processed, lost and duplicated, and why. */
import { fmt, seconds, wrap } from "./display.js"

const WIDTH = 79

/** One processing of a message, as a worker reported it. */
export interface Copy {
  id: string
  attempt: number
}

export interface Faults {
  worker?: { name: string; pid: number; at: number; requeued?: number; replacement: string }
  sender?: { pid: number; at: number; confirmed: number; back?: number; recovered?: number }
}

/** A child process as the summary reports it. */
interface ProcResult {
  name: string
  killed: boolean
  exit?: string
  processed: number
}

/** What a demo run observed. */
export interface DemoRun {
  total: number
  /** Seconds since the start. */
  elapsed: number
  /** Highest n such that the `send()` of every message up to n has resolved. */
  confirmed: number
  processed: Map<number, Copy[]>
  faults: Faults
  workers: readonly ProcResult[]
  closedSenders: readonly ProcResult[]
}

/** Message numbers up to `confirmed` that no worker processed. */
export function lostOf(processed: Map<number, Copy[]>, confirmed: number): number[] {
  const lost: number[] = []
  for (let n = 1; n <= confirmed; n++) if (!processed.has(n)) lost.push(n)
  return lost
}

/** Messages processed more than once, and why, from the copies the workers reported. */
export interface Duplicates {
  messages: number
  /** Runs beyond the first, over all of them. */
  extraRuns: number
  /**
   * Two ids: the producer sent it again. The same attempt twice: a sender redelivered it from a
   * journal (attempts are journaled only on failure). A higher attempt: the sender requeued it
   * after losing the worker that had it.
   */
  why: { resent: number; journal: number; requeued: number }
}

export function duplicatesOf(processed: Map<number, Copy[]>): Duplicates {
  const d: Duplicates = { messages: 0, extraRuns: 0, why: { resent: 0, journal: 0, requeued: 0 } }
  for (const copies of processed.values()) {
    if (copies.length < 2) continue
    d.messages++
    d.extraRuns += copies.length - 1
    const ids = new Set(copies.map((c) => c.id))
    const attempts = new Set(copies.map((c) => `${c.id}/${c.attempt}`))
    if (ids.size > 1) d.why.resent++
    else if (attempts.size < copies.length) d.why.journal++
    else d.why.requeued++
  }
  return d
}

/** The summary's lines, with its two layouts: a labelled field, and a bulleted item. */
export class SummaryText {
  readonly lines: string[] = ["", "Summary"]

  field(label: string, text: string): void {
    this.lines.push(...wrap(text, WIDTH, `  ${label.padEnd(12)}`, " ".repeat(14)))
  }

  item(text: string, label?: string): void {
    const first = label === undefined ? " ".repeat(14) : `  ${label.padEnd(12)}`
    this.lines.push(...wrap(`- ${text}`, WIDTH, first, " ".repeat(16)))
  }

  /** A line of its own under the last field. */
  note(text: string): void {
    this.lines.push(...wrap(text, WIDTH, " ".repeat(14)))
  }

  /** The lost ones, at most ten named. */
  lost(lost: number[]): void {
    this.field(
      "lost",
      lost.length === 0
        ? "0: every message whose send() resolved was processed"
        : `${fmt(lost.length)}: #${lost.slice(0, 10).join(", #")}${lost.length > 10 ? ", …" : ""}`,
    )
  }

  /** "N message(s) processed twice / more than once (…), as at-least-once delivery allows:" */
  duplicates(d: Duplicates): void {
    const times =
      d.extraRuns === d.messages ? "twice" : `more than once (${fmt(d.extraRuns)} extra runs)`
    this.field(
      "duplicates",
      `${count(d.messages, "message")} processed ${times}, as at-least-once delivery allows:`,
    )
  }

  /**
   * The workers' shares, the time, a warning for each child that crashed while closing cleanly,
   * and the verdict; returns the text and whether nothing was lost.
   */
  finish(run: Omit<DemoRun, "faults">, lost: number[]): { text: string; ok: boolean } {
    const total = run.total
    const elapsed = run.elapsed
    this.field(
      "workers",
      run.workers
        .map((w) => `${w.name}: ${fmt(w.processed)}${w.killed ? " (killed)" : ""}`)
        .join(" · "),
    )
    this.field(
      "time",
      total >= 100
        ? `${seconds(elapsed)}, ${fmt(Math.round(total / elapsed))} messages/s with start-up and faults`
        : seconds(elapsed),
    )
    // A child that crashed while closing cleanly at the end does not change what was processed
    // (every worker report was in), but it is a bug worth seeing.
    const closedBadly = [...run.workers, ...run.closedSenders].filter(
      (p) => !p.killed && p.exit !== undefined && p.exit !== "code 0",
    )
    for (const p of closedBadly) {
      this.field("warning", `${p.name} crashed while closing cleanly at the end (${p.exit})`)
    }
    const unconfirmed = total - run.confirmed
    const ok = lost.length === 0 && unconfirmed === 0
    this.lines.push(
      "",
      ok
        ? "OK: nothing lost."
        : `FAILED: ${lost.length > 0 ? `${count(lost.length, "message")} lost` : `${count(unconfirmed, "message")} never confirmed`}.`,
      "",
    )
    return { text: this.lines.join("\n"), ok }
  }
}

/** "1 … its ack … it", "12 … their acks … them". */
export function their(n: number): [string, string] {
  return n === 1 ? ["its ack", "it"] : ["their acks", "them"]
}

/** How a demo explains each kind of duplicate: `acks`/`them` agree with the count. */
export interface DuplicateCauses {
  journal: (n: string, acks: string, them: string) => string
  requeued: (n: string, acks: string, them: string) => string
  resent: (n: string, them: string) => string
}

/**
 * What both demos' summaries begin with: what was sent (`sent` says how), processed and lost, and
 * the duplicates with their causes, worded by `causes`.
 */
export function summaryStart(
  run: Pick<DemoRun, "processed" | "confirmed" | "total">,
  sent: string,
  causes: DuplicateCauses,
): { out: SummaryText; lost: number[] } {
  const lost = lostOf(run.processed, run.confirmed)
  const unconfirmed = run.total - run.confirmed
  const dup = duplicatesOf(run.processed)
  const why = dup.why
  const out = new SummaryText()
  out.field("sent", `${count(run.confirmed, "message")}, every send() resolved (${sent})`)
  if (unconfirmed > 0) out.note(`(${fmt(unconfirmed)} more were never confirmed as sent)`)
  out.field("processed", `${count(run.processed.size, "distinct message")} by the workers`)
  out.lost(lost)
  if (dup.messages === 0) out.field("duplicates", "0")
  else {
    out.duplicates(dup)
    if (why.journal > 0) out.item(causes.journal(fmt(why.journal), ...their(why.journal)))
    if (why.requeued > 0) out.item(causes.requeued(fmt(why.requeued), ...their(why.requeued)))
    if (why.resent > 0) out.item(causes.resent(fmt(why.resent), their(why.resent)[1]))
  }
  return { out, lost }
}

/** The summary's text, and whether nothing was lost. */
export function renderSummary(run: DemoRun): { text: string; ok: boolean } {
  const f = run.faults
  const { out, lost } = summaryStart(run, "journaled", {
    journal: (n, acks, them) =>
      `${n} in flight when the sender was killed: processed, but ${acks} did not reach it (or its journal) before it died, so the restarted sender redelivered ${them}`,
    requeued: (n, acks, them) =>
      `${n} in flight at the killed worker: processed, but ${acks} never left it, so the sender gave ${them} to another worker`,
    resent: (n, them) =>
      `${n} sent twice by the producer: journaled just before the sender was killed, but not yet reported as sent, so the producer sent ${them} again`,
  })
  const faults: string[] = []
  if (f.worker) {
    const requeued =
      f.worker.requeued === undefined
        ? ""
        : `; the sender requeued its ${count(f.worker.requeued, "unacked message")}`
    faults.push(
      `${seconds(f.worker.at)}: ${f.worker.name} killed with SIGKILL${requeued}; ${f.worker.replacement} replaced it`,
    )
  }
  if (f.sender) {
    const back =
      f.sender.back === undefined
        ? ""
        : `; back ${seconds(f.sender.back)} later on the same journal`
    const recovered =
      f.sender.recovered === undefined
        ? ""
        : `, it redelivered the ${count(f.sender.recovered, "unacked message")} it held`
    faults.push(
      `${seconds(f.sender.at)}: the sender killed with SIGKILL after send() #${fmt(f.sender.confirmed)}${back}${recovered}`,
    )
  }
  faults.forEach((text, i) => out.item(text, i === 0 ? "faults" : undefined))
  return out.finish(run, lost)
}

/** "1 message", "2,000 messages". */
export function count(n: number, noun: string): string {
  return `${fmt(n)} ${noun}${n === 1 ? "" : "s"}`
}
