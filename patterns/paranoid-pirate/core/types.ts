/** The core's settings and events, shared by its parts. */
import type { BackoffOptions } from "../../../lib/backoff.js"
import type { Durability } from "../../../lib/journal/types.js"
import type { CurveServerOptions } from "../../../lib/security.js"
import type { BackpressureEvent } from "./admission.js"

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
}

/** Events of the core (re-emitted by `Sender` and `ParanoidPirateQueue`). */
export interface DispatcherEvents {
  "worker:ready": [{ workerId: string; credit: number; protocol: "ppp" | "ppx" }]
  "worker:lost": [{ workerId: string; reason: string; requeued: number }]
  "message:requeued": [{ id: string; attempt: number; reason: string }]
  "message:nacked": [{ id: string; attempt: number; error: string; delay: number }]
  "message:dead": [{ id: string; attempts: number; error: string }]
  backpressure: [BackpressureEvent]
  drained: [Record<string, never>]
  error: [Error]
}
