/** The core's counters and gauges, as `stats()` and as Prometheus metrics. */
import type { NamedQueueStats } from "./queues.js"
import {
  LatencyHistogram,
  metricsOf,
  type LatencySummary,
  type Metric,
} from "../../../lib/metrics.js"

/**
 * A snapshot of a `Sender`'s counters: the core's, which `ParanoidPirateQueue`'s `QueueStats`
 * extend. Declared here under its public name so that the published types name no internal one.
 */
export interface SenderStats {
  /** Messages waiting for a worker (those waiting behind an older message of their `key` too). */
  ready: number
  /** Messages handed to a worker and not yet acked. */
  inFlight: number
  /** Messages waiting for their retry delay. */
  delayed: number
  /**
   * Messages sent with a `delay` or `notBefore` that is not due yet (in the journal's scheduled
   * store, or in memory without a persistent journal).
   */
  scheduled: number
  /** Pending messages on disk, not in memory: they are paged in, oldest first, as the window frees. */
  backlog: number
  /** Payload bytes of the backlog (estimated for a backlog found at open, exact for what was sent since). */
  backlogBytes: number
  /** Messages in memory (ready, in flight, delayed, being journaled): at most `window`. */
  inWindow: number
  /**
   * Payload bytes of the messages in memory: at most `windowBytes`, or one message's when a
   * single message is larger.
   */
  inWindowBytes: number
  /** Producers waiting for room (`maxBacklog`, `maxBacklogBytes`, `window` or `windowBytes`). */
  waiting: number
  /** Dead letters in the journal. */
  dead: number
  /** Messages whose `ttl` ran out before they were acked (dead-lettered as "expired"), since open. */
  expired: number
  /** Messages accepted since open. */
  sent: number
  /**
   * Sends with a send id (`send(payload, { id })`) that enqueued nothing since open: the id named
   * a message pending, dead, or acked within `dedupeWindow`.
   */
  deduplicated: number
  /** Messages acknowledged since open. */
  acked: number
  /** Handler failures reported by workers since open. */
  nacked: number
  /** Messages handed out again after a lost worker, an ack timeout or a nack, since open. */
  redelivered: number
  /** Acks ignored because they named an attempt no longer in flight. */
  staleAcks: number
  /** Malformed or unexpected frames dropped. */
  dropped: number
  /** Connected workers. */
  workers: number
  /** Workers lost (heartbeat expired, disconnected, unreachable) since open. */
  workersLost: number
  /**
   * Connection attempts refused by the CURVE policy since open: keys not on the allow list,
   * peers without CURVE, peers with a wrong server key.
   */
  denied: number
  /**
   * Worker connections refused at their READY since open: the worker's codec differs from this
   * sender's (`PIRATE_CODEC_MISMATCH`).
   */
  refused: number
  /** Time from acceptance to ack of acked messages (ms), since open. */
  latency: LatencySummary
  /** Each named queue's figures, by name (`"default"` always among them). */
  queues: Record<string, NamedQueueStats>
  /** The sender pair (a `Sender` with the `pair` option only). */
  pair?: PairStats
}

/** `stats().pair`: a sender of a high-availability pair (docs/pair.md). */
export interface PairStats {
  role: "primary" | "backup"
  /** `"active"` only while this sender takes sends and dispatches. */
  state: "active" | "passive"
  /** The pair's term: it grows each time a node becomes active. */
  epoch: number
  /** The other sender: heard within `pair.timeout`, silent longer, or never heard since the start. */
  peer: "alive" | "lost" | "unknown"
  /** True while a passive peer is caught up with this active sender's journal. */
  replicated: boolean
  /** Journal changes sent to the passive and not yet acknowledged. */
  lag: number
  /** Malformed or stale messages of the pair link dropped. */
  dropped: number
}

/** The core's name for its counters. */
export type DispatcherStats = SenderStats

/** The gauges the core measures when asked. */
export type Gauges = Pick<
  DispatcherStats,
  | "ready"
  | "inFlight"
  | "delayed"
  | "scheduled"
  | "backlog"
  | "backlogBytes"
  | "inWindow"
  | "inWindowBytes"
  | "waiting"
  | "workers"
  | "queues"
>

export class Counters {
  sent = 0
  acked = 0
  nacked = 0
  redelivered = 0
  staleAcks = 0
  dropped = 0
  dead = 0
  expired = 0
  deduplicated = 0
  workersLost = 0
  denied = 0
  refused = 0
  readonly latency = new LatencyHistogram()

  stats(gauges: Gauges): DispatcherStats {
    return {
      ready: gauges.ready,
      inFlight: gauges.inFlight,
      delayed: gauges.delayed,
      scheduled: gauges.scheduled,
      backlog: gauges.backlog,
      backlogBytes: gauges.backlogBytes,
      inWindow: gauges.inWindow,
      inWindowBytes: gauges.inWindowBytes,
      waiting: gauges.waiting,
      dead: this.dead,
      expired: this.expired,
      sent: this.sent,
      deduplicated: this.deduplicated,
      acked: this.acked,
      nacked: this.nacked,
      redelivered: this.redelivered,
      staleAcks: this.staleAcks,
      dropped: this.dropped,
      workers: gauges.workers,
      workersLost: this.workersLost,
      denied: this.denied,
      refused: this.refused,
      latency: this.latency.summary(),
      queues: gauges.queues,
    }
  }
}

