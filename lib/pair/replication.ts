/**
 * The replication engine of a sender pair (docs/pair.md, sections 3 and 6.4), on top of the pair
 * link: the active node streams its journal's changes from a bounded ring and serves the
 * passive's catch-up (the tail of the ring, or a full copy), with flow control and `replicated`
 * durability; the passive hands over what only it holds, then applies the stream and acks it.
 * `PairReplication` coordinates the two sides (replication-active.ts, replication-passive.ts):
 * the role and its term, the link's events, the HELLO fields, the pair file and the sender id.
 */
import { EventEmitter } from "node:events"
import { debug } from "../debug.js"
import { PirateError } from "../errors.js"
import { maxId } from "../journal/ids.js"
import { journalSenderId } from "../journal/sender-id.js"
import type { Journal, JournalEntry } from "../journal/types.js"
import { assertOneOf, assertPositiveInt } from "../validate.js"
import type { HelloFields, PairLink, PeerHello } from "./link.js"
import { PairFileStore } from "./pair-file.js"
import { PairJournal } from "./pair-journal.js"
import { ReplicationActive } from "./replication-active.js"
import type { ReplicationHost } from "./replication-host.js"
import { ReplicationPassive } from "./replication-passive.js"

export { PAIR_FILE, readPairFile, type PairFile } from "./pair-file.js"

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
   * How long (ms) a passive holds the records it logged and acked before its journal takes them,
   * and how many records and bytes at most (docs/pair.md, section 3.6).
   * @defaultValue 500 ms, 8 192 records, 64 MiB
   */
  hold?: { ms?: number; records?: number; bytes?: number }
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
  hold: Object.freeze({ ms: 500, records: 8192, bytes: 64 * 1024 * 1024 }),
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
  readonly #pairFile: PairFileStore
  readonly #active: ReplicationActive
  readonly #passive: ReplicationPassive

  #role: "idle" | "active" | "passive" = "idle"
  /** Grows at each start and stop: a loop of an older term ends. */
  #term = 0
  #stopError: Error | undefined
  #ready: Promise<void> | undefined
  #ownSender: string | undefined
  #peerSender: string | undefined
  #adopting: Promise<void> = Promise.resolve()
  #dropped = 0
  #timer: NodeJS.Timeout | undefined
  /** The peer's latest catch-up request (its HELLO), served once this node is active. */
  #request: PeerHello | undefined

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
    const window = { ...PAIR_REPLICATION_DEFAULTS.window, ...options.window }
    assertPositiveInt("window.records", window.records)
    assertPositiveInt("window.bytes", window.bytes)
    const backlog = { ...PAIR_REPLICATION_DEFAULTS.backlog, ...options.backlog }
    assertPositiveInt("backlog.records", backlog.records)
    assertPositiveInt("backlog.bytes", backlog.bytes)
    const hold = { ...PAIR_REPLICATION_DEFAULTS.hold, ...options.hold }
    assertPositiveInt("hold.ms", hold.ms)
    assertPositiveInt("hold.records", hold.records)
    assertPositiveInt("hold.bytes", hold.bytes)
    this.#link = link
    this.#inner = journal
    if (options.room !== undefined && typeof options.room !== "function")
      throw new TypeError("'room' must be a function")
    this.#pairFile = new PairFileStore(options.dir, {
      sync: options.sync,
      epoch: () => link.epoch,
      onError: (err) => this.#error(err),
    })
    const host: ReplicationHost = {
      link,
      journal,
      pairFile: this.#pairFile,
      role: () => this.#role,
      term: () => this.#term,
      stopError: () => this.#stopError,
      check: (term) => this.#check(term),
      drop: (reason) => this.#drop(reason),
      error: (err) => this.#error(err),
    }
    this.#active = new ReplicationActive(
      {
        ...host,
        replicatedChanged: (replicated) => this.emit("replicated", { replicated }),
        handedOver: (event) => this.emit("handover", event),
      },
      {
        replicated: options.replicated,
        whenAlone: options.whenAlone,
        parity: options.parity,
        window,
        backlog,
        room: options.room,
      },
    )
    this.#passive = new ReplicationPassive(host, {
      sync: options.sync,
      parity: options.parity,
      dir: options.dir,
      hold,
    })
    const waitInJournal = options.waitInJournal ?? true
    this.journal = new PairJournal(journal, {
      writer: () => this.#active.writer(),
      replicated: (w) => (waitInJournal ? this.#active.settle(w) : Promise.resolve()),
    })

    link.setHello(() => this.#helloFields())
    link.on("hello", (h) => this.#onHello(h))
    link.on("ack", (a) => this.#active.onAck(a))
    link.on("records", (b) => this.#passive.records(b))
    link.on("copy", (c) => this.#passive.copy(c))
    link.on("copy:end", (e) => this.#passive.copyEnd(e))
    link.on("handover", (p) => this.#active.onHandover(p))
    link.on("handed", ({ page }) => this.#passive.handed(page))
    link.on("peer:lost", () => this.#onPeerLost())
    link.on("state", ({ epoch }) => {
      this.#pairFile.file.epoch = Math.max(this.#pairFile.file.epoch, epoch)
      if (this.#ready !== undefined) void this.#pairFile.save()
    })
  }

  /** True while a passive peer is caught up with the current stream (the active's view). */
  get replicated(): boolean {
    return this.#active.replicated
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
    this.#active.start()
    this.#startTimer()
    void Promise.all([this.#passive.flushed(), this.#init()]).then(
      async () => {
        if (this.#term !== term) return
        // This journal now changes on its own: a later catch-up starts from nothing.
        const file = this.#pairFile.file
        delete file.stream
        file.applied = 0
        // Tell the peer the pair's sender id.
        this.#link.hello()
        if (this.#request !== undefined) this.#active.serve(this.#request)
        await this.#pairFile.save()
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
    this.#passive.enter()
    this.#startTimer()
    await this.#passive.flushed()
    await this.#init()
    this.#check(term)
    if (this.#peerSender !== undefined) await this.#adopt(this.#peerSender)
    await this.#pairFile.save()
    await this.#passive.handover(term)
    this.#check(term)
    await this.#passive.catchUp()
  }

  /** Stops both roles: every append waiting for the peer rejects with `err`. */
  stop(err: Error): void {
    this.#term++
    this.#stopError = err
    this.#endRoles(err)
    this.#role = "idle"
    clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#ready !== undefined) void this.#pairFile.save()
  }

  /**
   * Resolves once every change emitted so far is replicated as the options want (`replicated`,
   * `whenAlone`); undefined when there is nothing to wait for. Rejects when this node is not the
   * active one (the stop error, or `PIRATE_CLOSED`).
   */
  whenReplicated(): Promise<void> | undefined {
    return this.#active.whenReplicated()
  }

  /**
   * The floor for this node's next message ids: the greatest of its journal's `lastId()`, the
   * pair file's and the last COPY_END's.
   */
  async lastIdFloor(): Promise<string | undefined> {
    await this.#passive.flushed()
    await this.#init()
    return maxId(await this.#inner.lastId(), this.#pairFile.file.lastId)
  }

  stats(): {
    replicated: boolean
    lag: number
    applied: number
    stream: string | undefined
    dropped: number
  } {
    const dropped = this.#link.dropped + this.#dropped
    if (this.#role === "active") return { ...this.#active.stats(), dropped }
    return { replicated: false, ...this.#passive.stats(), dropped }
  }

  /**
   * Writes the pair file now (it is otherwise written at transitions and at most every 100 ms).
   */
  async flush(): Promise<void> {
    await this.#init()
    await this.#pairFile.save()
  }

  /**
   * Internal sizes, for tests: records in the ring and their bytes, appends waiting for an ack,
   * records sent and not acked.
   * @internal
   */
  sizes(): {
    ring: number
    ringBytes: number
    waiters: number
    unacked: number
    held: number
    heldBytes: number
  } {
    return { ...this.#active.sizes(), ...this.#passive.sizes() }
  }

  /**
   * On a passive: writes the records it logged and acked, and holds for its journal (docs/pair.md,
   * section 3.6), to the journal now. Resolves once they are there.
   */
  settle(): Promise<void> {
    return this.#passive.settle()
  }

  /**
   * Resolves once the records a passive held when its state ended are in the journal (the
   * caller closes the journal after this).
   */
  flushed(): Promise<void> {
    return this.#passive.flushed()
  }

  #init(): Promise<void> {
    return (this.#ready ??= (async () => {
      await this.#pairFile.load()
      await this.#passive.recover()
      this.#ownSender = await journalSenderId(this.#inner)
      this.#pairFile.file.sender = this.#ownSender
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
    this.#active.end(
      err ?? new PirateError("PIRATE_CLOSED", "this node is no longer the active one of the pair"),
    )
    // Stopping: held records the journal cannot take now stay in the log for the next open.
    this.#passive.end(err === undefined)
  }

  #helloFields(): HelloFields {
    const fields: HelloFields = {}
    if (this.#ownSender !== undefined) fields.sender = this.#ownSender
    this.#passive.helloFields(fields)
    return fields
  }

  #onHello(h: PeerHello): void {
    if (h.state === "active" && h.sender !== undefined && h.sender !== this.#peerSender) {
      this.#peerSender = h.sender
      if (this.#role === "passive") this.#adopt(h.sender).catch((err: unknown) => this.#error(err))
    }
    this.#request = h.request !== undefined && h.applied !== undefined ? h : undefined
    if (this.#request !== undefined && this.#role === "active" && this.#active.stream !== undefined)
      this.#active.serve(this.#request)
  }

  #onPeerLost(): void {
    this.#active.peerLost()
    this.#passive.peerLost()
  }

  #tick(): void {
    this.#active.tick()
    this.#passive.tick()
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
      this.#pairFile.file.sender = id
      await this.#pairFile.save()
    })
    this.#adopting = run.catch(() => undefined)
    return run
  }
}
