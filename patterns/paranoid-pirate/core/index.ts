/** The queue core shared by `Sender` and `ParanoidPirateQueue`. */
export { Dispatcher, internals, type RestoreHook } from "./dispatcher.js"
export type { Waiter } from "./message.js"
export { forward } from "./forward.js"
export type { DispatcherEvents, DispatcherSettings, SenderEvents } from "./types.js"
export { statsMetrics, type DispatcherStats, type PairStats, type SenderStats } from "./counters.js"
export type { BackpressureEvent, WaitReason } from "./admission.js"
export type { WorkerInfo } from "./workers.js"
export type { NamedQueueStats } from "./queues.js"
