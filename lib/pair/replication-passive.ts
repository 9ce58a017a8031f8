/**
 * The passive's side of a pair's replication (docs/pair.md, sections 3 and 3.5): the hand-over
 * of this node's own entries the active lacks (HANDOVER pages, each until HANDED), the catch-up
 * request, the stream applied in order and acked, and a full copy, whose pages each replace what
 * this node holds in the id range they cover (the range sweep).
 */
import { debug } from "../debug.js"
import { errorCode, errorMessage } from "../errors.js"
import { idParity, maxId } from "../journal/ids.js"
import type { DeadLetter, Journal, JournalEntry } from "../journal/types.js"
import type { CopyPage, HelloFields } from "./link.js"
import { PAGE_ENTRIES, chunks } from "./pages.js"
import { ReplicationApplier, type ReplicationRecord } from "./replicated-journal.js"
import type { ReplicationHost } from "./replication-host.js"

/**
 * The passive acks once it has applied everything it received, else at most ACK_DELAY ms or
 * ACK_RECORDS records later (section 3.2).
 */
const ACK_DELAY = 2
const ACK_RECORDS = 256

type PassivePhase = "off" | "handover" | "requested" | "copy" | "tail"

/** The passive's side of `PairReplication`; its state lasts from `enter()` to `end()`. */
export class ReplicationPassive {
  readonly #host: ReplicationHost
  readonly #sync: boolean
  readonly #parity: 0 | 1

  #phase: PassivePhase = "off"
  #pStream: string | undefined
  #applier: ReplicationApplier | undefined
  #copy:
    | {
        stream: string
        s0: number
        next: number
        /** The last id of each kind's pages so far: the journal is exact up to it. */
        swept: { pending?: string; dead?: string }
        /** The ids of the scheduled pages. */
        scheduled: Set<string>
      }
    | undefined
  #requestNo = 0
  #received = 0
  #progress = 0
  #progressAtTick = -1
  #lastAcked = 0
  #ackTimer: NodeJS.Timeout | undefined
  /** Inputs received and not yet started (see #input). */
  #queued = 0
  #chain: Promise<void> = Promise.resolve()
  #handed = new Map<number, () => void>()
  #lastPage: { kind: "pending" | "scheduled"; entries: JournalEntry[] } | undefined

  /** @param options - `sync`: `pair.sync`; `parity`: this node's id parity */
  constructor(host: ReplicationHost, options: { sync: boolean; parity: 0 | 1 }) {
    this.#host = host
    this.#sync = options.sync
    this.#parity = options.parity
  }

  /** Becoming passive: the hand-over comes first. */
  enter(): void {
    this.#phase = "handover"
  }

