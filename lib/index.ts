/** `zeromq-pirate/lib`: the building blocks under the patterns, for custom peers and tools. */
export {
  PirateError,
  RequestTimeoutError,
  RemoteError,
  DeadLetterError,
  type ErrorCode,
} from "./errors.js"
export { msgpackCodec, rawCodec, resolveCodec, type Codec, type CodecOption } from "./codec.js"
export { Backoff, backoffDelay, BACKOFF_DEFAULTS, type BackoffOptions } from "./backoff.js"
export { Liveness, LIVENESS_DEFAULTS, type LivenessOptions } from "./liveness.js"
export * as protocol from "./protocol.js"
export { MemoryJournal } from "./journal/memory.js"
export {
  LevelJournal,
  type LevelJournalOptions,
  type LevelJournalRepairReport,
} from "./journal/level.js"
export { IdGenerator, isMessageId } from "./journal/ids.js"
export type {
  Journal,
  JournalEntry,
  JournalUpdate,
  JournalStats,
  DeadLetter,
  Durability,
} from "./journal/types.js"
export {
  LatencyHistogram,
  renderPrometheus,
  serveMetrics,
  type LatencySummary,
  type Metric,
  type MetricsServer,
} from "./metrics.js"
export { DedupeStore, DEDUPE_DEFAULTS, type DedupeOptions } from "./journal/dedupe.js"
export {
  generateKeyPair,
  z85,
  type KeyPair,
  type CurveServerOptions,
  type CurveClientOptions,
} from "./security.js"
