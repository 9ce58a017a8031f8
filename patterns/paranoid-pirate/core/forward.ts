import type { EventEmitter } from "node:events"
import { debug } from "../../../lib/debug.js"
import type { Dispatcher } from "./dispatcher.js"
import type { DispatcherEvents } from "./types.js"

/**
 * Re-emits every core event on the public object. The core's `error`s are failures no caller
 * can see (an ack kept and retried, a backlog page that could not be read): without a listener
 * they are logged, never thrown, since an `error` event nobody listens to would throw out of a
 * background loop and end the process.
 */
export function forward(core: Dispatcher, target: EventEmitter): void {
  const names: (keyof DispatcherEvents)[] = [
    "worker:ready",
    "worker:lost",
    "message:requeued",
    "message:nacked",
    "message:dead",
    "message:expired",
    "backpressure",
    "drained",
  ]
  for (const name of names) core.on(name, (payload: unknown) => target.emit(name, payload))
  core.on("error", (err) => {
    if (target.listenerCount("error") > 0) target.emit("error", err)
    else debug("unhandled background error (no 'error' listener): %s", err.message)
  })
}