  /** After the hand-over: applies the stream the pair file names, and asks to be caught up. */
  catchUp(): void {
    const file = this.#host.pairFile.file
    this.#applier =
      file.stream === undefined
        ? undefined
        : new ReplicationApplier(this.#host.journal, { sync: this.#sync, applied: file.applied })
    this.#pStream = file.stream
    this.#received = file.applied
    this.#askCatchUp()
  }

  /** Ends the passive's state; a hand-over waiting for HANDED sends its page again, and stops. */
  end(): void {
    this.#phase = "off"
    this.#copy = undefined
    this.#applier = undefined
    clearTimeout(this.#ackTimer)
    this.#ackTimer = undefined
    for (const wake of this.#handed.values()) wake()
    this.#handed.clear()
  }

  /** Adds the catch-up request to a HELLO's fields, once asked. */
  helloFields(fields: HelloFields): void {
    if (this.#host.role() === "passive" && this.#phase !== "off" && this.#phase !== "handover") {
      fields.request = this.#requestNo
      fields.applied = this.#applier?.applied ?? 0
      if (this.#pStream !== undefined && this.#applier !== undefined) fields.stream = this.#pStream
    }
  }

  peerLost(): void {
    if (this.#host.role() === "passive" && this.#phase !== "off" && this.#phase !== "handover") {
      // The link opens a new DEALER and says HELLO: make that a new request.
      this.#requestNo++
      if (this.#phase === "tail") this.#phase = "requested"
    }
  }

  tick(): void {
    if (this.#host.role() !== "passive") return
    if (
      (this.#phase === "requested" || this.#phase === "copy") &&
      this.#progress === this.#progressAtTick
    )
      this.#askCatchUp()
    this.#progressAtTick = this.#progress
  }

  stats(): { lag: number; applied: number; stream: string | undefined } {
    const applied = this.#applier?.applied ?? 0
    return { lag: Math.max(0, this.#received - applied), applied, stream: this.#pStream }
  }

  /** A batch of the active's stream. */
  records(b: { stream: string; records: ReplicationRecord[] }): void {
    this.#input(() => this.#onRecords(b.stream, b.records))
  }

  /** A page of a full copy. */
  copy(c: CopyPage): void {
    this.#input(() => this.#onCopy(c))
  }

  /** The end of a full copy. */
  copyEnd(e: { stream: string; s0: number; pages: number; lastId?: string }): void {
    this.#input(() => this.#onCopyEnd(e))
  }

  /** The active took the hand-over page `page`. */
  handed(page: number): void {
    this.#handed.get(page)?.()
  }

  /** Sends HANDOVER pages of own entries above the watermark, each until HANDED. */
  async handover(term: number): Promise<void> {
    const inner = this.#host.journal
    const watermark = this.#host.pairFile.file.watermark
    const mine = (e: JournalEntry): boolean =>
      idParity(e.id) === this.#parity && (watermark === undefined || e.id > watermark)
    let page = 0
    const send = async (
      kind: "pending" | "scheduled",
      entries: JournalEntry[],
      last: boolean,
    ): Promise<void> => {
      for (const chunk of last ? [entries] : chunks(entries)) {
        const n = page++
        for (;;) {
          this.#host.check(term)
          const handed = new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), this.#host.link.timeout)
            this.#handed.set(n, () => {
              clearTimeout(timer)
              resolve(true)
            })
          })
          this.#host.link.sendHandover({ page: n, last, kind, entries: chunk })
          const ok = await handed
          this.#handed.delete(n)
          if (ok) break
        }
        this.#host.check(term)
      }
    }
    let after = watermark
    for (;;) {
      const list = await inner.pending(
        after === undefined ? { limit: PAGE_ENTRIES } : { after, limit: PAGE_ENTRIES },
      )
      if (list.length === 0) break
      after = (list.at(-1) as JournalEntry).id
      const own = list.filter(mine)
      if (own.length > 0) await send("pending", own, false)
    }
    if (inner.due !== undefined) {
      const all = await inner.due({
        until: Number.MAX_SAFE_INTEGER,
        limit: Number.MAX_SAFE_INTEGER,
      })
      const own = all.filter(mine)
      if (own.length > 0) await send("scheduled", own, false)
    }
    await send("pending", [], true)
    // Everything of this node's that it holds, the active holds now.
    const top = maxId(watermark, await inner.lastId())
    if (top !== undefined) this.#host.pairFile.file.watermark = top
    debug("pair replication: handed over %d pages", page)
    await this.#host.pairFile.save()
  }

  #askCatchUp(): void {
    if (this.#host.role() !== "passive") return
    this.#requestNo++
    this.#phase = "requested"
    debug(
      "pair replication: catch-up request %d from %s:%d",
      this.#requestNo,
      this.#pStream,
      this.#applier?.applied ?? 0,
    )
    this.#host.link.hello()
  }

  /** Runs an input after the previous ones, in order. */
  #input(step: () => Promise<void>): void {
    if (this.#host.role() !== "passive" || this.#phase === "off" || this.#phase === "handover")
      return
    const term = this.#host.term()
    this.#queued++
    this.#chain = this.#chain.then(async () => {
      this.#queued--
      if (this.#host.term() !== term) return
      try {
        await step()
      } catch (err) {
        if (this.#host.term() !== term) return
        if (
          err instanceof TypeError ||
          err instanceof RangeError ||
          errorCode(err) === "PIRATE_PROTOCOL"
        )
          this.#host.drop(errorMessage(err))
        else this.#host.error(err)
        this.#askCatchUp()
      }
    })
  }

  async #onRecords(stream: string, records: ReplicationRecord[]): Promise<void> {
    const applier = this.#applier
    if (this.#phase === "copy" || applier === undefined || stream !== this.#pStream) {
      // Records of another stream, or while a copy is under way: left over from before a
      // request (the answer to it comes next).
      if (this.#phase === "tail") {
        this.#host.drop(`RECORDS of stream ${stream} while applying ${String(this.#pStream)}`)
        this.#askCatchUp()
      }
      return
    }
    const first = (records[0] as ReplicationRecord).seq
    if (first > applier.applied + 1) {
      if (this.#phase === "tail") {
        this.#host.drop(`records from ${first} after ${applier.applied}`)
        this.#askCatchUp()
      }
      return
    }
    const last = (records.at(-1) as ReplicationRecord).seq
    this.#received = Math.max(this.#received, last)
    await applier.apply(records)
    this.#phase = "tail"
    this.#progress++
    this.#host.pairFile.file.stream = stream
    this.#host.pairFile.file.applied = applier.applied
    this.#host.pairFile.saveSoon()
    this.#ackSoon()
  }

  #ackSoon(): void {
    const applier = this.#applier
    const stream = this.#pStream
    if (applier === undefined || stream === undefined) return
    const ack = (): void => {
      clearTimeout(this.#ackTimer)
      this.#ackTimer = undefined
      this.#lastAcked = applier.applied
      this.#host.link.sendAck(stream, applier.applied)
    }
    // Nothing more received to apply: the active waits on this ack (a replicated send's batch).
    if (this.#queued === 0 || applier.applied - this.#lastAcked >= ACK_RECORDS) ack()
    else this.#ackTimer ??= setTimeout(ack, ACK_DELAY)
  }

  /**
   * A copy starts (again). The journal is not emptied first: each page replaces what this node
   * holds in the id range it covers (see #sweep), so that until COPY_END the journal holds at
   * least what it held before or what the copy brought. A failover in the middle of a copy then
   * costs duplicates, never the messages this node held. The pair file must not say it holds a
   * stream meanwhile.
   */
  async #beginCopy(stream: string, s0: number): Promise<void> {
    this.#phase = "copy"
    this.#copy = { stream, s0, next: 0, swept: {}, scheduled: new Set() }
    this.#applier = undefined
    this.#pStream = undefined
    this.#lastPage = undefined
    delete this.#host.pairFile.file.stream
    this.#host.pairFile.file.applied = 0
    await this.#host.pairFile.save()
  }

  async #onCopy(c: CopyPage): Promise<void> {
    if (c.page === 0) await this.#beginCopy(c.stream, c.s0)
    const copy = this.#copy
    if (this.#phase !== "copy" || copy === undefined) return
    if (copy.stream !== c.stream || copy.s0 !== c.s0 || copy.next !== c.page) {
      this.#host.drop(`COPY page ${c.page} of ${c.stream}:${c.s0}`)
      this.#askCatchUp()
      return
    }
    switch (c.kind) {
      case "pending":
        await this.#host.journal.append(c.entries, { sync: false })
        this.#lastPage = { kind: "pending", entries: c.entries }
        break
      case "scheduled":
        if (this.#host.journal.schedule === undefined)
          throw new TypeError("the journal has no schedule()")
        await this.#host.journal.schedule(c.entries, { sync: false })
        for (const e of c.entries) copy.scheduled.add(e.id)
        this.#lastPage = { kind: "scheduled", entries: c.entries }
        break
      case "dead":
        await this.#host.journal.bury(c.entries as DeadLetter[])
        break
    }
    if (c.kind !== "scheduled") {
      const last = c.entries.at(-1)?.id
      if (last !== undefined) {
        await sweep(this.#host.journal, c.kind, copy.swept[c.kind], last, c.entries)
        copy.swept[c.kind] = last
      }
    }
    copy.next++
    this.#progress++
    this.#host.link.sendAck(c.stream, 0, c.page)
  }

  async #onCopyEnd(e: {
    stream: string
    s0: number
    pages: number
    lastId?: string
  }): Promise<void> {
    // A copy of an empty journal has no page.
    if (e.pages === 0) await this.#beginCopy(e.stream, e.s0)
    const copy = this.#copy
    if (this.#phase !== "copy" || copy === undefined) return
    if (copy.stream !== e.stream || copy.s0 !== e.s0 || copy.next !== e.pages) {
      this.#host.drop(`COPY_END of ${e.stream}:${e.s0} after ${copy.next} pages`)
      this.#askCatchUp()
      return
    }
    // What this node held beyond the last page of each kind, and scheduled entries no page
    // brought, the active did not hold at the copy: gone.
    await sweep(this.#host.journal, "dead", copy.swept.dead, undefined, [])
    await sweep(this.#host.journal, "pending", copy.swept.pending, undefined, [])
    await unscheduleExcept(this.#host.journal, copy.scheduled)
    // With pair.sync, the copy is synced once: the last page written again, synced (pages are
    // in the order dead, scheduled, pending, so that is a pending page unless there is none).
    const last = this.#lastPage
    if (this.#sync && last !== undefined) {
      if (last.kind === "pending") await this.#host.journal.append(last.entries, { sync: true })
      else await this.#host.journal.schedule?.(last.entries, { sync: true })
    }
    this.#lastPage = undefined
    this.#copy = undefined
    this.#applier = new ReplicationApplier(this.#host.journal, { sync: this.#sync, applied: e.s0 })
    this.#pStream = e.stream
    this.#received = e.s0
    this.#phase = "tail"
    this.#progress++
    this.#host.pairFile.file.stream = e.stream
    this.#host.pairFile.file.applied = e.s0
    const lastId = maxId(this.#host.pairFile.file.lastId, e.lastId)
    if (lastId !== undefined) this.#host.pairFile.file.lastId = lastId
    await this.#host.pairFile.save()
    this.#lastAcked = e.s0
    this.#host.link.sendAck(e.stream, e.s0)
    debug("pair replication: copied at %d", e.s0)
  }
}

/**
 * A copy page of `kind` covers the ids after `after` up to `until` (to the end when undefined):
 * removes what the journal holds of that kind in the range and the page does not.
 */
async function sweep(
  j: Journal,
  kind: "pending" | "dead",
  after: string | undefined,
  until: string | undefined,
  page: readonly JournalEntry[],
): Promise<void> {
  const keep = new Set(page.map((e) => e.id))
  let cursor = after
  for (;;) {
    const from = cursor === undefined ? {} : { after: cursor }
    const held =
      kind === "pending"
        ? await j.pending({ ...from, ...(until === undefined ? {} : { until }), limit: 1024 })
        : (await j.dead({ ...from, limit: 1024 })).filter(
            (d) => until === undefined || d.id <= until,
          )
    if (held.length === 0) return
    const gone = held.filter((e) => !keep.has(e.id)).map((e) => e.id)
    if (gone.length > 0) await (kind === "pending" ? j.remove(gone) : j.purgeDead(gone))
    cursor = (held.at(-1) as JournalEntry).id
    if (until !== undefined && cursor >= until) return
  }
}

/** Unschedules every scheduled entry not in `keep` (after a full copy). */
async function unscheduleExcept(j: Journal, keep: ReadonlySet<string>): Promise<void> {
  if (j.due === undefined || j.unschedule === undefined) return
  // due() has no cursor: read all, as the copy does (docs/pair.md).
  const all = await j.due({ until: Number.MAX_SAFE_INTEGER, limit: Number.MAX_SAFE_INTEGER })
  const gone = all.filter((e) => !keep.has(e.id)).map((e) => e.id)
  if (gone.length > 0) await j.unschedule(gone)
}
