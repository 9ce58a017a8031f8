/**
 * Codec agreement on the sender's side: a worker whose READY states another codec than ours is
 * refused. It is not registered (one that was, on this connection, is lost) and is answered by a
 * WELCOME that states our codec, so that it sees the mismatch, reports it and stops the session;
 * nothing else is ever sent to it, and its HEARTBEATs do not register it as a plain PPP worker
 * while the connection lasts.
 */
import { codecMismatch } from "../../../lib/codec.js"
import { debug } from "../../../lib/debug.js"
import { PPX, encodeWelcome } from "../../../lib/protocol.js"
import type { Counters } from "./counters.js"
import type { DispatcherEvents, DispatcherSettings } from "./types.js"
import type { Hello } from "./workers.js"

/** Connections remembered at most (a refused worker drops its connection at once). */
const MAX_REFUSED = 1024

export interface RefusalsHost {
  readonly name: string
  readonly settings: DispatcherSettings
  readonly counters: Counters
  senderId(): string | undefined
  write(frames: Buffer[]): void
  /** The registered worker on this connection, if any, is lost for `reason`. */
  lose(key: string, reason: string): void
  emit<K extends keyof DispatcherEvents>(event: K, ...args: DispatcherEvents[K]): boolean
}

export class CodecRefusals {
  readonly #h: RefusalsHost
  /** Connections refused at their READY, until they drop. */
  readonly #refused = new Set<string>()

  constructor(host: RefusalsHost) {
    this.#h = host
  }

  /** True while the connection `key` is refused. */
  has(key: string): boolean {
    return this.#refused.has(key)
  }

  /** The connection dropped, or announced a codec that agrees. */
  forget(key: string): void {
    this.#refused.delete(key)
  }

  /**
   * Refuses a READY whose codec differs from ours (both named); reported (`error`, `refused` + 1)
   * once per connection. True when refused.
   */
  refuse(routingId: Buffer, key: string, hello: NonNullable<Hello>): boolean {
    const h = this.#h
    const ours = h.settings.codec
    const mismatch = codecMismatch(
      ours,
      hello.codec,
      `worker ${key}`,
      `this ${h.name}`,
      "the worker is refused and gets no task",
    )
    if (!mismatch) return false
    h.lose(key, "its codec changed and differs from ours")
    if (!this.#refused.has(key)) {
      this.#refused.add(key)
      if (this.#refused.size > MAX_REFUSED)
        this.#refused.delete(this.#refused.values().next().value as string)
      h.counters.refused++
      debug("%s: %s", h.name, mismatch.message)
      h.emit("error", mismatch)
    }
    h.write([
      routingId,
      ...encodeWelcome({
        version: Math.min(hello.version ?? 1, PPX.VERSION),
        heartbeatInterval: hello.heartbeatInterval,
        liveness: hello.liveness,
        maxMessageSize: h.settings.maxMessageSize,
        sender: h.senderId(),
        codec: ours,
      }),
    ])
    return true
  }
}
