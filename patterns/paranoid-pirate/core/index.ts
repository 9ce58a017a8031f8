/** The queue core shared by `Sender` and `ParanoidPirateQueue`. */
export { Dispatcher, forward, internals } from "./dispatcher.js"
export type { DispatcherEvents, DispatcherSettings } from "./types.js"
export type { DispatcherStats } from "./counters.js"
export type { BackpressureEvent, WaitReason } from "./admission.js"
