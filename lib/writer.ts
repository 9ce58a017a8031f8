import type { Writable } from "zeromq"
import { addressInUseError, errorCode } from "./errors.js"
import { Fifo } from "./fifo.js"

type Frames = Buffer[]

/**
 * Funnels every write to one ZeroMQ socket through a single loop: zeromq.js allows only one
 * pending `send()` per socket (a second concurrent one throws EBUSY).
 */
export class SocketWriter {
  readonly #socket: Writable
  readonly #onError: (err: unknown, frames: Frames) => void
  readonly #queue = new Fifo<Frames>()
  #running: Promise<void> | undefined

  constructor(socket: Writable, onError: (err: unknown, frames: Frames) => void) {
    this.#socket = socket
    this.#onError = onError
  }

  /** Number of messages waiting to be written. */
  get queued(): number {
    return this.#queue.length
  }

  /** True while a write is under way or waiting (e.g. for a connection to complete). */
  get busy(): boolean {
    return this.#running !== undefined
  }

  /** Queues a multipart message. Errors go to `onError`; they never throw here. */
  write(frames: Frames): void {
    this.#queue.push(frames)
    this.#running ??= this.#run()
  }

  /** Resolves once everything queued so far is written (or failed). */
  async flushed(): Promise<void> {
    while (this.#running) await this.#running
  }

  /** Drops everything not yet written. */
  clear(): void {
    this.#queue.drain()
  }

  async #run(): Promise<void> {
    try {
      for (let frames = this.#queue.shift(); frames; frames = this.#queue.shift()) {
        try {
          await this.#socket.send(frames)
        } catch (err) {
          this.#onError(err, frames)
        }
      }
    } finally {
      this.#running = undefined
    }
  }
}

/**
 * Binds, retrying for up to `ms` while the address is in use: a socket closed in this process
 * releases its port a little later (libzmq closes listeners in the background), and a role
 * restarted on the same endpoint should not fail because of that. A port held by another
 * process still fails, after the wait, with `PIRATE_ADDRESS_IN_USE` naming `option` (the option
 * that gave the endpoint: `bind`, `frontend`, `backend`) and the endpoint.
 */
export async function bindRetrying(
  socket: { bind(address: string): Promise<void> },
  address: string,
  option: string,
  ms = 1000,
): Promise<void> {
  const until = performance.now() + ms
  for (;;) {
    try {
      await socket.bind(address)
      return
    } catch (err) {
      if (errorCode(err) !== "EADDRINUSE") throw err
      if (performance.now() >= until) throw addressInUseError(option, address, err)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
}
