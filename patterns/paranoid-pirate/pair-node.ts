/**
 * One sender of a high-availability pair (docs/pair.md): the pair link and its state machine, the
 * journal replication, and the sender core, which is passive (it answers workers, hands them
 * nothing, and the journal is the active's replica) until the state machine makes this node
 * active. Transitions run one at a time, in the order the link decides them.
 */
import { closedError, passiveError, PirateError, toError } from "../../lib/errors.js"
import { LevelJournal } from "../../lib/journal/level.js"
import type { Journal } from "../../lib/journal/types.js"
import { PairLink } from "../../lib/pair/link.js"
import type { PairStateName } from "../../lib/pair/pair-state.js"
import { PairReplication, readPairFile } from "../../lib/pair/replication.js"
import {
  assertKnownOptions,
  assertOneOf,
  assertPositiveInt,
  describe,
  singleEndpoint,
} from "../../lib/validate.js"
import { Dispatcher, type DispatcherSettings, type PairStats } from "./core/index.js"
import type { SenderPairOptions } from "./settings.js"

/** The `pair` option, checked and with its defaults. */
export interface ResolvedPair {
  role: "primary" | "backup"
  bind: string
  peer: string
  timeout: number
  sync: boolean
  whenAlone: "wait" | "local"
}

const PAIR_OPTIONS = {
  role: true,
  bind: true,
  peer: true,
  timeout: true,
  sync: true,
  whenAlone: true,
} as const satisfies Record<keyof SenderPairOptions, true>

/** Validates the `pair` option (TypeError/RangeError naming the option). */
export function resolvePair(
  pair: SenderPairOptions,
  settings: Pick<DispatcherSettings, "heartbeatInterval" | "liveness">,
): ResolvedPair {
  if (typeof pair !== "object" || pair === null)
    throw new TypeError(`'pair' must be an object, got ${describe(pair)}`)
  assertKnownOptions("pair", pair, PAIR_OPTIONS)
  assertOneOf("pair.role", pair.role, ["primary", "backup"] as const)
  const timeout = pair.timeout ?? settings.heartbeatInterval * settings.liveness
  assertPositiveInt("pair.timeout", timeout)
  if (pair.sync !== undefined && typeof pair.sync !== "boolean")
    throw new TypeError(`'pair.sync' must be a boolean, got ${describe(pair.sync)}`)
  const whenAlone = pair.whenAlone ?? "wait"
  assertOneOf("pair.whenAlone", whenAlone, ["wait", "local"] as const)
  return {
    role: pair.role,
    bind: singleEndpoint("pair.bind", pair.bind),
    peer: singleEndpoint("pair.peer", pair.peer),
    timeout,
    sync: pair.sync ?? false,
    whenAlone,
  }
}

/** What the node needs of its `Sender`. */
export interface PairNodeHost {
  /** A new sender core took over (the first one, or one after a step down): forward its events. */
  adopt(core: Dispatcher): void
  active(event: { epoch: number; reason: string }): void
  passive(event: { epoch: number; reason: string }): void
  error(err: Error): void
}

export class PairNode {
  readonly #settings: DispatcherSettings
  readonly #journal: Journal
  readonly #bind: string
  readonly #pair: ResolvedPair
  readonly #replicated: boolean
  readonly #host: PairNodeHost
  #link: PairLink | undefined
  #repl: PairReplication | undefined
  #core: Dispatcher | undefined
  #active = false
  #closed = false
  /** Transitions, one at a time. */
  #queue: Promise<void> = Promise.resolve()

