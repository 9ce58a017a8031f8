/** `zeromq-pirate`: reliable brokerless messaging over ZeroMQ. */
export {
  LazyPirateClient,
  type LazyPirateClientOptions,
  type RequestOptions,
} from "./lazy-pirate/client.js"
export {
  LazyPirateServer,
  type LazyPirateServerOptions,
  type RequestHandler,
} from "./lazy-pirate/server.js"
export {
  Sender,
  type SenderOptions,
  type SenderStats,
  type SendOptions,
  SENDER_DEFAULTS,
} from "./paranoid-pirate/sender.js"
export {
  Worker,
  type WorkerOptions,
  type WorkerStats,
  type JobContext,
  type JobHandler,
  WORKER_DEFAULTS,
} from "./paranoid-pirate/worker.js"
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
