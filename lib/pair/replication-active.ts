/**
 * The active's side of a pair's replication (docs/pair.md, section 3): the ring of the current
 * stream's records, the session of the passive it serves with flow control (the tail of the ring,
 * or a full copy in pages when the ring no longer holds what the passive needs), the appends that
 * wait for the passive's acks (`durability: "replicated"`), and the receiver of a returning node's
 * hand-over.
 */
import { randomBytes } from "node:crypto"
import { debug } from "../debug.js"
import { PirateError } from "../errors.js"
import { idParity, maxId, previousId } from "../journal/ids.js"
import type { Journal, JournalEntry } from "../journal/types.js"
import type { CopyPage, HandoverPage, PeerHello } from "./link.js"
import { chunks, entriesBytes, journalPages } from "./pages.js"
import { toWire } from "./link-wire.js"
import { RecordRing, recordBytes, type RingRecord } from "./record-ring.js"
import { ReplicatedJournal, type ReplicationRecord } from "./replicated-journal.js"
import type { ReplicationHost } from "./replication-host.js"

/** Records per RECORDS message, and its bytes (at least one record). */
const BATCH_RECORDS = 256
const BATCH_BYTES = 1024 * 1024
/** HANDOVER pages the active remembers (per term) so as not to write a page sent again twice. */
const HANDED_PAGES = 64

/** The passive being served by this active node. */
interface Session {
  node: string
  request: number
  phase: "tail" | "copy"
  /** The seq of the next record to send. */
  next: number
  /** The passive holds the stream up to here once it acked it: it is then caught up. */
  caughtUpAt: number
  /** During a copy: pages sent, the last page acked, and the bytes of each page in flight. */
  pagesSent: number
  pageAcked: number
  inFlight: Map<number, number>
  /** `acked` at the last tick (a stalled stream is resent from `acked`). */
  ackedAtTick: number
}

interface Waiter {
  seq: number
  resolve: () => void
  reject: (err: Error) => void
}

/** What the active's side needs of the coordinator besides the common host. */
export interface ActiveHost extends ReplicationHost {
  /** A passive became caught up (`true`), or the active is alone again (`false`). */
  replicatedChanged(replicated: boolean): void
  /** Entries a returning node handed over were written (the `handover` event). */
  handedOver(event: { pending: JournalEntry[]; scheduled: JournalEntry[] }): void
}

export interface ReplicationActiveOptions {
  /** `durability: "replicated"`. */
  replicated: boolean
  whenAlone: "wait" | "local"
  parity: 0 | 1
  window: { records: number; bytes: number }
  backlog: { records: number; bytes: number }
  room: ((n: number) => Promise<void>) | undefined
}

/** The active's side of `PairReplication`; its state lasts from `start()` to `end()`. */
export class ReplicationActive {
  readonly #host: ActiveHost
  readonly #room: ((n: number) => Promise<void>) | undefined
  readonly #replicatedDurability: boolean
  readonly #whenAlone: "wait" | "local"
  readonly #parity: 0 | 1
  readonly #window: { records: number; bytes: number }
  readonly #backlog: { records: number; bytes: number }

  #stream: string | undefined
  #rj: ReplicatedJournal | undefined
  #ring = new RecordRing()
  #acked = 0
  #waiters: Waiter[] = []
  #waiterHead = 0
  #session: Session | undefined
  #replicated = false
  #pumpScheduled = false
  #copyWake: (() => void) | undefined
  #handing: Promise<void> = Promise.resolve()
  /**
   * The HANDOVER pages of this term (the latest {@link HANDED_PAGES}), by content: a copy the
   * returning node sent again (each `timeout` until HANDED) while the page was being written, or
   * after, is answered once that write is done, not written again.
   */
  #handedPages = new Map<string, Promise<void>>()
  #handedTerm = -1

