/**
 * What a chaos run observed: the children's reports (sends confirmed, processings, worker losses,
 * stats) and the faults the harness injected. The harness writes here; the verdict reads it.
 */
import type { Proc } from "./proc.js"
import type { Fault, FaultKind, Loss, Msg, Processing } from "./types.js"

export class Observations {
  readonly #now: () => number
  /** Every processing reported, and the same by message number. */
  readonly processings: Processing[] = []
  readonly byN = new Map<number, Processing[]>()
  readonly faults: Fault[] = []
  readonly faultCount: Record<FaultKind, number> = {
    "worker-kill": 0,
    "worker-stop": 0,
    "sender-kill": 0,
  }
  /** SIGSTOPs that lasted longer than the heartbeat expiry. */
  longStops = 0
  readonly workerLosses: Record<string, number> = {}
  readonly losses: Loss[] = []
  /** Messages found in the journal by each sender that opened. */
  readonly recovered: number[] = []
  /** The sender kill whose replacement has not opened yet. */
  lastCrash: Fault | undefined
  pppRegistrations = 0
  readonly nacks: string[] = []
  /** The last stats of the current sender, and of each worker (for the report of a failed run). */
  senderStats: unknown
  readonly workerStats = new Map<Proc, unknown>()
  rssPeak = 0
  /** Messages whose send was reported resolved. */
  confirmed = 0
  /** The next number the producer was about to send, as last reported. */
  producerNext = 0
  allSent = false
  /** The first error a child reported, or the first unexpected exit. */
  fatal: string | undefined

  constructor(now: () => number) {
    this.#now = now
  }

  /** Distinct message numbers processed. */
  get unique(): number {
    return this.byN.size
  }

  /** Counts an injected fault. */
  fault(fault: Fault): void {
    this.faults.push(fault)
    this.faultCount[fault.kind]++
  }

  /** Throws the first fatal report. */
  check(): void {
    if (this.fatal !== undefined) throw new Error(this.fatal)
  }

  /** A report of a sender; `current`: from the sender now running (not one killed earlier). */
  fromSender(m: Msg, current: boolean): void {
    switch (m.type ?? "") {
      case "sent":
        if (current) {
          this.confirmed = Math.max(this.confirmed, m["upTo"] as number)
          this.producerNext = Math.max(this.producerNext, m["next"] as number)
        }
        break
      case "all-sent":
        if (current) {
          this.allSent = true
          this.confirmed = Math.max(this.confirmed, m["upTo"] as number)
        }
        break
      case "stats":
        if (current) this.senderStats = { stats: m["stats"], workers: m["workers"] }
        break
      case "open":
        this.recovered.push(m["recovered"] as number)
        if (this.lastCrash) {
          this.lastCrash.recovered = m["recovered"] as number
          this.lastCrash.recoveredIds = new Set(m["recoveredIds"] as string[])
        }
        this.lastCrash = undefined
        break
      case "rss":
        this.rssPeak = Math.max(this.rssPeak, m["rss"] as number)
        break
      case "worker:lost": {
        const reason = (m["reason"] as string).replace(/\d+ ms/, "N ms")
        this.workerLosses[reason] = (this.workerLosses[reason] ?? 0) + 1
        this.losses.push({
          t: this.#now(),
          reason,
          requeued: m["requeued"] as number,
          dupIds: new Set(),
        })
        break
      }
      case "nacked":
      case "dead":
        // Handlers never fail here: a nack or a dead letter is the sender's mistake.
        this.nacks.push(`${m.type} ${String(m["id"])}: ${String(m["error"])}`)
        break
      case "worker:ready":
        if (m["protocol"] === "ppp") this.pppRegistrations++
        break
      case "error":
        this.fatal ??= `sender error: ${String(m["message"])}`
        break
      default:
    }
  }

  /** A report of a worker. */
  fromWorker(p: Proc, m: Msg): void {
    if (m.type === "done") {
      const rec: Processing = {
        n: m["n"] as number,
        id: m["id"] as string,
        attempt: m["attempt"] as number,
        pid: p.pid,
        t: this.#now(),
      }
      this.processings.push(rec)
      const list = this.byN.get(rec.n)
      if (list) list.push(rec)
      else this.byN.set(rec.n, [rec])
    } else if (m.type === "stats") this.workerStats.set(p, m["stats"])
    else if (m.type === "error") this.fatal ??= `worker ${p.pid} error: ${String(m["message"])}`
  }
}
