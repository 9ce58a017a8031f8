/** The ROUTER that workers connect to, with the options the core relies on. */
import { Router, capability } from "zeromq"
import { debug } from "../../../lib/debug.js"
import { errorMessage } from "../../../lib/errors.js"

/** libzmq draft option ZMQ_ROUTER_NOTIFY and its "disconnect" flag. */
const ZMQ_ROUTER_NOTIFY = 97
const ZMQ_NOTIFY_DISCONNECT = 2

/**
 * A ROUTER that fails a send to a vanished worker (`mandatory`, `sendTimeout`) instead of
 * dropping it, refuses inbound messages over `maxMessageSize`, and reports dropped connections.
 */
export function workerRouter(s: { sendTimeout: number; maxMessageSize: number }): Router {
  const router = new Router({
    linger: 0,
    mandatory: true,
    sendTimeout: s.sendTimeout,
    maxMessageSize: s.maxMessageSize,
    sendHighWaterMark: 100_000,
    receiveHighWaterMark: 100_000,
  })
  // Tells us at once when a worker's connection drops (crash, kill), so its messages are
  // redelivered without waiting for the heartbeat timeout. Heartbeats remain the authority for
  // hung workers.
  if (capability.draft) setRouterNotify(router)
  return router
}

function setRouterNotify(router: Router): void {
  // zeromq.js exposes raw option setters as protected methods; the option is a libzmq draft.
  const raw = router as unknown as { setInt32Option(option: number, value: number): void }
  try {
    raw.setInt32Option(ZMQ_ROUTER_NOTIFY, ZMQ_NOTIFY_DISCONNECT)
  } catch (err) {
    debug("ROUTER_NOTIFY unavailable, relying on heartbeats: %s", errorMessage(err))
  }
}