  constructor(
    settings: DispatcherSettings,
    journal: Journal,
    bind: string,
    pair: ResolvedPair,
    replicated: boolean,
    host: PairNodeHost,
  ) {
    this.#settings = {
      ...settings,
      idParity: pair.role === "primary" ? 0 : 1,
      ...(replicated ? { replicated: () => this.#repl?.whenReplicated() } : {}),
    }
    this.#journal = journal
    this.#bind = bind
    this.#pair = pair
    this.#replicated = replicated
    this.#host = host
  }

  /** The current sender core (replaced when an active node steps down). */
  get core(): Dispatcher | undefined {
    return this.#core
  }

  /** The journal the active core writes through (its changes go to the passive). */
  get journal(): Journal | undefined {
    return this.#repl?.journal
  }

  /** `"active"` only while this node takes sends and dispatches. */
  get state(): "active" | "passive" {
    return this.#active ? "active" : "passive"
  }

  /** Where the pair socket is bound, once open. */
  get pairEndpoint(): string | undefined {
    return this.#link?.endpoint
  }

  async open(): Promise<void> {
    const journal = this.#journal
    await journal.open()
    try {
      const dir = journal instanceof LevelJournal ? journal.path : undefined
      const file = dir === undefined ? undefined : await readPairFile(dir)
      const link = new PairLink({
        role: this.#pair.role,
        bind: this.#pair.bind,
        peer: this.#pair.peer,
        heartbeatInterval: this.#settings.heartbeatInterval,
        timeout: this.#pair.timeout,
        maxMessageSize: pairMessageLimit(this.#settings),
        ...(file === undefined ? {} : { epoch: file.epoch }),
      })
      this.#link = link
      const repl = new PairReplication({
        link,
        journal,
        sync: this.#pair.sync,
        replicated: this.#replicated,
        whenAlone: this.#pair.whenAlone,
        parity: this.#pair.role === "primary" ? 0 : 1,
        ...(dir === undefined ? {} : { dir }),
        room: (n) => this.#core?.room(n) ?? Promise.resolve(),
        // The sender waits for the passive's ack after its write (see DispatcherSettings).
        waitInJournal: false,
      })
      this.#repl = repl
      repl.on("error", (err) => this.#host.error(err))
      repl.on("handover", ({ pending, scheduled }) => this.#core?.adopt(pending, scheduled))
      link.on("error", (err) => this.#host.error(err))
      link.on("conflict", () =>
        this.#host.error(
          new PirateError(
            "PIRATE_PAIR_CONFIG",
            `both senders of the pair are configured with pair.role "${this.#pair.role}": one must be "primary", the other "backup"`,
          ),
        ),
      )
      link.on("state", (s) => this.#enqueue(() => this.#transition(s)))
      await this.#openCore()
      await link.open()
    } catch (err) {
      await this.close().catch(() => undefined)
      throw err
    }
  }

  /** The state machine's view, for WELCOME and PAIR (a starting node reports its role). */
  #pairState(): PairStateName {
    return this.#link?.state ?? this.#pair.role
  }

  /** A passive core on the worker endpoint (the one bound before, after a step down). */
  async #openCore(): Promise<void> {
    const core = new Dispatcher(
      "sender",
      this.#settings,
      (this.#repl as PairReplication).journal,
      undefined,
      { state: () => this.#pairState(), vote: () => this.#link?.vote() },
    )
    this.#host.adopt(core)
    await core.open(this.#core?.endpoint ?? this.#bind, "bind", true)
    this.#core = core
  }

  #enqueue(step: () => Promise<void>): void {
    this.#queue = this.#queue.then(step).catch((err: unknown) => {
      if (!this.#closed) this.#host.error(toError(err))
    })
  }

  async #transition(s: {
    state: "active" | "passive"
    epoch: number
    reason: string
  }): Promise<void> {
    if (this.#closed) return
    const repl = this.#repl as PairReplication
    if (s.state === "active") {
      if (this.#active) return
      repl.startActive()
      await this.#core?.activate(await repl.lastIdFloor())
      if (this.#closed) return
      this.#active = true
      this.#core?.announcePair("active")
      this.#host.active({ epoch: s.epoch, reason: s.reason })
      return
    }
    if (this.#active) {
      // Both were active and the peer ranks higher: this node's window is abandoned (the active
      // redelivers what it holds), its waiting sends fail, and a passive core takes the endpoint.
      this.#active = false
      repl.stop(passiveError())
      const old = this.#core
      await old?.close(passiveError())
      if (this.#closed) return
      await this.#openCore()
    }
    this.#core?.announcePair("passive")
    await repl.startPassive()
    if (this.#closed) return
    this.#host.passive({ epoch: s.epoch, reason: s.reason })
  }

  stats(): PairStats {
    const link = this.#link
    const r = this.#repl?.stats()
    return {
      role: this.#pair.role,
      state: this.state,
      epoch: link?.epoch ?? 0,
      peer: link?.peerStatus ?? "unknown",
      replicated: r?.replicated ?? false,
      lag: r?.lag ?? 0,
      dropped: (link?.dropped ?? 0) + (r?.dropped ?? 0),
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const errors: unknown[] = []
    this.#repl?.stop(closedError("sender"))
    for (const step of [
      () => this.#core?.close(),
      () => this.#link?.close(),
      () => this.#queue,
      () => this.#repl?.flushed(),
      () => this.#journal.close(),
    ]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, "sender close failed")
  }
}

/**
 * The largest message of the pair link: a record carries one group commit, which holds at most
 * the window's and the spilling sends' payloads (each `windowBytes`), or one message larger than
 * that; 1 GiB without a limit in bytes.
 */
function pairMessageLimit(s: Pick<DispatcherSettings, "windowBytes" | "maxMessageSize">): number {
  if (!Number.isFinite(s.windowBytes)) return 1024 * 1024 * 1024
  return 2 * s.windowBytes + s.maxMessageSize + 1024 * 1024
}
