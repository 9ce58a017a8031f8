/**
 * The replication engine of a sender pair (docs/pair.md, sections 3 and 6.4), on top of the pair
 * link: the active node streams its journal's changes from a bounded ring and serves the
 * passive's catch-up (the tail of the ring, or a full copy), with flow control and `replicated`
 * durability; the passive hands over what only it holds, then applies the stream and acks it.
 */
import { randomBytes } from "node:crypto"
import { EventEmitter } from "node:events"
import { open, readFile, rename } from "node:fs/promises"
import { join } from "node:path"
import { TAKES_SPLIT_BODIES } from "../body.js"
import { debug } from "../debug.js"
import { PirateError, errorCode, errorMessage } from "../errors.js"
import { previousId } from "../journal/ids.js"
import { journalSenderId } from "../journal/sender-id.js"
import type {
  DeadLetter,
  DedupeRecord,
  Journal,
  JournalEntry,
  JournalStats,
  JournalUpdate,
} from "../journal/types.js"
import { assertOneOf, assertPositiveInt } from "../validate.js"
import type { CopyPage, HandoverPage, HelloFields, PairLink, PeerHello } from "./link.js"
import {
  ReplicatedJournal,
  ReplicationApplier,
  type DedupeChanges,
  type ReplicationRecord,
} from "./replicated-journal.js"

/** The pair file's name, next to the journal (docs/pair.md, section 6.4). */
export const PAIR_FILE = "PAIR"

/** What a node keeps of the pair across restarts (docs/pair.md, section 6.4). */
export interface PairFile {
  /** The pair's epoch as this node last knew it (section 2.3). */
  epoch: number
  /** The stream this node last applied as a passive; absent after it was active or mid-copy. */
  stream?: string
  /** The last seq of `stream` applied (it may lag: the tail is applied again). */
  applied: number
  /** The greatest of this node's own ids that the peer holds (section 3.5). */
  watermark?: string
  /** The pair's sender id (section 6.2). */
  sender?: string
  /** The greatest `lastId` of a full copy's COPY_END: this node's ids stay above it. */
  lastId?: string
}

export interface PairReplicationOptions {
  /** The pair link, created and opened by the caller. */
  link: PairLink
  /** This node's own journal, opened by the caller (who also closes it). */
  journal: Journal
  /** `pair.sync`: the passive syncs its writes before it acks (and a copy at COPY_END). */
  sync: boolean
  /** `durability: "replicated"`: `journal.append()`/`schedule()` resolve once the peer acked. */
  replicated: boolean
  /** With no caught-up passive: `"wait"` keeps replicated appends waiting, `"local"` resolves them. */
  whenAlone: "wait" | "local"
  /** This node's id parity (primary 0: even ids, backup 1: odd), for the hand-over. */
  parity: 0 | 1
  /** Where the pair file is kept; undefined: in memory only. */
  dir?: string
  /** Flow control: unacked records and bytes. @defaultValue 4096 records, 16 MiB */
  window?: { records?: number; bytes?: number }
  /** The ring of records kept for a passive's catch-up. @defaultValue 65 536 records, 64 MiB */
  backlog?: { records?: number; bytes?: number }
  /**
   * The active waits for this before it writes a hand-over page of `n` pending entries (the
   * sender's window has room for them: see the `handover` event), so that a large hand-over
   * is paced by the returning node's pages, not held in memory. @defaultValue no wait
   */
  room?: (n: number) => Promise<void>
  /**
   * With `replicated`: `journal.append()`/`schedule()` wait for the peer's ack (true), or resolve
   * once written here and the caller waits with `whenReplicated()` (false: the sender does, so
   * that its next group commit does not wait for the round trip). @defaultValue true
   */
  waitInJournal?: boolean
}

export const PAIR_REPLICATION_DEFAULTS = Object.freeze({
  window: Object.freeze({ records: 4096, bytes: 16 * 1024 * 1024 }),
  backlog: Object.freeze({ records: 65_536, bytes: 64 * 1024 * 1024 }),
})

export interface PairReplicationEvents {
  /** A passive became caught up (`true`), or the active is alone again (`false`). */
  replicated: [{ replicated: boolean }]
  /**
   * The active wrote entries a returning node handed over (docs/pair.md, section 3.5): new
   * pending and scheduled entries its sender does not know of yet.
   */
  handover: [{ pending: JournalEntry[]; scheduled: JournalEntry[] }]
  error: [Error]
}

/** Records per RECORDS message, and its bytes (at least one record). */
const BATCH_RECORDS = 256
const BATCH_BYTES = 1024 * 1024
/** Entries per COPY or HANDOVER page, and its bytes (at least one entry). */
const PAGE_ENTRIES = 256
/** HANDOVER pages the active remembers (per term) so as not to write a page sent again twice. */
const HANDED_PAGES = 64
const PAGE_BYTES = 1024 * 1024
/**
 * The passive acks once it has applied everything it received, else at most ACK_DELAY ms or
 * ACK_RECORDS records later (section 3.2).
 */
const ACK_DELAY = 2
const ACK_RECORDS = 256
/** The pair file is written at most this often while the stream moves. */
const SAVE_DELAY = 100

interface RingRecord {
  record: ReplicationRecord
  bytes: number
  /** Bytes of the stream up to and including this record. */
  cumBytes: number
  /** The greatest own id appended or scheduled up to and including this record. */
  cumOwn: string | undefined
}

