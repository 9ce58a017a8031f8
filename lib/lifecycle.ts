import { PirateError, closedError } from "./errors.js"

export type Status = "new" | "opening" | "open" | "closing" | "closed"

/**
 * Open/close bookkeeping shared by every role: `open()` and `close()` are idempotent and safe to
 * call concurrently; closing while opening waits for the open to settle first.
 */
export class Lifecycle {
  #status: Status = "new"
  #opening: Promise<void> | undefined
  #closing: Promise<void> | undefined
  readonly #name: string

  constructor(name: string) {
    this.#name = name
  }

  get status(): Status {
    return this.#status
  }

  open(run: () => Promise<void>): Promise<void> {
    if (this.#closing) return Promise.reject(closedError(this.#name))
    return (this.#opening ??= (async () => {
      this.#status = "opening"
      try {
        await run()
        this.#status = "open"
      } catch (err) {
        this.#status = "closed"
        throw err
      }
    })())
  }

  close(run: () => Promise<void>): Promise<void> {
    return (this.#closing ??= (async () => {
      if (this.#opening) await this.#opening.catch(() => undefined)
      if (this.#status === "closed") return
      this.#status = "closing"
      try {
        await run()
      } finally {
        this.#status = "closed"
      }
    })())
  }

  /** Throws unless open. */
  assertOpen(): void {
    if (this.#status === "open") return
    if (this.#status === "closing" || this.#status === "closed") throw closedError(this.#name)
    throw new PirateError(
      "PIRATE_NOT_OPEN",
      `${this.#name} is not open; call open() first (or use the static open())`,
    )
  }
}
