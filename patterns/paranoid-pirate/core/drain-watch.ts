/** `drained()` and the `drained` event: each time the core becomes drained, waiters resolve. */
import { abortedError } from "../../../lib/errors.js"

interface DrainWaiter {
  resolve: () => void
  reject: (err: Error) => void
}

export class DrainWatch {
  readonly #isDrained: () => boolean
  readonly #onDrained: () => void
  readonly #waiters = new Set<DrainWaiter>()
  #was = true

  /**
   * @param isDrained - whether the core is drained now
   * @param onDrained - called each time it becomes drained (emits the event)
   */
  constructor(isDrained: () => boolean, onDrained: () => void) {
    this.#isDrained = isDrained
    this.#onDrained = onDrained
  }

  get size(): number {
    return this.#waiters.size
  }

  /** Something was accepted: the next time the core is drained is an event. */
  busy(): void {
    this.#was = false
  }

  wait(signal: AbortSignal | undefined, closed: Error | undefined): Promise<void> {
    if (this.#isDrained()) return Promise.resolve()
    if (closed) return Promise.reject(closed)
    if (signal?.aborted) return Promise.reject(abortedError(signal))
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiters.delete(waiter)
        reject(abortedError(signal as AbortSignal))
      }
      const waiter: DrainWaiter = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort)
          resolve()
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort)
          reject(err)
        },
      }
      this.#waiters.add(waiter)
      signal?.addEventListener("abort", onAbort, { once: true })
    })
  }

  /** Call after every change that may leave the core drained. */
  check(): void {
    const drained = this.#isDrained()
    if (drained && !this.#was) {
      for (const w of this.#waiters) w.resolve()
      this.#waiters.clear()
      this.#onDrained()
    }
    this.#was = drained
  }

  /** The core closed: waiters resolve if it is drained, else reject with `err`. */
  close(err: Error): void {
    const drained = this.#isDrained()
    for (const w of this.#waiters) {
      if (drained) w.resolve()
      else w.reject(err)
    }
    this.#waiters.clear()
  }
}
