/**
 * The one way tests wait for a state they cannot await as an event: `vi.waitFor` with the
 * suite's timing. The check is an assertion, so a timeout reports what was last seen
 * ("expected 3 to be 4"), not just that time ran out.
 *
 * ```ts
 * await waitFor(() => expect(sender.stats().acked).toBe(3))
 * ```
 */
import { vi } from "vitest"

export interface WaitOptions {
  /** Give up after this long (ms). @defaultValue 5000 */
  timeout?: number
  /** Re-check this often (ms). @defaultValue 5 */
  interval?: number
}

/**
 * Re-runs `check` until it returns (or its promise resolves) without throwing.
 *
 * @returns what `check` returned the first time it passed
 * @throws the last error of `check` after `timeout` ms
 */
export function waitFor<T>(check: () => T | Promise<T>, options: WaitOptions = {}): Promise<T> {
  return vi.waitFor(check, { timeout: options.timeout ?? 5000, interval: options.interval ?? 5 })
}
