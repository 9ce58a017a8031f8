/**
 * The producer of the demo's sender children (sender.ts, pair-sender.ts): sends messages
 * `{ n }` for `from…to` and reports how far every `send()` has resolved.
 */
import type { DemoPayload } from "./ipc.js"

/** Sends outstanding at a time; the sender's window and journal add backpressure. */
const OUTSTANDING = 64

/**
 * Sends `from…to` with a few sends outstanding at a time. Calls `report(upTo)` with the highest
 * number up to which every `send()` has resolved, at most once per event loop turn, and once
 * more at the end. Rejects with the first `send()` that rejects.
 */
export async function produce(
  send: (payload: DemoPayload) => Promise<unknown>,
  from: number,
  to: number,
  report: (upTo: number) => void,
): Promise<void> {
  let confirmed = from - 1
  const early = new Set<number>()
  let reportScheduled = false
  const flush = (): void => {
    reportScheduled = false
    report(confirmed)
  }
  const confirm = (n: number): void => {
    if (n !== confirmed + 1) {
      early.add(n)
      return
    }
    confirmed = n
    while (early.delete(confirmed + 1)) confirmed++
    if (!reportScheduled) {
      reportScheduled = true
      setImmediate(flush)
    }
  }

  const outstanding: Promise<void>[] = []
  for (let n = from; n <= to; n++) {
    outstanding.push(send({ n }).then(() => confirm(n)))
    if (outstanding.length >= OUTSTANDING) await outstanding.shift()
  }
  await Promise.all(outstanding)
  flush()
}
