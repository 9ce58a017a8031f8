/**
 * A guard for the fuzz tests: unhandled rejections, uncaught exceptions and `error` events fail
 * the test that caused them.
 */
import { EventEmitter } from "node:events"
import { afterAll, afterEach, beforeAll, expect } from "vitest"

/** What escaped to the process while a fuzz file ran. */
export interface ProcessGuard {
  readonly rejections: unknown[]
  readonly exceptions: unknown[]
  /** Errors emitted as `"error"` by the objects under test (see {@link ProcessGuard.watch}). */
  readonly errors: unknown[]
  /** Records the `"error"` events of an emitter (a role under test) into `errors`. */
  watch(emitter: EventEmitter): void
  /** Fails when anything was recorded. */
  check(): void
}

/**
 * Installs process-level `unhandledRejection` and `uncaughtExceptionMonitor` listeners for the
 * file (beforeAll/afterAll) and checks after each test that nothing escaped.
 */
export function guardProcess(): ProcessGuard {
  const guard: ProcessGuard = {
    rejections: [],
    exceptions: [],
    errors: [],
    watch(emitter) {
      emitter.on("error", (err: unknown) => guard.errors.push(err))
    },
    check() {
      expect(guard.rejections, "unhandled rejections").toEqual([])
      expect(guard.exceptions, "uncaught exceptions").toEqual([])
      expect(guard.errors, "'error' events").toEqual([])
    },
  }
  const onRejection = (reason: unknown): void => {
    guard.rejections.push(reason)
  }
  const onException = (err: unknown): void => {
    guard.exceptions.push(err)
  }
  beforeAll(() => {
    process.on("unhandledRejection", onRejection)
    process.on("uncaughtExceptionMonitor", onException)
  })
  afterEach(async () => {
    // A rejection is reported after the microtask queue drains: give it one macrotask.
    await new Promise((r) => setImmediate(r))
    guard.check()
  })
  afterAll(() => {
    process.off("unhandledRejection", onRejection)
    process.off("uncaughtExceptionMonitor", onException)
  })
  return guard
}
