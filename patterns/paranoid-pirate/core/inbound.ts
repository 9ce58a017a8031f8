/**
 * Reads what workers send (PPP and the PPX/1 extension, docs/protocol.md) and calls the core's
 * handler for each. A malformed message is dropped with a reason, never thrown.
 */
import type { Router } from "zeromq"
import { errorCode, errorMessage } from "../../../lib/errors.js"
import {
  PPP,
  PPX,
  decodeNack,
  singleEnvelope,
  unpackEnvelopes,
  type NackInfo,
} from "../../../lib/protocol.js"

export interface InboundHandler {
  /** ROUTER_NOTIFY: the peer's connection dropped. */
  disconnected(key: string): void
  /** Any message from a peer: it is alive. */
  seen(key: string): void
  ready(routingId: Buffer, key: string, frame: Buffer): void
  heartbeat(routingId: Buffer, key: string): void
  goodbye(routingId: Buffer, key: string): void
  /** VOTE (`[0x1b]`, docs/pair.md section 5): taken by a sender of a pair, else dropped. */
  vote(key: string): void
  ack(key: string, envelope: Buffer, body: Buffer): void
  /** ACKS: the packed envelopes and replies; false when they do not split alike (nothing taken). */
  acks(key: string, envelopes: Buffer, replies: Buffer): boolean
  nack(key: string, envelope: Buffer, info: NackInfo): void
  extend(key: string, envelope: Buffer): void
  /** STARTED: the handler of the task this envelope names started. */
  started(key: string, envelope: Buffer): void
  drop(reason: string, key?: string): void
}

/** Reads the ROUTER until it closes, handing each message to the handler. */
export async function receiveLoop(
  router: Router,
  h: InboundHandler,
  closed: () => boolean,
): Promise<void> {
  for (;;) {
    let msg: Buffer[]
    try {
      msg = await router.receive()
    } catch (err) {
      if (closed() || errorCode(err) === "EAGAIN") return
      throw err
    }
    try {
      dispatchInbound(msg, h)
    } catch (err) {
      h.drop(`unexpected error handling a frame: ${errorMessage(err)}`)
    }
  }
}

/** Hands one message from the ROUTER (`[routingId, …frames]`) to the handler. */
export function dispatchInbound(msg: Buffer[], h: InboundHandler): void {
  const routingId = msg[0]
  const first = msg[1]
  if (routingId === undefined || first === undefined)
    return h.drop("message without routing id or body")
  const key = routingId.toString("hex")
  if (msg.length === 2 && first.length === 0) return h.disconnected(key)
  h.seen(key)

  if (msg.length === 2 && first.length >= 1) {
    const cmd = first[0]
    if (cmd === PPP.READY) return h.ready(routingId, key, first)
    if (first.length !== 1) return h.drop("single frame with unknown command", key)
    if (cmd === PPP.HEARTBEAT) return h.heartbeat(routingId, key)
    if (cmd === PPX.GOODBYE) return h.goodbye(routingId, key)
    if (cmd === PPX.VOTE) return h.vote(key)
    return h.drop(`unknown command 0x${cmd?.toString(16) ?? "?"}`, key)
  }

  if (msg.length === 4 && msg[2]?.length === 0 && first.length > 1) {
    // PPP reply: [envelope, "", body]
    return h.ack(key, first, msg[3] as Buffer)
  }
  if (first.length === 1) {
    const cmd = first[0]
    if (cmd === PPX.ACKS && msg.length === 4) {
      // [0x12, envelopes, replies]
      if (!h.acks(key, msg[2] as Buffer, msg[3] as Buffer))
        return h.drop("ACKS whose envelopes do not match its replies", key)
      return
    }
    if (cmd === PPX.ACK) {
      // [0x18, envelope, reply]: one reply as its own frame
      const envelope = singleEnvelope(msg.slice(2))
      if (!envelope) return h.drop("ACK that is not [0x18, envelope, reply]", key)
      return h.ack(key, envelope, msg[3] as Buffer)
    }
    if (cmd === PPX.NACK && msg.length === 4) {
      let info: NackInfo
      try {
        info = decodeNack(msg[3])
      } catch (err) {
        return h.drop(errorMessage(err), key)
      }
      return h.nack(key, msg[2] as Buffer, info)
    }
    if (cmd === PPX.STARTED && msg.length === 3) {
      // [0x16, envelopes]
      const envelopes = unpackEnvelopes(msg[2])
      if (!envelopes) return h.drop("STARTED whose envelopes do not split", key)
      for (const envelope of envelopes) h.started(key, envelope)
      return
    }
    if (cmd === PPX.EXTEND && msg.length >= 3) {
      for (let i = 2; i < msg.length; i++) h.extend(key, msg[i] as Buffer)
      return
    }
  }
  h.drop(`malformed message of ${msg.length - 1} frames`, key)
}
