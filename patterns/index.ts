/** `zeromq-pirate`: reliable brokerless messaging over ZeroMQ. */
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
  type SenderStats,
  type SenderEvents,
  type SendOptions,
  type RequestToWorkerOptions,
} from "./paranoid-pirate/sender.js"
export type { CoreOptions } from "./paranoid-pirate/settings.js"
export { Worker } from "./paranoid-pirate/worker.js"
export {
  WORKER_DEFAULTS,
  type WorkerOptions,
  type WorkerStats,
  type WorkerEvents,
  type JobContext,
  type JobHandler,
} from "./paranoid-pirate/worker-options.js"
export { ParanoidPirateQueue, type ParanoidPirateQueueOptions } from "./paranoid-pirate/queue.js"
export {
  PirateError,
  RequestTimeoutError,
  RemoteError,
  DeadLetterError,
  type ErrorCode,
} from "../lib/errors.js"
export { MemoryJournal } from "../lib/journal/memory.js"
export { LevelJournal, type LevelJournalOptions } from "../lib/journal/level.js"
export type { Journal, JournalEntry, DeadLetter, Durability } from "../lib/journal/types.js"
export type { CodecOption, Codec } from "../lib/codec.js"
export {
  generateKeyPair,
  type KeyPair,
  type CurveServerOptions,
  type CurveClientOptions,
} from "../lib/security.js"
export type { DedupeOptions } from "../lib/journal/dedupe.js"
export type { QueueStats } from "./paranoid-pirate/queue.js"
