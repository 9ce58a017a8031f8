/**
 * `zeromq-pirate`: reliable brokerless messaging over ZeroMQ. Everything exported here is the
 * public API under semver; modules reached by path are internal (README, "Public API and semver").
 */
export {
  LazyPirateClient,
  LAZY_PIRATE_CLIENT_DEFAULTS,
  type LazyPirateClientOptions,
  type LazyPirateClientStats,
  type LazyPirateClientEvents,
  type RequestOptions,
} from "./lazy-pirate/client.js"
export {
  LazyPirateServer,
  LAZY_PIRATE_SERVER_DEFAULTS,
  REPLY_CACHE_DEFAULTS,
  type LazyPirateServerOptions,
  type LazyPirateServerStats,
  type LazyPirateServerEvents,
  type ReplyCacheOptions,
  type RequestContext,
  type RequestHandler,
} from "./lazy-pirate/server.js"
export {
  Sender,
  SENDER_DEFAULTS,
  type SenderOptions,
  type SenderPairOptions,
  type SenderStats,
  type SenderEvents,
  type SendOptions,
  type RequestToWorkerOptions,
  type WorkerInfo,
} from "./paranoid-pirate/sender.js"
export type { BackpressureEvent, NamedQueueStats, PairStats } from "./paranoid-pirate/core/index.js"
export { Worker } from "./paranoid-pirate/worker.js"
export {
  WORKER_DEFAULTS,
  type WorkerOptions,
  type WorkerStats,
  type WorkerEvents,
  type JobContext,
  type JobHandler,
} from "./paranoid-pirate/worker-options.js"
export {
  ParanoidPirateQueue,
  QUEUE_DEFAULTS,
  type ParanoidPirateQueueOptions,
  type ParanoidPirateQueueEvents,
  type QueueStats,
} from "./paranoid-pirate/queue.js"
export type { Status } from "../lib/lifecycle.js"
export {
  PirateError,
  RequestTimeoutError,
  RemoteError,
  DeadLetterError,
  RetryError,
  UnrecoverableError,
  type ErrorCode,
} from "../lib/errors.js"
export { MemoryJournal } from "../lib/journal/memory.js"
export { LevelJournal, type LevelJournalOptions } from "../lib/journal/level.js"
export type {
  Journal,
  JournalEntry,
  JournalUpdate,
  JournalStats,
  DedupeRecord,
  DeadLetter,
  Durability,
} from "../lib/journal/types.js"
export type { CodecOption, Codec } from "../lib/codec.js"
export type { BackoffOptions } from "../lib/backoff.js"
export type { LatencySummary } from "../lib/metrics.js"
export {
  generateKeyPair,
  type KeyPair,
  type CurveServerOptions,
  type CurveClientOptions,
} from "../lib/security.js"
export type { DedupeOptions } from "../lib/journal/dedupe.js"
