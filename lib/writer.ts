import type { Writable } from "zeromq"

type Frames = Buffer[]

/**
 * Funnels every write to one ZeroMQ socket through a single loop: zeromq.js allows only one
 * pending `send()` per socket (a second concurrent one throws EBUSY).
 */
export class SocketWriter {
  readonly #socket: Writable
  readonly #onError: (err: unknown, frames: Frames) => void
  #queue: Frames[] = []
  #head = 0
  #running: Promise<void> | undefined

  constructor(socket: Writable, onError: (err: unknown, frames: Frames) => void) {
    this.#socket = socket
    this.#onError = onError
  }

  /** Number of messages waiting to be written. */
  get queued(): number {
    return this.#queue.length - this.#head
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
    this.#queue = []
    this.#head = 0
  }

  async #run(): Promise<void> {
    try {
      while (this.#head < this.#queue.length) {
        const frames = this.#queue[this.#head] as Frames
        this.#queue[this.#head] = EMPTY
        this.#head++
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head)
          this.#head = 0
        }
        try {
          await this.#socket.send(frames)
        } catch (err) {
          this.#onError(err, frames)
        }
      }
      this.#queue = []
      this.#head = 0
    } finally {
      this.#running = undefined
    }
  }
}

const EMPTY: Frames = []