/** The records of the current stream kept for catch-up: the newest, bounded in count and bytes. */
class RecordRing {
  #items: RingRecord[] = []
  #head = 0
  /** The seq of the oldest record kept (the next one when empty). */
  first = 1
  bytes = 0
  /** cumBytes and cumOwn of the record before `first`. */
  evicted: { cumBytes: number; cumOwn: string | undefined } = { cumBytes: 0, cumOwn: undefined }

  get size(): number {
    return this.#items.length - this.#head
  }

  get(seq: number): RingRecord | undefined {
    if (seq < this.first) return undefined
    return this.#items[this.#head + seq - this.first]
  }

  push(r: RingRecord): void {
    this.#items.push(r)
    this.bytes += r.bytes
  }

  /** Drops the oldest records beyond the bounds; the newest one always stays. */
  trim(records: number, bytes: number): void {
    while (this.size > 1 && (this.size > records || this.bytes > bytes)) {
      const r = this.#items[this.#head] as RingRecord
      this.#items[this.#head] = undefined as unknown as RingRecord
      this.#head++
      this.first++
      this.bytes -= r.bytes
      this.evicted = { cumBytes: r.cumBytes, cumOwn: r.cumOwn }
    }
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
  }
}

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

type PassivePhase = "off" | "handover" | "requested" | "copy" | "tail"

/**
 * The replication of a sender pair's journal, for either role. The caller (the sender) owns the
 * link and the journal and calls `startActive()`/`startPassive()` on the link's state changes.
 *
 * @example
 * ```ts
 * const replication = new PairReplication({ link, journal, sync: false, replicated: true,
 *   whenAlone: "wait", parity: 0, dir: "./journal" })
 * link.on("state", ({ state }) => state === "active" ? replication.startActive() : void replication.startPassive())
 * await replication.journal.append(entries, { sync: false }) // resolves once the passive acked it
 * ```
 */
export class PairReplication extends EventEmitter<PairReplicationEvents> {
  /** A Journal for the active's sender core (see the class `PairJournal`). */
  readonly journal: Journal
  readonly #link: PairLink
  readonly #inner: Journal
  readonly #room: ((n: number) => Promise<void>) | undefined
  readonly #sync: boolean
  readonly #replicatedDurability: boolean
  readonly #whenAlone: "wait" | "local"
  readonly #parity: 0 | 1
  readonly #dir: string | undefined
  readonly #window: { records: number; bytes: number }
  readonly #backlog: { records: number; bytes: number }

  #role: "idle" | "active" | "passive" = "idle"
  /** Grows at each start and stop: a loop of an older term ends. */
  #term = 0
  #stopError: Error | undefined
  #ready: Promise<void> | undefined
  #file: PairFile = { epoch: 0, applied: 0 }
  #ownSender: string | undefined
  #peerSender: string | undefined
  #adopting: Promise<void> = Promise.resolve()
  #dropped = 0
  #timer: NodeJS.Timeout | undefined

  // The active's side.
  #stream: string | undefined
  #rj: ReplicatedJournal | undefined
  #ring = new RecordRing()
  #acked = 0
  #waiters: Waiter[] = []
  #waiterHead = 0
  #session: Session | undefined
  #request: PeerHello | undefined
  #replicated = false
  #pumpScheduled = false
  #copyWake: (() => void) | undefined
  /** Passive inputs received and not yet started (see #passive). */
  #queued = 0
  #handing: Promise<void> = Promise.resolve()
  /**
   * The HANDOVER pages of this term (the latest {@link HANDED_PAGES}), by content: a copy the
   * returning node sent again (each `timeout` until HANDED) while the page was being written, or
   * after, is answered once that write is done, not written again.
   */
  #handedPages = new Map<string, Promise<void>>()
  #handedTerm = -1

  // The passive's side.
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
  #chain: Promise<void> = Promise.resolve()
  #handed = new Map<number, () => void>()
  #lastPage: { kind: "pending" | "scheduled"; entries: JournalEntry[] } | undefined

  // The pair file.
  #saveTimer: NodeJS.Timeout | undefined
  #saving: Promise<void> = Promise.resolve()