/** The stats as metrics for the Prometheus text format (`prefix` e.g. "pirate_sender"). */
export function statsMetrics(prefix: string, s: DispatcherStats): Metric[] {
  const { gauge: g, counter: c, summary } = metricsOf(prefix)
  return [
    g("ready", "Messages waiting for a worker.", s.ready),
    g("in_flight", "Messages handed to a worker and not yet acked.", s.inFlight),
    g("delayed", "Messages waiting for their retry delay.", s.delayed),
    g("scheduled", "Messages sent with a delay that are not due yet.", s.scheduled),
    g("backlog", "Pending messages on disk not yet loaded into memory.", s.backlog),
    g("backlog_bytes", "Payload bytes of the backlog on disk.", s.backlogBytes),
    g("in_window", "Messages held in memory (the window).", s.inWindow),
    g("in_window_bytes", "Payload bytes held in memory (the window).", s.inWindowBytes),
    g("waiting", "Producers waiting for room.", s.waiting),
    g("dead", "Dead letters in the journal.", s.dead),
    g("workers", "Connected workers.", s.workers),
    c("sent", "Messages accepted.", s.sent),
    c("deduplicated", "Sends whose send id named a message already sent.", s.deduplicated),
    c("acked", "Messages acknowledged by a worker.", s.acked),
    c("nacked", "Handler failures reported by workers.", s.nacked),
    c("redelivered", "Messages delivered again after a failure or a lost worker.", s.redelivered),
    c("stale_acks", "Acks ignored because their attempt was no longer in flight.", s.staleAcks),
    c("expired", "Messages whose time to live ran out before an ack.", s.expired),
    c("dropped", "Malformed or unexpected frames dropped.", s.dropped),
    c("workers_lost", "Workers lost.", s.workersLost),
    c("denied", "Connection attempts refused by the CURVE policy.", s.denied),
    c("refused", "Worker connections refused because their codec differs.", s.refused),
    summary("ack_latency_seconds", "Time from acceptance to ack.", s.latency),
    ...queueMetrics(prefix, s.queues),
    ...(s.pair === undefined ? [] : pairMetrics(prefix, s.pair)),
  ]
}

/** A pair's figures (a `Sender` with `pair`). */
function pairMetrics(prefix: string, p: PairStats): Metric[] {
  const { gauge: g, counter: c } = metricsOf(prefix)
  return [
    g(
      "pair_active",
      "1 while this sender is the active one of its pair.",
      p.state === "active" ? 1 : 0,
    ),
    g("pair_epoch", "The pair's term: it grows each time a node becomes active.", p.epoch),
    g(
      "pair_peer_alive",
      "1 while the other sender of the pair is heard.",
      p.peer === "alive" ? 1 : 0,
    ),
    g(
      "pair_replicated",
      "1 while a passive peer is caught up with this sender's journal.",
      p.replicated ? 1 : 0,
    ),
    g("pair_lag", "Journal changes sent to the passive and not yet acknowledged.", p.lag),
    c("pair_dropped", "Malformed or stale messages of the pair link dropped.", p.dropped),
  ]
}

/** The figures of a named queue that are exported, with their metric's kind and help. */
const QUEUE_METRICS: readonly [
  kind: "gauge" | "counter",
  name: string,
  field: keyof NamedQueueStats,
  help: string,
][] = [
  ["gauge", "queue_ready", "ready", "Messages of the queue waiting for a worker."],
  ["gauge", "queue_in_flight", "inFlight", "Messages of the queue handed to a worker, not acked."],
  ["gauge", "queue_in_window", "inWindow", "Messages of the queue held in memory."],
  ["gauge", "queue_backlog", "backlog", "Messages of the queue known to wait on disk."],
  ["gauge", "queue_workers", "workers", "Connected workers that take the queue."],
  ["counter", "queue_sent", "sent", "Messages of the queue accepted."],
  ["counter", "queue_acked", "acked", "Messages of the queue acknowledged by a worker."],
  ["counter", "queue_nacked", "nacked", "Handler failures of the queue's messages."],
  ["counter", "queue_redelivered", "redelivered", "Messages of the queue delivered again."],
  ["counter", "queue_dead_lettered", "deadLettered", "Messages of the queue dead-lettered."],
  ["counter", "queue_expired", "expired", "Messages of the queue whose time to live ran out."],
]

/**
 * One family per figure of `stats().queues`, one series per queue (label `queue`, names in
 * sorted order so that scrapes list them alike).
 */
function queueMetrics(prefix: string, queues: Record<string, NamedQueueStats>): Metric[] {
  const m = metricsOf(prefix)
  const names = Object.keys(queues).sort()
  const out: Metric[] = []
  for (const [kind, name, field, help] of QUEUE_METRICS)
    for (const queue of names)
      out.push(m[kind](name, help, (queues[queue] as NamedQueueStats)[field], { queue }))
  return out
}
