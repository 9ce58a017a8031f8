/** The queue core shared by `Sender` and `ParanoidPirateQueue`. */
export { Dispatcher, internals } from "./dispatcher.js"
export { forward } from "./forward.js"
export type { DispatcherEvents, DispatcherSettings } from "./types.js"
export type { DispatcherStats } from "./counters.js"
export type { BackpressureEvent, WaitReason } from "./admission.js"
