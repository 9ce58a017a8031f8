/**
 * What `pirate demo` (the parent) and its child processes (bin/demo/sender.ts, worker.ts) say
 * to each other over the IPC channel of `child_process.fork()`. Each child gets its settings as
 * one JSON argument.
 */
import type { SenderStats } from "../../patterns/index.js"

/** Settings of the sender child. */
export interface SenderConfig {
  /** The LevelDB journal directory (the same one after a restart). */
  journal: string
  /** `tcp://127.0.0.1:*` the first time, the endpoint it got then after a restart. */
  bind: string
  /** First and last message number to produce (`from > to`: nothing left to produce). */
  from: number
  to: number
  /** The sender's window: how far the producer may run ahead of the workers. */
  window: number
  heartbeatInterval: number
  /** How often to report `stats` (ms). */
  statsInterval: number
}

/** Settings of a worker child. */
export interface WorkerConfig {
  /**
   * The sender's endpoint (both senders' of a pair); when missing, the worker waits for a
   * `ConnectMessage`.
   */
  endpoint?: string | string[]
  concurrency: number
  /** The handler takes a random time between these (ms). */
  minDelay: number
  maxDelay: number
  heartbeatInterval: number
  liveness: number
  /** First reconnect delay (ms); doubles up to 1 s. */
  reconnect: number
}

/** The payload of every demo message. */
export interface DemoPayload {
  /** The message number, 1…N. */
  n: number
}

/** Sender child → parent. */
export type SenderMessage =
  /** Bound and journal opened; `recovered` messages not acked were found in the journal. */
  | { type: "ready"; endpoint: string; recovered: number }
  /** Every `send()` of messages `from…upTo` has resolved (journaled). */
  | { type: "sent"; upTo: number }
  | { type: "stats"; stats: SenderStats }
  | { type: "worker:lost"; reason: string; requeued: number }
  /** Everything produced, and nothing left pending or in flight. */
  | { type: "drained"; stats: SenderStats }
  | { type: "error"; message: string }

/** `[message number, message id, attempt]` of one message a handler has processed. */
export type Processed = [n: number, id: string, attempt: number]

/** Worker child → parent. */
export type WorkerMessage =
  /** The worker's session with the sender at `endpoint` is up (it heard from the sender). */
  | { type: "connected"; endpoint: string }
  | { type: "lost"; endpoint: string; reason: string }
  /** The worker voted for the sender of a pair at `endpoint` (it had no active sender). */
  | { type: "vote"; endpoint: string }
  /** Messages processed; always sent (to the pipe) before the acks leave. */
  | { type: "done"; items: Processed[] }
  /** Closed after `close`: every `done` was sent before this. */
  | { type: "closed" }
  | { type: "error"; message: string }

/** Parent → child: close cleanly (workers finish running handlers first), then exit. */
export interface CloseMessage {
  type: "close"
}

/** Parent → worker started before the sender had bound: connect to this endpoint. */
export interface ConnectMessage {
  type: "connect"
  endpoint: string
}

export type ParentMessage = CloseMessage | ConnectMessage

/** Settings of a sender child of `pirate demo --pair` (bin/demo/pair-sender.ts). */
export interface PairSenderConfig {
  role: "primary" | "backup"
  /** Its own LevelDB journal directory (the same one after a restart). */
  journal: string
  /** The worker endpoint, and the pair socket's own address and the peer's (fixed ports). */
  bind: string
  pairBind: string
  peer: string
  /** The last message number; the parent says where to start (`ProduceMessage`). */
  to: number
  window: number
  heartbeatInterval: number
  statsInterval: number
}

/** Sender child of a pair → parent. */
export type PairSenderMessage =
  /** Open: bound, journal opened; `state` is "passive" until the pair decides. */
  | { type: "ready"; endpoint: string; state: "active" | "passive" }
  /**
   * `pair:active` / `pair:passive`. `pending`: the messages not acked that the node holds right
   * then (on a takeover, its replica of the journal, which it now redelivers).
   */
  | {
      type: "state"
      state: "active" | "passive"
      epoch: number
      reason: string
      pending: number
    }
  | Exclude<SenderMessage, { type: "ready" }>

/** Parent → the active sender of a pair: produce messages `from…to`, then report "drained". */
export interface ProduceMessage {
  type: "produce"
  from: number
}

export type PairParentMessage = CloseMessage | ProduceMessage
