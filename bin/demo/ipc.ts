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
  /** The sender's endpoint; when missing, the worker waits for a `ConnectMessage`. */
  endpoint?: string
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
  /** The worker's session with the sender is up (it heard from the sender). */
  | { type: "connected" }
  | { type: "lost"; reason: string }
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