  constructor(host: ActiveHost, options: ReplicationActiveOptions) {
    this.#host = host
    this.#room = options.room
    this.#replicatedDurability = options.replicated
    this.#whenAlone = options.whenAlone
    this.#parity = options.parity
    this.#window = options.window
    this.#backlog = options.backlog
  }

  /** True while a passive peer is caught up with the current stream. */
  get replicated(): boolean {
    return this.#replicated
  }

  /** The current stream's id, once started. */
  get stream(): string | undefined {
    return this.#stream
  }

  /** A new stream (a random id, seq from 1), its journal and an empty ring. */
  start(): void {
    const rj = new ReplicatedJournal(this.#host.journal, {
      onRecord: (r) => this.#onRecord(rj, r),
      copyEntries: false,
    })
    this.#rj = rj
    this.#stream = randomBytes(8).toString("hex")
    this.#ring = new RecordRing()
    this.#acked = 0
    debug("pair replication: active, stream %s", this.#stream)
  }

  /** Ends the stream and the session: every append waiting for the peer rejects with `reason`. */
  end(reason: Error): void {
    this.#rj = undefined
    this.#session = undefined
    this.#copyWake?.()
    this.#setReplicated(false)
    const waiters = this.#waiters.slice(this.#waiterHead)
    this.#waiters = []
    this.#waiterHead = 0
    for (const w of waiters) w.reject(reason)
  }

