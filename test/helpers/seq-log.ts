import { readFile } from "node:fs/promises"

/** Written to a log by test/fixtures/sf-worker.ts where a new session with the sender starts. */
export const SESSION_MARK = 0xffff_ffff

/** What the sequence-number logs of a run of sf-worker.ts fixtures hold, against 0 … n-1. */
export interface SeqLogReport {
  /** Sequence numbers handled, duplicates included. */
  handled: number
  /** Distinct sequence numbers handled. */
  distinct: number
  /** Handled more than once (first few listed). */
  duplicates: number
  firstDuplicates: number[]
  /** Below `required` and never handled (first few listed). */
  missing: number
  firstMissing: number[]
  /** Outside 0 … n-1. */
  outOfRange: number
  /** Places where a sequence number did not exceed the previous one of its session. */
  orderBreaks: string[]
  /** Sessions in all the logs. */
  sessions: number
}

const FIRST = 10

/**
 * Reads the logs with one byte per sequence number (a log of 1 000 000 takes 4 MB, the check
 * 1 MB more), checking that each session handled its messages in increasing order and that every
 * sequence number below `required` (default n) was handled.
 */
export async function checkSeqLogs(
  files: string[],
  n: number,
  required = n,
): Promise<SeqLogReport> {
  const seen = new Uint8Array(n)
  const r: SeqLogReport = {
    handled: 0,
    distinct: 0,
    duplicates: 0,
    firstDuplicates: [],
    missing: 0,
    firstMissing: [],
    outOfRange: 0,
    orderBreaks: [],
    sessions: 0,
  }
  for (const file of files) {
    const log = await readFile(file)
    let previous = -1
    r.sessions++
    for (let at = 0; at + 4 <= log.length; at += 4) {
      const seq = log.readUInt32LE(at)
      if (seq === SESSION_MARK) {
        previous = -1
        r.sessions++
        continue
      }
      r.handled++
      if (seq <= previous && r.orderBreaks.length < FIRST)
        r.orderBreaks.push(`${file} (session ${r.sessions}): ${seq} after ${previous}`)
      previous = seq
      if (seq >= n) {
        r.outOfRange++
        continue
      }
      if (seen[seq] === 1) {
        r.duplicates++
        if (r.firstDuplicates.length < FIRST) r.firstDuplicates.push(seq)
      } else {
        seen[seq] = 1
        r.distinct++
      }
    }
  }
  for (let seq = 0; seq < required; seq++) {
    if (seen[seq] === 1) continue
    r.missing++
    if (r.firstMissing.length < FIRST) r.firstMissing.push(seq)
  }
  return r
}
