/** The settings, the results and the records of a chaos run (see harness.ts). */

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

/** The options with their defaults filled in. */
export type ChaosSettings = Required<ChaosOptions>

export function chaosSettings(options: ChaosOptions): ChaosSettings {
  return {
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
}

/** A message from a child over its IPC channel. */
export type Msg = Record<string, unknown> & { type?: string }

/** One handler completion, as a worker reported it. */
export interface Processing {
  n: number
  id: string
  attempt: number
  pid: number
  t: number
}

/** An injected fault, and the duplicates it explains. */
export interface Fault {
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

/** A worker the sender gave up without an injected fault, and the duplicates it explains. */
export interface Loss {
  t: number
  reason: string
  requeued: number
  dupIds: Set<string>
}
