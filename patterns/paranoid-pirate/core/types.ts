/** The core's settings and events, shared by its parts. */
import type { BackoffOptions } from "../../../lib/backoff.js"
import type { Durability } from "../../../lib/journal/types.js"
import type { CurveServerOptions } from "../../../lib/security.js"
import type { BackpressureEvent } from "./admission.js"
import type { KeyOnDead } from "./keys.js"

/** Settings of the core; `Sender` and `ParanoidPirateQueue` validate and fill them. */
export interface DispatcherSettings {
  heartbeatInterval: number
  liveness: number
  maxAttempts: number
  retryBackoff: Required<BackoffOptions>
  ackTimeout: number
  window: number
  windowBytes: number
  maxBacklog: number
  maxBacklogBytes: number
  maxBatch: number
  durability: Durability
  maxMessageSize: number
  sendTimeout: number
  random: () => number
  curve: CurveServerOptions | undefined
  keyOnDead: KeyOnDead
  /** How long a send id is remembered after its message is acked (ms). */
  dedupeWindow: number
  /**
   * The name of the payload codec (`Sender`'s), stated in WELCOME: a worker that states another
   * is refused. Absent for `ParanoidPirateQueue`, which passes payloads through untouched.
   */
  codec?: string | undefined
  /**
   * A pair's `durability: "replicated"`: resolves once every journal change made so far has reached
   * the passive (undefined: nothing to wait for). A written send resolves only then.
   */
  replicated?: (() => Promise<void> | undefined) | undefined
  /** Message ids all even (0) or all odd (1): set for the two senders of a pair. */
  idParity?: 0 | 1 | undefined
}

/**
 * Events of a `Sender`: the core's, re-emitted by `Sender` and by `ParanoidPirateQueue` (whose
 * `ParanoidPirateQueueEvents` are the same). Declared here under its public name so that the
 * published types name no internal one.
 */
export interface SenderEvents {
  "worker:ready": [{ workerId: string; credit: number; protocol: "ppp" | "ppx" }]
  "worker:lost": [{ workerId: string; reason: string; requeued: number }]
  "message:requeued": [{ id: string; attempt: number; reason: string }]
  "message:nacked": [{ id: string; attempt: number; error: string; delay: number }]
  "message:dead": [{ id: string; attempts: number; error: string }]
  /** A message's `ttl` ran out before it was acked: it is dead-lettered with the error "expired". */
  "message:expired": [{ id: string; attempts: number }]
  backpressure: [BackpressureEvent]
  drained: [Record<string, never>]
  /** This sender became the active one of its pair (a `Sender` with `pair` only). */
  "pair:active": [{ epoch: number; reason: string }]
  /** This sender became (or starts as) the passive one of its pair. */
  "pair:passive": [{ epoch: number; reason: string }]
  error: [Error]
}

/** The core's name for its events. */
export type DispatcherEvents = SenderEvents