  constructor(options: PairReplicationOptions) {
    super()
    const { link, journal } = options
    if (typeof link !== "object" || link === null || typeof link.sendRecords !== "function")
      throw new TypeError("'link' must be a PairLink")
    if (typeof journal !== "object" || journal === null || typeof journal.append !== "function")
      throw new TypeError("'journal' must be a Journal")
    if (typeof options.sync !== "boolean") throw new TypeError("'sync' must be a boolean")
    if (typeof options.replicated !== "boolean")
      throw new TypeError("'replicated' must be a boolean")
    assertOneOf("whenAlone", options.whenAlone, ["wait", "local"] as const)
    if (options.parity !== 0 && options.parity !== 1)
      throw new TypeError(`'parity' must be 0 or 1, got ${String(options.parity)}`)
    if (options.dir !== undefined && (typeof options.dir !== "string" || options.dir === ""))
      throw new TypeError("'dir' must be a non-empty string")
    this.#window = { ...PAIR_REPLICATION_DEFAULTS.window, ...options.window }
    assertPositiveInt("window.records", this.#window.records)
    assertPositiveInt("window.bytes", this.#window.bytes)
    this.#backlog = { ...PAIR_REPLICATION_DEFAULTS.backlog, ...options.backlog }
    assertPositiveInt("backlog.records", this.#backlog.records)
    assertPositiveInt("backlog.bytes", this.#backlog.bytes)
    this.#link = link
    this.#inner = journal
    this.#sync = options.sync
    this.#replicatedDurability = options.replicated
    this.#whenAlone = options.whenAlone
    this.#parity = options.parity
    this.#dir = options.dir
    if (options.room !== undefined && typeof options.room !== "function")
      throw new TypeError("'room' must be a function")
    this.#room = options.room
    const waitInJournal = options.waitInJournal ?? true
    this.journal = new PairJournal(journal, {
      writer: () => this.#writer(),
      replicated: (w) => (waitInJournal ? this.#settle(w) : Promise.resolve()),
    })

    link.setHello(() => this.#helloFields())
    link.on("hello", (h) => this.#onHello(h))
    link.on("ack", (a) => this.#onAck(a))
    link.on("records", (b) => this.#passive(() => this.#onRecords(b.stream, b.records)))
    link.on("copy", (c) => this.#passive(() => this.#onCopy(c)))
    link.on("copy:end", (e) => this.#passive(() => this.#onCopyEnd(e)))
    link.on("handover", (p) => this.#onHandover(p))
    link.on("handed", ({ page }) => this.#handed.get(page)?.())
    link.on("peer:lost", () => this.#onPeerLost())
    link.on("state", ({ epoch }) => {
      this.#file.epoch = Math.max(this.#file.epoch, epoch)
      if (this.#ready !== undefined) void this.#save()
    })
  }

  /** True while a passive peer is caught up with the current stream (the active's view). */
  get replicated(): boolean {
    return this.#replicated
  }

  /** The pair's sender id as learnt from an active peer's HELLO, or undefined. */
  get senderId(): string | undefined {
    return this.#peerSender
  }

  /**
   * Becoming active: a new stream (a random id, seq from 1) that serves the peer's catch-up
   * (the tail from the ring, or a full copy) with flow control.
   */
  startActive(): void {
    this.#endRoles()
    const term = ++this.#term
    this.#role = "active"
    this.#stopError = undefined
    const rj = new ReplicatedJournal(this.#inner, {
      onRecord: (r) => this.#onRecord(rj, r),
    })
    this.#rj = rj
    this.#stream = randomBytes(8).toString("hex")
    this.#ring = new RecordRing()
    this.#acked = 0
    this.#startTimer()
    debug("pair replication: active, stream %s", this.#stream)
    void this.#init().then(
      async () => {
        if (this.#term !== term) return
        // This journal now changes on its own: a later catch-up starts from nothing.
        delete this.#file.stream
        this.#file.applied = 0
        // Tell the peer the pair's sender id.
        this.#link.hello()
        if (this.#request !== undefined) this.#serve(this.#request)
        await this.#save()
      },
      (err: unknown) => this.#error(err),
    )
  }

  /**
   * Becoming passive: hands over this node's own unreplicated entries (HANDOVER pages, each
   * acked by HANDED), then asks the active to catch it up and applies the stream from then on.
   * Resolves when the hand-over is done; catching up goes on after.
   * @throws the error given to `stop()` when stopped meanwhile; the journal's errors
   */
  async startPassive(): Promise<void> {
    this.#endRoles()
    const term = ++this.#term
    this.#role = "passive"
    this.#stopError = undefined
    this.#phase = "handover"
    this.#startTimer()
    await this.#init()
    this.#check(term)
    if (this.#peerSender !== undefined) await this.#adopt(this.#peerSender)
    await this.#save()
    await this.#handover(term)
    this.#check(term)
    this.#applier =
      this.#file.stream === undefined
        ? undefined
        : new ReplicationApplier(this.#inner, { sync: this.#sync, applied: this.#file.applied })
    this.#pStream = this.#file.stream
    this.#received = this.#file.applied
    this.#askCatchUp()
  }

  /** Stops both roles: every append waiting for the peer rejects with `err`. */
  stop(err: Error): void {
    this.#term++
    this.#stopError = err
    this.#endRoles(err)
    this.#role = "idle"
    clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#ready !== undefined) void this.#save()
  }

  /**
   * The floor for this node's next message ids: the greatest of its journal's `lastId()`, the
   * pair file's and the last COPY_END's.
   */
  async lastIdFloor(): Promise<string | undefined> {
    await this.#init()
    return maxId(await this.#inner.lastId(), this.#file.lastId)
  }

  stats(): {
    replicated: boolean
    lag: number
    applied: number
    stream: string | undefined
    dropped: number
  } {
    const dropped = this.#link.dropped + this.#dropped
    if (this.#role === "active") {
      const seq = this.#rj?.seq ?? 0
      return {
        replicated: this.#replicated,
        lag: seq - this.#acked,
        applied: this.#acked,
        stream: this.#stream,
        dropped,
      }
    }
    const applied = this.#applier?.applied ?? 0
    return {
      replicated: false,
      lag: Math.max(0, this.#received - applied),
      applied,
      stream: this.#pStream,
      dropped,
    }
  }

  /**
   * Writes the pair file now (it is otherwise written at transitions and at most every 100 ms).
   */
  async flush(): Promise<void> {
    await this.#init()
    await this.#save()
  }

  /**
   * Internal sizes, for tests: records in the ring and their bytes, appends waiting for an ack,
   * records sent and not acked.
   * @internal
   */
  sizes(): { ring: number; ringBytes: number; waiters: number; unacked: number } {
    const next = this.#session?.next ?? this.#acked + 1
    return {
      ring: this.#ring.size,
      ringBytes: this.#ring.bytes,
      waiters: this.#waiters.length - this.#waiterHead,
      unacked: Math.max(0, next - 1 - this.#acked),
    }
  }

  // ---------------------------------------------------------------- common

  #init(): Promise<void> {
    return (this.#ready ??= (async () => {
      if (this.#dir !== undefined) {
        const file = await readPairFile(this.#dir)
        if (file !== undefined)
          this.#file = { ...file, epoch: Math.max(file.epoch, this.#file.epoch) }
      }
      this.#ownSender = await journalSenderId(this.#inner)
      this.#file.sender = this.#ownSender
    })())
  }

  #check(term: number): void {
    if (this.#term !== term)
      throw (
        this.#stopError ??
        new PirateError("PIRATE_CLOSED", "the pair replication changed role meanwhile")
      )
  }

  #error(err: unknown): void {
    this.emit("error", err instanceof Error ? err : new Error(String(err)))
  }

  #drop(reason: string): void {
    this.#dropped++
    debug("pair replication: dropped %s", reason)
  }

  #startTimer(): void {
    clearInterval(this.#timer)
    this.#timer = setInterval(() => this.#tick(), this.#link.timeout)
    this.#timer.unref()
  }

  /** Ends the active's and the passive's state (not the term). */
  #endRoles(err?: Error): void {
    const reason =
      err ?? new PirateError("PIRATE_CLOSED", "this node is no longer the active one of the pair")
    // The active's side.
    this.#rj = undefined
    this.#session = undefined
    this.#copyWake?.()
    this.#setReplicated(false)
    const waiters = this.#waiters.slice(this.#waiterHead)
    this.#waiters = []
    this.#waiterHead = 0
    for (const w of waiters) w.reject(reason)
    // The passive's side.
    this.#phase = "off"
    this.#copy = undefined
    this.#applier = undefined
    clearTimeout(this.#ackTimer)
    this.#ackTimer = undefined
    for (const wake of this.#handed.values()) wake()
    this.#handed.clear()
  }

  #helloFields(): HelloFields {
    const fields: HelloFields = {}
    if (this.#ownSender !== undefined) fields.sender = this.#ownSender
    if (this.#role === "passive" && this.#phase !== "off" && this.#phase !== "handover") {
      fields.request = this.#requestNo
      fields.applied = this.#applier?.applied ?? 0
      if (this.#pStream !== undefined && this.#applier !== undefined) fields.stream = this.#pStream
    }
    return fields
  }

  #onHello(h: PeerHello): void {
    if (h.state === "active" && h.sender !== undefined && h.sender !== this.#peerSender) {
      this.#peerSender = h.sender
      if (this.#role === "passive") this.#adopt(h.sender).catch((err: unknown) => this.#error(err))
    }
    this.#request = h.request !== undefined && h.applied !== undefined ? h : undefined
    if (this.#request !== undefined && this.#role === "active" && this.#stream !== undefined)
      this.#serve(this.#request)
  }

  #onPeerLost(): void {
    if (this.#role === "active") {
      this.#session = undefined
      this.#copyWake?.()
      this.#setReplicated(false)
    } else if (this.#role === "passive" && this.#phase !== "off" && this.#phase !== "handover") {
      // The link opens a new DEALER and says HELLO: make that a new request.
      this.#requestNo++
      if (this.#phase === "tail") this.#phase = "requested"
    }
  }

  #tick(): void {
    if (this.#role === "active") {
      const s = this.#session
      if (s?.phase === "tail") {
        // Acks stalled with records in flight: a batch was lost (a DEALER replaced); resend.
        if (s.next - 1 > this.#acked && this.#acked === s.ackedAtTick) {
          s.next = this.#acked + 1
          this.#pumpSoon()
        }
        s.ackedAtTick = this.#acked
      }
    } else if (this.#role === "passive") {
      if (
        (this.#phase === "requested" || this.#phase === "copy") &&
        this.#progress === this.#progressAtTick
      )
        this.#askCatchUp()
      this.#progressAtTick = this.#progress
    }
  }

  /** Makes `id` this node's sender id, in its journal (one adoption at a time). */
  #adopt(id: string): Promise<void> {
    const run = this.#adopting.then(async () => {
      await this.#init()
      if (this.#ownSender === id) return
      if (this.#inner.adoptSenderId === undefined) {
        debug("pair replication: the journal cannot adopt the sender id %s", id)
        return
      }
      await this.#inner.adoptSenderId(id)
      this.#ownSender = id
      this.#file.sender = id
      await this.#save()
    })
    this.#adopting = run.catch(() => undefined)
    return run
  }

  // ---------------------------------------------------------------- the pair file

  #saveSoon(): void {
    if (this.#saveTimer !== undefined || this.#dir === undefined) return
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined
      void this.#save()
    }, SAVE_DELAY)
  }

  /** Writes the pair file (one write at a time, each of the state at its start). */
  #save(): Promise<void> {
    const dir = this.#dir
    if (dir === undefined) return Promise.resolve()
    clearTimeout(this.#saveTimer)
    this.#saveTimer = undefined
    const run = this.#saving.then(async () => {
      this.#file.epoch = Math.max(this.#file.epoch, this.#link.epoch)
      try {
        await writePairFile(dir, this.#file, this.#sync)
      } catch (err) {
        this.#error(
          new PirateError(
            "PIRATE_JOURNAL_IO",
            `cannot write the pair file in ${dir}: ${errorMessage(err)}`,
            { cause: err },
          ),
        )
      }
    })
    this.#saving = run
    return run
  }

  // ---------------------------------------------------------------- the active

  /** Where the sender's writes go: the stream's journal while active, else the node's own. */
  #writer(): Journal {
    return this.#role === "active" && this.#rj !== undefined ? this.#rj : this.#inner
  }

  /**
   * Resolves once every change emitted so far is replicated as the options want (`replicated`,
   * `whenAlone`); undefined when there is nothing to wait for. Rejects when this node is not the
   * active one (the stop error, or `PIRATE_CLOSED`).
   */
  whenReplicated(): Promise<void> | undefined {
    if (!this.#replicatedDurability) return undefined
    const rj = this.#rj
    if (rj !== undefined && this.#role === "active") {
      if (this.#acked >= rj.seq) return undefined
      if (!this.#replicated && this.#whenAlone === "local") return undefined
    }
    return this.#settle(this.#writer())
  }

  /** Resolves once an append or schedule done through `w` is replicated as the options want. */
  #settle(w: Journal): Promise<void> {
    if (!this.#replicatedDurability) return Promise.resolve()
    if (w !== this.#rj || this.#role !== "active")
      return Promise.reject(
        this.#stopError ??
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
      record,
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
    for (const e of record.entries) if (parityOf(e.id) === this.#parity) max = maxId(max, e.id)
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
    this.emit("replicated", { replicated: value })
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
  #serve(h: PeerHello): void {
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

  #onAck(ack: { stream: string; seq: number; page?: number }): void {
    if (this.#role !== "active" || ack.stream !== this.#stream) return
    const s = this.#session
    if (ack.page !== undefined) {
      if (s?.phase === "copy" && ack.page > s.pageAcked) {
        s.pageAcked = ack.page
        for (const page of s.inFlight.keys()) if (page <= ack.page) s.inFlight.delete(page)
        this.#copyWake?.()
      }
      return
    }
    if (ack.seq > (this.#rj?.seq ?? 0)) return this.#drop("an ACK beyond the stream")
    this.#onAcked(ack.seq)
    if (s?.phase === "tail" && this.#acked >= s.caughtUpAt) this.#setReplicated(true)
    this.#pumpSoon()
  }

  #onAcked(seq: number): void {
    if (seq <= this.#acked) return
    this.#acked = seq
    const r = seq >= this.#ring.first - 1 ? (this.#ring.get(seq) ?? this.#ring.evicted) : undefined
    const own = r?.cumOwn
    if (own !== undefined && (this.#file.watermark === undefined || own > this.#file.watermark)) {
      this.#file.watermark = own
      this.#saveSoon()
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
    if (this.#role !== "active" || s?.phase !== "tail" || stream === undefined) return
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
      const batch: ReplicationRecord[] = []
      let bytes = 0
      while (s.next <= seq && batch.length < BATCH_RECORDS) {
        const inFlight = s.next - 1 - acked
        const inFlightBytes = this.#cumBytes(s.next - 1) - this.#cumBytes(acked)
        const r = this.#ring.get(s.next) as RingRecord
        if (inFlight >= this.#window.records) break
        // One record always goes when nothing is in flight, however large.
        if (inFlight > 0 && inFlightBytes + r.bytes > this.#window.bytes) break
        if (batch.length > 0 && bytes + r.bytes > BATCH_BYTES) break
        batch.push(r.record)
        bytes += r.bytes
        s.next++
      }
      if (batch.length === 0) return
      this.#link.sendRecords(stream, batch)
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
        this.#error(err)
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
        this.#link.sendCopy({ stream, s0, page, kind, entries: chunk })
      }
      return true
    }
    const inner = this.#inner
    let after: string | undefined
    for (;;) {
      const page = await inner.dead(
        after === undefined ? { limit: PAGE_ENTRIES } : { after, limit: PAGE_ENTRIES },
      )
      if (page.length === 0) break
      if (!(await send("dead", page))) return
      after = (page.at(-1) as DeadLetter).id
    }
    if (inner.due !== undefined) {
      // Scheduled entries are read in one go: due() has no cursor.
      const all = await inner.due({
        until: Number.MAX_SAFE_INTEGER,
        limit: Number.MAX_SAFE_INTEGER,
      })
      if (!(await send("scheduled", all))) return
    }
    after = undefined
    for (;;) {
      const page = await inner.pending(
        after === undefined ? { limit: PAGE_ENTRIES } : { after, limit: PAGE_ENTRIES },
      )
      if (page.length === 0) break
      if (!(await send("pending", page))) return
      after = (page.at(-1) as JournalEntry).id
    }
    if (!alive()) return
    const lastId = await inner.lastId()
    if (!alive()) return
    this.#link.sendCopyEnd({
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
  #onHandover(p: HandoverPage): void {
    if (this.#role !== "active") return
    const term = this.#term
    if (this.#handedTerm !== term) {
      this.#handedTerm = term
      this.#handedPages.clear()
    }
    const key = `${p.page} ${p.kind} ${p.last} ${p.entries.length} ${p.entries[0]?.id ?? ""} ${p.entries.at(-1)?.id ?? ""}`
    const seen = this.#handedPages.get(key)
    if (seen !== undefined) {
      void seen.then(() => {
        if (this.#term === term) this.#link.sendHanded(p.page)
      })
      return
    }
    let written = false
    const write = this.#handing.then(async () => {
      if (this.#term !== term || this.#rj === undefined) return
      const rj = this.#rj
      try {
        const missing: JournalEntry[] = []
        for (const e of p.entries) if (!(await holds(this.#inner, e.id))) missing.push(e)
        if (missing.length > 0 && p.kind === "pending") await this.#room?.(missing.length)
        if (this.#term !== term) return
        if (missing.length > 0) {
          if (p.kind === "scheduled") {
            if (rj.schedule === undefined) throw new TypeError("the journal has no schedule()")
            await rj.schedule(missing, { sync: false })
          } else {
            await rj.append(missing, { sync: false })
          }
          this.emit("handover", {
            pending: p.kind === "pending" ? missing : [],
            scheduled: p.kind === "scheduled" ? missing : [],
          })
        }
        written = true
        if (this.#term === term) this.#link.sendHanded(p.page)
      } catch (err) {
        if (err instanceof TypeError || err instanceof RangeError)
          this.#drop(`a HANDOVER page: ${err.message}`)
        else this.#error(err)
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

  // ---------------------------------------------------------------- the passive

  /** Sends HANDOVER pages of own entries above the watermark, each until HANDED. */
  async #handover(term: number): Promise<void> {
    const inner = this.#inner
    const watermark = this.#file.watermark
    const mine = (e: JournalEntry): boolean =>
      parityOf(e.id) === this.#parity && (watermark === undefined || e.id > watermark)
    let page = 0
    const send = async (
      kind: "pending" | "scheduled",
      entries: JournalEntry[],
      last: boolean,
    ): Promise<void> => {
      for (const chunk of last ? [entries] : chunks(entries)) {
        const n = page++
        for (;;) {
          this.#check(term)
          const handed = new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), this.#link.timeout)
            this.#handed.set(n, () => {
              clearTimeout(timer)
              resolve(true)
            })
          })
          this.#link.sendHandover({ page: n, last, kind, entries: chunk })
          const ok = await handed
          this.#handed.delete(n)
          if (ok) break
        }
        this.#check(term)
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
    if (top !== undefined) this.#file.watermark = top
    debug("pair replication: handed over %d pages", page)
    await this.#save()
  }

  #askCatchUp(): void {
    if (this.#role !== "passive") return
    this.#requestNo++
    this.#phase = "requested"
    debug(
      "pair replication: catch-up request %d from %s:%d",
      this.#requestNo,
      this.#pStream,
      this.#applier?.applied ?? 0,
    )
    this.#link.hello()
  }

  /** Runs a passive input after the previous ones, in order. */
  #passive(step: () => Promise<void>): void {
    if (this.#role !== "passive" || this.#phase === "off" || this.#phase === "handover") return
    const term = this.#term
    this.#queued++
    this.#chain = this.#chain.then(async () => {
      this.#queued--
      if (this.#term !== term) return
      try {
        await step()
      } catch (err) {
        if (this.#term !== term) return
        if (
          err instanceof TypeError ||
          err instanceof RangeError ||
          errorCode(err) === "PIRATE_PROTOCOL"
        )
          this.#drop(errorMessage(err))
        else this.#error(err)
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
        this.#drop(`RECORDS of stream ${stream} while applying ${String(this.#pStream)}`)
        this.#askCatchUp()
      }
      return
    }
    const first = (records[0] as ReplicationRecord).seq
    if (first > applier.applied + 1) {
      if (this.#phase === "tail") {
        this.#drop(`records from ${first} after ${applier.applied}`)
        this.#askCatchUp()
      }
      return
    }
    const last = (records.at(-1) as ReplicationRecord).seq
    this.#received = Math.max(this.#received, last)
    await applier.apply(records)
    this.#phase = "tail"
    this.#progress++
    this.#file.stream = stream
    this.#file.applied = applier.applied
    this.#saveSoon()
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
      this.#link.sendAck(stream, applier.applied)
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
    delete this.#file.stream
    this.#file.applied = 0
    await this.#save()
  }

  async #onCopy(c: CopyPage): Promise<void> {
    if (c.page === 0) await this.#beginCopy(c.stream, c.s0)
    const copy = this.#copy
    if (this.#phase !== "copy" || copy === undefined) return
    if (copy.stream !== c.stream || copy.s0 !== c.s0 || copy.next !== c.page) {
      this.#drop(`COPY page ${c.page} of ${c.stream}:${c.s0}`)
      this.#askCatchUp()
      return
    }
    switch (c.kind) {
      case "pending":
        await this.#inner.append(c.entries, { sync: false })
        this.#lastPage = { kind: "pending", entries: c.entries }
        break
      case "scheduled":
        if (this.#inner.schedule === undefined) throw new TypeError("the journal has no schedule()")
        await this.#inner.schedule(c.entries, { sync: false })
        for (const e of c.entries) copy.scheduled.add(e.id)
        this.#lastPage = { kind: "scheduled", entries: c.entries }
        break
      case "dead":
        await this.#inner.bury(c.entries as DeadLetter[])
        break
    }
    if (c.kind !== "scheduled") {
      const last = c.entries.at(-1)?.id
      if (last !== undefined) {
        await sweep(this.#inner, c.kind, copy.swept[c.kind], last, c.entries)
        copy.swept[c.kind] = last
      }
    }
    copy.next++
    this.#progress++
    this.#link.sendAck(c.stream, 0, c.page)
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
      this.#drop(`COPY_END of ${e.stream}:${e.s0} after ${copy.next} pages`)
      this.#askCatchUp()
      return
    }
    // What this node held beyond the last page of each kind, and scheduled entries no page
    // brought, the active did not hold at the copy: gone.
    await sweep(this.#inner, "dead", copy.swept.dead, undefined, [])
    await sweep(this.#inner, "pending", copy.swept.pending, undefined, [])
    await unscheduleExcept(this.#inner, copy.scheduled)
    // With pair.sync, the copy is synced once: the last page written again, synced (pages are
    // in the order dead, scheduled, pending, so that is a pending page unless there is none).
    const last = this.#lastPage
    if (this.#sync && last !== undefined) {
      if (last.kind === "pending") await this.#inner.append(last.entries, { sync: true })
      else await this.#inner.schedule?.(last.entries, { sync: true })
    }
    this.#lastPage = undefined
    this.#copy = undefined
    this.#applier = new ReplicationApplier(this.#inner, { sync: this.#sync, applied: e.s0 })
    this.#pStream = e.stream
    this.#received = e.s0
    this.#phase = "tail"
    this.#progress++
    this.#file.stream = e.stream
    this.#file.applied = e.s0
    const lastId = maxId(this.#file.lastId, e.lastId)
    if (lastId !== undefined) this.#file.lastId = lastId
    await this.#save()
    this.#lastAcked = e.s0
    this.#link.sendAck(e.stream, e.s0)
    debug("pair replication: copied at %d", e.s0)
  }
}

/**
 * The Journal a pair's active sender writes to: every write goes to the current stream's
 * `ReplicatedJournal` (or, while this node is not active, straight to its own journal), and
 * `append()`/`schedule()` then wait as `replicated`/`whenAlone` say. Reads go to the node's own
 * journal. `open()`/`close()` do nothing: the caller owns that journal.
 */
class PairJournal implements Journal {
  readonly persistent: boolean
  readonly #inner: Journal
  readonly #host: { writer: () => Journal; replicated: (w: Journal) => Promise<void> }

  readonly schedule?: (
    entries: readonly JournalEntry[],
    options: { sync: boolean },
  ) => Promise<void>
  readonly due?: (options: { until: number; limit: number }) => Promise<JournalEntry[]>
  readonly nextDue?: () => Promise<number | undefined>
  readonly promote?: (
    entries: readonly JournalEntry[],
    options: { sync: boolean },
  ) => Promise<string[]>
  readonly unschedule?: (ids: readonly string[]) => Promise<string[]>
  readonly dedupeLookup?: (dedupeIds: readonly string[]) => Promise<(DedupeRecord | undefined)[]>
  readonly dedupeForget?: (before: number) => Promise<number>

  constructor(
    inner: Journal,
    host: { writer: () => Journal; replicated: (w: Journal) => Promise<void> },
  ) {
    this.#inner = inner
    this.#host = host
    this.persistent = inner.persistent
    if (TAKES_SPLIT_BODIES in inner)
      Object.defineProperty(this, TAKES_SPLIT_BODIES, { value: true })
    const w = (): Journal => host.writer()
    if (inner.schedule) {
      this.schedule = async (entries, o) => {
        const writer = w()
        await (writer.schedule as NonNullable<Journal["schedule"]>).call(writer, entries, o)
        if (entries.length > 0) await host.replicated(writer)
      }
    }
    if (inner.due) this.due = (o) => (inner.due as NonNullable<Journal["due"]>).call(inner, o)
    if (inner.nextDue)
      this.nextDue = () => (inner.nextDue as NonNullable<Journal["nextDue"]>).call(inner)
    if (inner.promote) {
      this.promote = (entries, o) => {
        const writer = w()
        return (writer.promote as NonNullable<Journal["promote"]>).call(writer, entries, o)
      }
    }
    if (inner.unschedule) {
      this.unschedule = (ids) => {
        const writer = w()
        return (writer.unschedule as NonNullable<Journal["unschedule"]>).call(writer, ids)
      }
    }
    if (inner.dedupeLookup)
      this.dedupeLookup = (ids) =>
        (inner.dedupeLookup as NonNullable<Journal["dedupeLookup"]>).call(inner, ids)
    if (inner.dedupeForget) {
      this.dedupeForget = (before) => {
        const writer = w()
        return (writer.dedupeForget as NonNullable<Journal["dedupeForget"]>).call(writer, before)
      }
    }
  }

  async open(): Promise<void> {}
  async close(): Promise<void> {}

  /** The pair's sender id as this node's journal keeps it (adopted from the active). */
  senderId(): Promise<string> {
    return journalSenderId(this.#inner)
  }

  async append(entries: readonly JournalEntry[], options: { sync: boolean }): Promise<void> {
    const writer = this.#host.writer()
    await writer.append(entries, options)
    if (entries.length > 0) await this.#host.replicated(writer)
  }

  remove(ids: readonly string[], dedupe?: DedupeChanges): Promise<void> {
    const writer = this.#host.writer()
    return dedupe === undefined ? writer.remove(ids) : writer.remove(ids, dedupe)
  }

  update(updates: readonly JournalUpdate[]): Promise<void> {
    return this.#host.writer().update(updates)
  }

  bury(letters: readonly DeadLetter[]): Promise<void> {
    return this.#host.writer().bury(letters)
  }

  replay(ids: readonly string[]): Promise<JournalEntry[]> {
    return this.#host.writer().replay(ids)
  }

  purgeDead(ids: readonly string[]): Promise<number> {
    return this.#host.writer().purgeDead(ids)
  }

  pending(options: { after?: string; until?: string; limit: number }): Promise<JournalEntry[]> {
    return this.#inner.pending(options)
  }

  dead(options?: { after?: string; limit?: number }): Promise<DeadLetter[]> {
    return this.#inner.dead(options)
  }

  lastId(): Promise<string | undefined> {
    return this.#inner.lastId()
  }

  stats(): Promise<JournalStats> {
    return this.#inner.stats()
  }
}

/**
 * Reads the pair file kept in `dir` (docs/pair.md, section 6.4).
 * @returns undefined when there is none
 * @throws PirateError `PIRATE_JOURNAL_CORRUPT` when it does not hold a pair file,
 *   `PIRATE_JOURNAL_IO` when it cannot be read
 */
export async function readPairFile(dir: string): Promise<PairFile | undefined> {
  const file = join(dir, PAIR_FILE)
  let text: string
  try {
    text = await readFile(file, "utf8")
  } catch (err) {
    if (errorCode(err) === "ENOENT") return undefined
    throw new PirateError("PIRATE_JOURNAL_IO", `cannot read ${file}: ${errorMessage(err)}`, {
      cause: err,
    })
  }
  const corrupt = (): PirateError =>
    new PirateError(
      "PIRATE_JOURNAL_CORRUPT",
      `${file} does not hold a pair file; delete it (this node then hands over more and catches up by a full copy)`,
    )
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    throw corrupt()
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw corrupt()
  const m = v as Record<string, unknown>
  const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0
  const isStr = (x: unknown): boolean => x === undefined || typeof x === "string"
  if (!isCount(m["epoch"]) || !isCount(m["applied"])) throw corrupt()
  if (!isStr(m["stream"]) || !isStr(m["watermark"]) || !isStr(m["sender"]) || !isStr(m["lastId"]))
    throw corrupt()
  const out: PairFile = { epoch: m["epoch"], applied: m["applied"] }
  for (const key of ["stream", "watermark", "sender", "lastId"] as const) {
    const value = m[key]
    if (typeof value === "string") out[key] = value
  }
  return out
}

/** Writes the pair file atomically (a temporary file renamed), synced when `sync`. */
async function writePairFile(dir: string, pair: PairFile, sync: boolean): Promise<void> {
  const file = join(dir, PAIR_FILE)
  const tmp = `${file}.tmp`
  const handle = await open(tmp, "w")
  try {
    await handle.writeFile(`${JSON.stringify(pair)}\n`, "utf8")
    if (sync) await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, file)
  if (sync) {
    const d = await open(dir, "r")
    try {
      await d.sync()
    } finally {
      await d.close()
    }
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

/** Whether a journal holds `id` as a pending entry or a dead letter. */
async function holds(j: Journal, id: string): Promise<boolean> {
  const before = previousId(id)
  const range = before === undefined ? {} : { after: before }
  const [p] = await j.pending({ ...range, until: id, limit: 1 })
  if (p?.id === id) return true
  const [d] = await j.dead({ ...range, limit: 1 })
  return d?.id === id
}

function parityOf(id: string): 0 | 1 {
  return (parseInt(id.slice(-1), 16) & 1) as 0 | 1
}

function maxId(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a > b ? a : b
}

function sum(values: Iterable<number>): number {
  let n = 0
  for (const v of values) n += v
  return n
}

/** An estimate of an entry's size on the wire. */
function entryBytes(e: JournalEntry): number {
  return (
    96 +
    e.payload.length +
    (e.key?.length ?? 0) +
    (e.lastError?.length ?? 0) +
    (e.dedupeId?.length ?? 0)
  )
}

function entriesBytes(entries: readonly JournalEntry[]): number {
  let n = 0
  for (const e of entries) n += entryBytes(e)
  return n
}

/** An estimate of a record's size on the wire (whole bodies: an 8 MiB payload counts 8 MiB). */
function recordBytes(r: ReplicationRecord): number {
  switch (r.op) {
    case "append":
    case "schedule":
    case "replay":
    case "promote":
      return 32 + entriesBytes(r.entries)
    case "bury":
      return 32 + entriesBytes(r.letters)
    case "remove":
      return (
        32 +
        20 * r.ids.length +
        (r.dedupe === undefined ? 0 : 40 * (r.dedupe.acked.length + r.dedupe.forget.length))
      )
    case "purge":
    case "unschedule":
      return 32 + 20 * r.ids.length
    case "update":
      return 32 + r.updates.reduce((n, u) => n + 48 + (u.lastError?.length ?? 0), 0)
    case "dedupe":
      return 32
  }
}

/** Pages of at most PAGE_ENTRIES entries and PAGE_BYTES bytes (at least one entry each). */
function chunks<T extends JournalEntry>(entries: readonly T[]): T[][] {
  const out: T[][] = []
  let page: T[] = []
  let bytes = 0
  for (const e of entries) {
    const b = entryBytes(e)
    if (page.length > 0 && (page.length >= PAGE_ENTRIES || bytes + b > PAGE_BYTES)) {
      out.push(page)
      page = []
      bytes = 0
    }
    page.push(e)
    bytes += b
  }
  if (page.length > 0) out.push(page)
  return out
}
