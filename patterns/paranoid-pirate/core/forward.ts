import type { EventEmitter } from "node:events"
import type { Dispatcher } from "./dispatcher.js"
import type { DispatcherEvents } from "./types.js"

/** Re-emits every core event on the public object. */
export function forward(core: Dispatcher, target: EventEmitter): void {
  const names: (keyof DispatcherEvents)[] = [
    "worker:ready",
    "worker:lost",
    "message:requeued",
    "message:nacked",
    "message:dead",
    "backpressure",
    "drained",
    "error",
  ]
  for (const name of names) core.on(name, (payload: unknown) => target.emit(name, payload))
}