  peerLost(): void {
    if (this.#host.role() !== "active") return
    this.#session = undefined
    this.#copyWake?.()
    this.#setReplicated(false)
  }

  tick(): void {
    if (this.#host.role() !== "active") return
    const s = this.#session
    if (s?.phase === "tail") {
      // Acks stalled with records in flight: a batch was lost (a DEALER replaced); resend.
      if (s.next - 1 > this.#acked && this.#acked === s.ackedAtTick) {
        s.next = this.#acked + 1
        this.#pumpSoon()
      }
      s.ackedAtTick = this.#acked
    }
  }

  stats(): { replicated: boolean; lag: number; applied: number; stream: string | undefined } {
    const seq = this.#rj?.seq ?? 0
    return {
      replicated: this.#replicated,
      lag: seq - this.#acked,
      applied: this.#acked,
      stream: this.#stream,
    }
  }

  /** See `PairReplication.sizes()`. */
  sizes(): { ring: number; ringBytes: number; waiters: number; unacked: number } {
    const next = this.#session?.next ?? this.#acked + 1
    return {
      ring: this.#ring.size,
      ringBytes: this.#ring.bytes,
      waiters: this.#waiters.length - this.#waiterHead,
      unacked: Math.max(0, next - 1 - this.#acked),
    }
  }

  /** Where the sender's writes go: the stream's journal while active, else the node's own. */
  writer(): Journal {
    return this.#host.role() === "active" && this.#rj !== undefined ? this.#rj : this.#host.journal
  }

  /**
   * Resolves once every change emitted so far is replicated as the options want (`replicated`,
   * `whenAlone`); undefined when there is nothing to wait for. Rejects when this node is not the
   * active one (the stop error, or `PIRATE_CLOSED`).
   */
  whenReplicated(): Promise<void> | undefined {
    if (!this.#replicatedDurability) return undefined
    const rj = this.#rj
    if (rj !== undefined && this.#host.role() === "active") {
      if (this.#acked >= rj.seq) return undefined
      if (!this.#replicated && this.#whenAlone === "local") return undefined
    }
    return this.settle(this.writer())
  }

  /** Resolves once an append or schedule done through `w` is replicated as the options want. */
  settle(w: Journal): Promise<void> {
    if (!this.#replicatedDurability) return Promise.resolve()
    if (w !== this.#rj || this.#host.role() !== "active")
      return Promise.reject(
        this.#host.stopError() ??
          new PirateError("PIRATE_CLOSED", "this node is not the active one of the pair"),
      )
    const seq = this.#rj.seq
    if (this.#acked >= seq) return Promise.resolve()
    if (!this.#replicated && this.#whenAlone === "local") return Promise.resolve()
    return new Promise((resolve, reject) => this.#waiters.push({ seq, resolve, reject }))
  }

  #onRecord(rj: ReplicatedJournal, record: ReplicationRecord): void {
    if (rj !== this.#rj) return
    const before = this.#ring.get(record.seq - 1) ?? this.#ring.evicted
    const bytes = recordBytes(record)
    this.#ring.push({
      seq: record.seq,
      // Encoded now: the record's entries are the sender's (see `copyEntries`).
      wire: toWire(record),
      bytes,
      cumBytes: before.cumBytes + bytes,
      cumOwn: maxId(before.cumOwn, this.#ownIn(record)),
    })
    this.#ring.trim(this.#backlog.records, this.#backlog.bytes)
    this.#pumpSoon()
  }

  /** The greatest id of this node's parity that a record creates. */
  #ownIn(record: ReplicationRecord): string | undefined {
    if (record.op !== "append" && record.op !== "schedule") return undefined
    let max: string | undefined
    for (const e of record.entries) {
      const id = e.id
      if ((max === undefined || id > max) && idParity(id) === this.#parity) max = id
    }
    return max
  }

  #cumBytes(seq: number): number {
    return (this.#ring.get(seq) ?? this.#ring.evicted).cumBytes
  }

  #setReplicated(value: boolean): void {
    if (this.#replicated === value) return
    this.#replicated = value
    debug("pair replication: replicated %s", value)
    if (!value && this.#whenAlone === "local") this.#resolveWaiters(Infinity)
    this.#host.replicatedChanged(value)
  }

  #resolveWaiters(upTo: number): void {
    while (this.#waiterHead < this.#waiters.length) {
      const w = this.#waiters[this.#waiterHead] as Waiter
      if (w.seq > upTo) break
      this.#waiters[this.#waiterHead++] = undefined as unknown as Waiter
      w.resolve()
    }
    if (this.#waiterHead === this.#waiters.length) {
      this.#waiters = []
      this.#waiterHead = 0
    } else if (this.#waiterHead > 1024 && this.#waiterHead * 2 > this.#waiters.length) {
      this.#waiters = this.#waiters.slice(this.#waiterHead)
      this.#waiterHead = 0
    }
  }

  /** The passive asked to be caught up from `applied` of `stream`. */
  serve(h: PeerHello): void {
    const seq = this.#rj?.seq ?? 0
    const s = this.#session
    if (s !== undefined && s.node === h.node && s.request === h.request) return
    const applied = h.applied ?? 0
    const session: Session = {
      node: h.node,
      request: h.request ?? 0,
      phase: "tail",
      next: applied + 1,
      caughtUpAt: applied,
      pagesSent: 0,
      pageAcked: -1,
      inFlight: new Map(),
      ackedAtTick: -1,
    }
    this.#session = session
    this.#copyWake?.()
    if (h.stream === this.#stream && applied <= seq && applied >= this.#ring.first - 1) {
      debug("pair replication: catch-up from %d of %d", applied, seq)
      this.#onAcked(applied)
      this.#setReplicated(true)
      this.#pumpSoon()
    } else {
      this.#setReplicated(false)
      this.#startCopy(session)
    }
  }

  onAck(ack: { stream: string; seq: number; page?: number }): void {
    if (this.#host.role() !== "active" || ack.stream !== this.#stream) return
    const s = this.#session
    if (ack.page !== undefined) {
      if (s?.phase === "copy" && ack.page > s.pageAcked) {
        s.pageAcked = ack.page
        for (const page of s.inFlight.keys()) if (page <= ack.page) s.inFlight.delete(page)
        this.#copyWake?.()
      }
      return
    }
    if (ack.seq > (this.#rj?.seq ?? 0)) return this.#host.drop("an ACK beyond the stream")
    this.#onAcked(ack.seq)
    if (s?.phase === "tail" && this.#acked >= s.caughtUpAt) this.#setReplicated(true)
    this.#pumpSoon()
  }

  #onAcked(seq: number): void {
    if (seq <= this.#acked) return
    this.#acked = seq
    const r = seq >= this.#ring.first - 1 ? (this.#ring.get(seq) ?? this.#ring.evicted) : undefined
    const own = r?.cumOwn
    if (
      own !== undefined &&
      (this.#host.pairFile.file.watermark === undefined || own > this.#host.pairFile.file.watermark)
    ) {
      this.#host.pairFile.file.watermark = own
      this.#host.pairFile.saveSoon()
    }
    this.#resolveWaiters(seq)
  }

  #pumpSoon(): void {
    if (this.#pumpScheduled) return
    this.#pumpScheduled = true
    setImmediate(() => {
      this.#pumpScheduled = false
      this.#pump()
    })
  }

  /** Sends what the window allows from the ring. */
  #pump(): void {
    const s = this.#session
    const stream = this.#stream
    if (this.#host.role() !== "active" || s?.phase !== "tail" || stream === undefined) return
    const seq = this.#rj?.seq ?? 0
    if (s.next <= seq && s.next < this.#ring.first) {
      // The passive needs records the ring no longer holds.
      debug("pair replication: %d left the ring (from %d): full copy", s.next, this.#ring.first)
      this.#setReplicated(false)
      this.#startCopy(s)
      return
    }
    const acked = Math.max(this.#acked, s.caughtUpAt <= this.#acked ? this.#acked : 0)
    while (s.next <= seq) {
      const first = s.next
      const batch: Record<string, unknown>[] = []
      let bytes = 0
      while (s.next <= seq && batch.length < BATCH_RECORDS) {
        const inFlight = s.next - 1 - acked
        const inFlightBytes = this.#cumBytes(s.next - 1) - this.#cumBytes(acked)
        const r = this.#ring.get(s.next) as RingRecord
        if (inFlight >= this.#window.records) break
        // One record always goes when nothing is in flight, however large.
        if (inFlight > 0 && inFlightBytes + r.bytes > this.#window.bytes) break
        if (batch.length > 0 && bytes + r.bytes > BATCH_BYTES) break
        batch.push(r.wire)
        bytes += r.bytes
        s.next++
      }
      if (batch.length === 0) return
      this.#host.link.sendEncoded(stream, first, batch)
    }
  }

  /** A full copy: pages of dead, scheduled and pending entries, COPY_END, then the tail. */
  #startCopy(session: Session): void {
    const stream = this.#stream as string
    const s0 = this.#rj?.seq ?? 0
    session.phase = "copy"
    session.pagesSent = 0
    session.pageAcked = -1
    session.inFlight.clear()
    session.caughtUpAt = s0
    session.next = s0 + 1
    debug("pair replication: full copy at %d", s0)
    this.#copyPages(session, stream, s0).catch((err: unknown) => {
      if (this.#session === session) {
        this.#session = undefined
        this.#host.error(err)
      }
    })
  }

  async #copyPages(session: Session, stream: string, s0: number): Promise<void> {
    const alive = (): boolean =>
      this.#session === session && session.phase === "copy" && session.caughtUpAt === s0
    const send = async (kind: CopyPage["kind"], entries: JournalEntry[]): Promise<boolean> => {
      for (const chunk of chunks(entries)) {
        while (
          alive() &&
          session.inFlight.size > 0 &&
          (session.inFlight.size >= 64 ||
            sum(session.inFlight.values()) + entriesBytes(chunk) > this.#window.bytes)
        ) {
          await new Promise<void>((resolve) => (this.#copyWake = resolve))
        }
        if (!alive()) return false
        const page = session.pagesSent++
        session.inFlight.set(page, entriesBytes(chunk))
        this.#host.link.sendCopy({ stream, s0, page, kind, entries: chunk })
      }
      return true
    }
    const inner = this.#host.journal
    for await (const page of journalPages((range) => inner.dead(range)))
      if (!(await send("dead", page))) return
    if (inner.due !== undefined) {
      // Scheduled entries are read in one go: due() has no cursor.
      const all = await inner.due({
        until: Number.MAX_SAFE_INTEGER,
        limit: Number.MAX_SAFE_INTEGER,
      })
      if (!(await send("scheduled", all))) return
    }
    for await (const page of journalPages((range) => inner.pending(range)))
      if (!(await send("pending", page))) return
    if (!alive()) return
    // The journal's last id, or above it the ids this node's pair file keeps (see PairFile.lastId).
    const lastId = maxId(await inner.lastId(), this.#host.pairFile.file.lastId)
    if (!alive()) return
    this.#host.link.sendCopyEnd({
      stream,
      s0,
      pages: session.pagesSent,
      ...(lastId === undefined ? {} : { lastId }),
    })
    session.phase = "tail"
    session.next = s0 + 1
    this.#pumpSoon()
  }

  /** A returning node's hand-over page: writes (streamed) what this node lacks, then HANDED. */
  onHandover(p: HandoverPage): void {
    if (this.#host.role() !== "active") return
    const term = this.#host.term()
    if (this.#handedTerm !== term) {
      this.#handedTerm = term
      this.#handedPages.clear()
    }
    const key = `${p.page} ${p.kind} ${p.last} ${p.entries.length} ${p.entries[0]?.id ?? ""} ${p.entries.at(-1)?.id ?? ""}`
    const seen = this.#handedPages.get(key)
    if (seen !== undefined) {
      void seen.then(() => {
        if (this.#host.term() === term) this.#host.link.sendHanded(p.page)
      })
      return
    }
    let written = false
    const write = this.#handing.then(async () => {
      if (this.#host.term() !== term || this.#rj === undefined) return
      const rj = this.#rj
      try {
        const missing: JournalEntry[] = []
        for (const e of p.entries) if (!(await holds(this.#host.journal, e.id))) missing.push(e)
        if (missing.length > 0 && p.kind === "pending") await this.#room?.(missing.length)
        if (this.#host.term() !== term) return
        if (missing.length > 0) {
          if (p.kind === "scheduled") {
            if (rj.schedule === undefined) throw new TypeError("the journal has no schedule()")
            await rj.schedule(missing, { sync: false })
          } else {
            await rj.append(missing, { sync: false })
          }
          this.#host.handedOver({
            pending: p.kind === "pending" ? missing : [],
            scheduled: p.kind === "scheduled" ? missing : [],
          })
        }
        written = true
        if (this.#host.term() === term) this.#host.link.sendHanded(p.page)
      } catch (err) {
        if (err instanceof TypeError || err instanceof RangeError)
          this.#host.drop(`a HANDOVER page: ${err.message}`)
        else this.#host.error(err)
      }
    })
    this.#handing = write
    // A page that failed is written again when it comes again.
    this.#handedPages.set(
      key,
      write.then(() => {
        if (!written) this.#handedPages.delete(key)
      }),
    )
    if (this.#handedPages.size > HANDED_PAGES)
      this.#handedPages.delete(this.#handedPages.keys().next().value as string)
  }
}

/** Whether a journal holds `id` as a pending entry or a dead letter. */
async function holds(j: Journal, id: string): Promise<boolean> {
  const before = previousId(id)
  const range = before === undefined ? {} : { after: before }
  const [p] = await j.pending({ ...range, until: id, limit: 1 })
  if (p?.id === id) return true
  const [d] = await j.dead({ ...range, limit: 1 })
  return d?.id === id
}

function sum(values: Iterable<number>): number {
  let n = 0
  for (const v of values) n += v
  return n
}
