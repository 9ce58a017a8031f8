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

/** The summary's text, and whether nothing was lost. */
export function renderSummary(run: DemoRun): { text: string; ok: boolean } {
  const total = run.total
  const elapsed = run.elapsed
  const lost: number[] = []
  for (let n = 1; n <= run.confirmed; n++) if (!run.processed.has(n)) lost.push(n)
  const unconfirmed = total - run.confirmed

  // Why a message was processed more than once, from the copies the workers reported.
  let dupMessages = 0
  let extraRuns = 0
  const why = { resent: 0, journal: 0, requeued: 0 }
  for (const copies of run.processed.values()) {
    if (copies.length < 2) continue
    dupMessages++
    extraRuns += copies.length - 1
    const ids = new Set(copies.map((c) => c.id))
    const attempts = new Set(copies.map((c) => `${c.id}/${c.attempt}`))
    // Two ids: the producer sent it again. The same attempt twice: the restarted sender
    // redelivered it from the journal (attempts are journaled only on failure). A higher
    // attempt: the sender requeued it after losing the worker that had it.
    if (ids.size > 1) why.resent++
    else if (attempts.size < copies.length) why.journal++
    else why.requeued++
  }

  const f = run.faults
  const lines: string[] = ["", "Summary"]
  const field = (label: string, text: string): void => {
    lines.push(...wrap(text, WIDTH, `  ${label.padEnd(12)}`, " ".repeat(14)))
  }
  const item = (text: string, label?: string): void => {
    const first = label === undefined ? " ".repeat(14) : `  ${label.padEnd(12)}`
    lines.push(...wrap(`- ${text}`, WIDTH, first, " ".repeat(16)))
  }
  field("sent", `${count(run.confirmed, "message")}, every send() resolved (journaled)`)
  if (unconfirmed > 0)
    lines.push(
      ...wrap(`(${fmt(unconfirmed)} more were never confirmed as sent)`, WIDTH, " ".repeat(14)),
    )
  field("processed", `${count(run.processed.size, "distinct message")} by the workers`)
  field(
    "lost",
    lost.length === 0
      ? "0: every message whose send() resolved was processed"
      : `${fmt(lost.length)}: #${lost.slice(0, 10).join(", #")}${lost.length > 10 ? ", …" : ""}`,
  )
  if (dupMessages === 0) field("duplicates", "0")
  else {
    const times =
      extraRuns === dupMessages ? "twice" : `more than once (${fmt(extraRuns)} extra runs)`
    field(
      "duplicates",
      `${count(dupMessages, "message")} processed ${times}, as at-least-once delivery allows:`,
    )
    // Grammatical number: "1 … its ack … it", "12 … their acks … them".
    const their = (n: number): [string, string] =>
      n === 1 ? ["its ack", "it"] : ["their acks", "them"]
    if (why.journal > 0) {
      const [acks, them] = their(why.journal)
      item(
        `${fmt(why.journal)} in flight when the sender was killed: processed, but ${acks} did not reach it (or its journal) before it died, so the restarted sender redelivered ${them}`,
      )
    }
    if (why.requeued > 0) {
      const [acks, them] = their(why.requeued)
      item(
        `${fmt(why.requeued)} in flight at the killed worker: processed, but ${acks} never left it, so the sender gave ${them} to another worker`,
      )
    }
    if (why.resent > 0) {
      const [, them] = their(why.resent)
      item(
        `${fmt(why.resent)} sent twice by the producer: journaled just before the sender was killed, but not yet reported as sent, so the producer sent ${them} again`,
      )
    }
  }
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
  faults.forEach((text, i) => item(text, i === 0 ? "faults" : undefined))
  field(
    "workers",
    run.workers
      .map((w) => `${w.name}: ${fmt(w.processed)}${w.killed ? " (killed)" : ""}`)
      .join(" · "),
  )
  field(
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
    field("warning", `${p.name} crashed while closing cleanly at the end (${p.exit})`)
  }
  const ok = lost.length === 0 && unconfirmed === 0
  lines.push(
    "",
    ok
      ? "OK: nothing lost."
      : `FAILED: ${lost.length > 0 ? `${count(lost.length, "message")} lost` : `${count(unconfirmed, "message")} never confirmed`}.`,
    "",
  )
  return { text: lines.join("\n"), ok }
}

/** "1 message", "2,000 messages". */
export function count(n: number, noun: string): string {
  return `${fmt(n)} ${noun}${n === 1 ? "" : "s"}`
}
