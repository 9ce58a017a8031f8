/**
 * The passive's side of a pair's replication (docs/pair.md, sections 3, 3.5 and 3.6): the
 * hand-over of this node's own entries the active lacks (HANDOVER pages, each until HANDED), the
 * catch-up request, the stream logged in order and acked, then written to the journal in one go
 * with the changes that cancel out left out, and a full copy, whose pages each replace what this
 * node holds in the id range they cover (the range sweep).
 */
import { debug } from "../debug.js"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { idParity, maxId } from "../journal/ids.js"
import type { DeadLetter, JournalEntry } from "../journal/types.js"
import { HeldRecords } from "./held-records.js"
import { wireRecordsOf, type WireRecord } from "./link-wire.js"
import type { CopyPage, HelloFields, RecordsBatch } from "./link.js"
import { chunks, journalPages } from "./pages.js"
import { PassiveLog } from "./passive-log.js"
import { applyRecord } from "./replicated-journal.js"
import { sweep, unscheduleExcept } from "./copy-sweep.js"
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

  readonly #log: PassiveLog
  /**
   * Logged records wait about `hold.ms` for the journal (section 3.6), which takes them every
   * `hold.ms / 4`: most messages are acked within that time, and a message appended and acked
   * while held costs the journal nothing. Beyond `hold.records` records or `hold.bytes` bytes
   * held, the older half goes at once. Held records are in memory, and in the log until the
   * journal has them.
   */
  readonly #hold: { ms: number; records: number; bytes: number }

  #phase: PassivePhase = "off"
  /** The stream this node holds (logged or in its journal), once caught up or copied. */
  #pStream: string | undefined
  /** The seq of `#pStream` logged last: acked, and what a catch-up resumes after. */
  #logged = 0
  /** Records logged and not yet in the journal. */
  #held = new HeldRecords()
  #holdTimer: NodeJS.Timeout | undefined
  /** The records held when the passive's state ended, going to the journal (see `flushed()`). */
  #flushing: Promise<void> = Promise.resolve()
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
  /** Calls of end(), and whether the latest one retries a failed flush (see end()). */
  #ends = 0
  #retryFlush = false
  /** Records that come before this time are not taken: a write failed (see #input). */
  #pausedUntil = 0
  /** Inputs received and not yet started (see #input). */
  #queued = 0
  #chain: Promise<void> = Promise.resolve()
  #handed = new Map<number, () => void>()
  #lastPage: { kind: "pending" | "scheduled"; entries: JournalEntry[] } | undefined

  /**
   * @param options - `sync`: `pair.sync`; `parity`: this node's id parity; `dir`: the journal's
   *   directory, where the log is kept (none: the log is in memory only, as the journal is)
   */
  constructor(
    host: ReplicationHost,
    options: {
      sync: boolean
      parity: 0 | 1
      dir: string | undefined
      hold: { ms: number; records: number; bytes: number }
    },
  ) {
    this.#host = host
    this.#hold = options.hold
    this.#sync = options.sync
    this.#parity = options.parity
    this.#log = new PassiveLog(options.dir, { sync: options.sync })
  }

  /**
   * At open: the records the log holds beyond what the pair file says the journal holds go to
   * the journal (a passive that stopped or crashed with records held). Damage in the log is
   * reported (`PIRATE_JOURNAL_CORRUPT`, an `error`); the records after it are asked for again.
   */
  async recover(): Promise<void> {
    const file = this.#host.pairFile.file
    const { bodies, damage } = await this.#log.recover(file.stream)
    let next = file.applied + 1
    let problem = damage
    const records: WireRecord[] = []
    for (const { first, body } of bodies) {
      // Bodies follow one another (a resent one may overlap): a gap ends what can be applied.
      if (first > next) {
        problem ??= `records ${next} to ${first - 1} are missing from it`
        break
      }
      const list = wireRecordsOf(first, body)
      if (list === undefined) {
        problem ??= "a logged RECORDS body does not read"
        break
      }
      for (const r of list) {
        if (r.seq < next) continue
        records.push(r)
        next++
      }
    }
    if (problem !== undefined) {
      this.#host.error(
        new PirateError(
          "PIRATE_JOURNAL_CORRUPT",
          `the pair's log is damaged (${problem}): records after ${file.applied + records.length} of stream ${String(file.stream)} are not in the journal; the node asks the active for them, and they are lost if no active holds them`,
        ),
      )
    }
    if (records.length > 0 && file.stream !== undefined) {
      const held = new HeldRecords()
      held.above = await this.#host.journal.lastId()
      for (const r of records) held.push(r, 0)
      await this.#toJournal(held, Infinity)
    }
    this.#log.rotate()
    await this.#log.removeRotated(Infinity)
    debug("pair replication: %d logged records recovered", records.length)
  }

  /** Becoming passive: the hand-over comes first. */
  enter(): void {
    this.#phase = "handover"
  }

  /** After the hand-over: applies the stream the pair file names, and asks to be caught up. */
  async catchUp(): Promise<void> {
    const above = await this.#host.journal.lastId()
    if (this.#phase === "off") return // ended meanwhile
    this.#held.above = above
    const file = this.#host.pairFile.file
    this.#pStream = file.stream
    this.#logged = file.stream === undefined ? 0 : file.applied
    this.#received = this.#logged
    this.#askCatchUp()
  }

  /**
   * Ends the passive's state; a hand-over waiting for HANDED sends its page again, and stops. The
   * records held go to the journal (see `flushed()`); with `retry`, a write that fails is tried
   * again every `pair.timeout` until it succeeds or the next `end()` without `retry` (a node
   * cannot become active, nor hand over, without them); without, they stay in the log, which the
   * next open applies.
   */
  end(retry: boolean): void {
    this.#phase = "off"
    this.#copy = undefined
    this.#pStream = undefined
    clearTimeout(this.#ackTimer)
    this.#ackTimer = undefined
    clearTimeout(this.#holdTimer)
    this.#holdTimer = undefined
    for (const wake of this.#handed.values()) wake()
    this.#handed.clear()
    // The records held go to the journal now, whatever comes next: an active reads its journal.
    const ending = ++this.#ends
    this.#retryFlush = retry
    this.#flushing = this.#chain.then(async () => {
      for (;;) {
        try {
          await this.#materialize(Infinity)
          // Everything logged is in the journal.
          this.#log.rotate()
          await this.#log.removeRotated(Infinity)
          return
        } catch (err) {
          this.#host.error(err)
          if (!this.#retryFlush || this.#ends !== ending) return
          await new Promise((resolve) => setTimeout(resolve, this.#host.link.timeout))
          if (!this.#retryFlush) return
        }
      }
    })
    this.#chain = this.#flushing
  }

  /** Writes the records held to the journal now; resolves once they are there. */
  settle(): Promise<void> {
    const done = this.#chain.then(() => this.#materialize(Infinity))
    this.#chain = done.catch(() => undefined)
    return done
  }

  /** Resolves once the records held when the passive's state ended are in the journal. */
  flushed(): Promise<void> {
    return this.#flushing
  }

  /** Records held for the journal, and their bytes (for the tests of its bounds). */
  sizes(): { held: number; heldBytes: number } {
    return { held: this.#held.length, heldBytes: this.#held.bytes }
  }

  /** Adds the catch-up request to a HELLO's fields, once asked. */
  helloFields(fields: HelloFields): void {
    if (this.#host.role() === "passive" && this.#phase !== "off" && this.#phase !== "handover") {
      fields.request = this.#requestNo
      fields.applied = this.#pStream === undefined ? 0 : this.#logged
      if (this.#pStream !== undefined) fields.stream = this.#pStream
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
    const applied = this.#pStream === undefined ? 0 : this.#logged
    return { lag: Math.max(0, this.#received - applied), applied, stream: this.#pStream }
  }

  /** A batch of the active's stream. */
  records(b: RecordsBatch): void {
    this.#input(() => this.#onRecords(b))
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
    for await (const list of journalPages((range) => inner.pending(range), watermark)) {
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
      this.#logged,
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
        ) {
          this.#host.drop(errorMessage(err))
          this.#askCatchUp()
          return
        }
        // A write that failed (a full disk…): the stream waits unacked, and is asked for again
        // after pair.timeout (tick()), not at once, which would fail again as fast as it came.
        this.#host.error(err)
        this.#phase = "requested"
        this.#pausedUntil = performance.now() + this.#host.link.timeout
      }
    })
  }

  async #onRecords(b: RecordsBatch): Promise<void> {
    const { stream, first, records } = b
    if (performance.now() < this.#pausedUntil) return // after a failed write (see #input)
    if (this.#phase === "copy" || this.#pStream === undefined || stream !== this.#pStream) {
      // Records of another stream, or while a copy is under way: left over from before a
      // request (the answer to it comes next).
      if (this.#phase === "tail") {
        this.#host.drop(`RECORDS of stream ${stream} while applying ${String(this.#pStream)}`)
        this.#askCatchUp()
      }
      return
    }
    if (first > this.#logged + 1) {
      if (this.#phase === "tail") {
        this.#host.drop(`records from ${first} after ${this.#logged}`)
        this.#askCatchUp()
      }
      return
    }
    const last = (records.at(-1) as WireRecord).seq
    this.#received = Math.max(this.#received, last)
    if (last > this.#logged) {
      await this.#log.append(stream, first, b.body, last)
      const now = performance.now()
      for (const r of records) if (r.seq > this.#logged) this.#held.push(r, now)
      this.#logged = last
    }
    this.#phase = "tail"
    this.#progress++
    this.#ackSoon()
    if (this.#held.length >= this.#hold.records || this.#held.bytes >= this.#hold.bytes)
      await this.#materialize(this.#held.middleSeq() ?? 0)
    this.#holdSoon()
  }

  /** While records are held: the older ones go to the journal every `hold.ms / 4`. */
  #holdSoon(): void {
    if (this.#holdTimer !== undefined || this.#held.length === 0) return
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = undefined
      this.#input(async () => {
        await this.#materialize(this.#held.seqAt(performance.now() - this.#hold.ms) ?? 0)
        this.#holdSoon()
      })
    }, this.#hold.ms / 4)
  }

  /**
   * The held records up to seq `cut` go to the journal, without what cancels out; on
   * failure they stay held (and logged).
   */
  async #materialize(cut: number): Promise<void> {
    const held = this.#held
    if (held.length === 0 || cut <= this.#host.pairFile.file.applied) return
    this.#log.rotate()
    await this.#toJournal(held, cut)
  }

  /**
   * Writes the records of `held` up to seq `cut` to the journal (see `HeldRecords.take`); then the
   * pair file says the journal holds them, and the log segments that hold nothing newer go.
   */
  async #toJournal(held: HeldRecords, cut: number): Promise<void> {
    const journal = this.#host.journal
    const file = this.#host.pairFile.file
    const last = Math.min(cut, held.lastSeq ?? 0)
    const { records: taken, lastId } = held.take(last)
    // An id the journal never saw (appended and acked while held) still counts for the ids this
    // node gives out once active: they stay above it.
    const top = maxId(file.lastId, lastId)
    if (top !== undefined) file.lastId = top
    try {
      for (const r of taken) await applyRecord(journal, r, { sync: this.#sync })
    } catch (err) {
      held.restore(taken, performance.now())
      throw err
    } finally {
      held.above = await journal.lastId()
    }
    file.applied = last
    await this.#host.pairFile.save()
    await this.#log.removeRotated(last)
  }

  #ackSoon(): void {
    const stream = this.#pStream
    if (stream === undefined) return
    const ack = (): void => {
      clearTimeout(this.#ackTimer)
      this.#ackTimer = undefined
      this.#lastAcked = this.#logged
      this.#host.link.sendAck(stream, this.#logged)
    }
    // Nothing more received to log: the active waits on this ack (a replicated send's batch).
    if (this.#queued === 0 || this.#logged - this.#lastAcked >= ACK_RECORDS) ack()
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
    // What this node acked of the stream it held goes to the journal first: a copy cut short
    // must leave it there.
    await this.#materialize(Infinity)
    this.#phase = "copy"
    this.#copy = { stream, s0, next: 0, swept: {}, scheduled: new Set() }
    this.#pStream = undefined
    this.#logged = 0
    this.#lastPage = undefined
    delete this.#host.pairFile.file.stream
    this.#host.pairFile.file.applied = 0
    await this.#host.pairFile.save()
    this.#log.rotate()
    await this.#log.removeRotated(Infinity)
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
    this.#held.above = await this.#host.journal.lastId()
    this.#logged = e.s0
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
