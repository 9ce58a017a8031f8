/**
 * `zeromq-pirate/lib`: the building blocks under the patterns, for custom journals, peers and
 * tools. Everything exported here is the public API under semver; the other modules of `lib/`
 * (the wire protocol's frames, the lifecycle, the socket writer, backoff and liveness, …) are
 * internal and may change in any release.
 */
export {
  PirateError,
  RequestTimeoutError,
  RemoteError,
  DeadLetterError,
  RetryError,
  UnrecoverableError,
  type ErrorCode,
} from "./errors.js"
export { msgpackCodec, rawCodec, type Codec, type CodecOption } from "./codec.js"
export { MemoryJournal } from "./journal/memory.js"
export {
  LevelJournal,
  type LevelJournalOptions,
  type LevelJournalRepairReport,
  type LostEntry,
} from "./journal/level.js"
export { IdGenerator, isMessageId } from "./journal/ids.js"
export type {
  Journal,
  JournalEntry,
  JournalUpdate,
  JournalStats,
  DedupeRecord,
  DeadLetter,
  Durability,
} from "./journal/types.js"
export { DEDUPE_DEFAULTS, type DedupeOptions } from "./journal/dedupe.js"
export {
  renderPrometheus,
  serveMetrics,
  type LatencySummary,
  type Metric,
  type MetricsServer,
} from "./metrics.js"
export {
  generateKeyPair,
  type KeyPair,
  type CurveServerOptions,
  type CurveClientOptions,
} from "./security.js"
export type { BackoffOptions } from "./backoff.js"
export type { Status } from "./lifecycle.js"
