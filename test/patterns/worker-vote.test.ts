/**
 * The worker's vote for a sender pair (docs/pair.md section 5), against hand-made senders: raw
 * ROUTERs that speak PPX (READY → WELCOME with or without `pair`, heartbeats, PAIR) and record
 * what the worker sends them, VOTEs with their arrival time.
 */
import { EventEmitter, once } from "node:events"
import { onTestFinished } from "vitest"
import { describe, expect, it } from "vitest"
import { Router } from "zeromq"
import { debuglog } from "node:util"
import type { PairStateName } from "../../lib/pair/pair-state.js"
import {
  FRAME_HEARTBEAT,
  PPP,
  PPX,
  decodeReady,
  encodePair,
  encodeWelcome,
} from "../../lib/protocol.js"
import { Worker } from "../../patterns/index.js"
import { waitFor } from "../helpers/wait.js"

const log = debuglog("pirate-test")
const HEARTBEAT = 50
const LIVENESS = 3
const WINDOW = HEARTBEAT * LIVENESS

type Mode =
  /** Answers READY with a WELCOME saying this pair state, and heartbeats. */
  | { pair: PairStateName }
  /** Answers READY with a WELCOME without `pair` (a sender not in a pair), and heartbeats. */
  | "plain"
  /** Never answers: a sender that is not there for the worker. */
  | "silent"

/** What a fake sender got from the worker, in order, each with its arrival time. */
interface Got {
  kind: "ready" | "heartbeat" | "vote" | "other"
  at: number
  frames: Buffer[]
}

/** A sender made by hand: a ROUTER speaking just enough PPX. */
class FakeSender extends EventEmitter<{ got: [Got] }> {
  readonly router = new Router({ linger: 0 })
  readonly got: Got[] = []
  #worker: Buffer | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #muted = false

  readonly mode: Mode

  constructor(mode: Mode) {
    super()
    this.mode = mode
  }

  get endpoint(): string {
    return this.router.lastEndpoint as string
  }

  votes(): Got[] {
    return this.got.filter((g) => g.kind === "vote")
  }

  async open(): Promise<this> {
    await this.router.bind("tcp://127.0.0.1:*")
    onTestFinished(() => this.close())
    this.#loop().catch(() => undefined)
    return this
  }

  close(): void {
    clearInterval(this.#heartbeat)
    this.router.close()
  }

  /** Stops heartbeating (and answering): a sender whose machine died, its socket left open. */
  mute(): void {
    this.#muted = true
    clearInterval(this.#heartbeat)
    this.#worker = undefined
  }

  /** Sends PAIR with a new state to the worker. */
  async pair(state: PairStateName): Promise<void> {
    await this.router.send([this.#worker as Buffer, ...encodePair(state)])
  }

  /** The first message of this kind the worker sent, once there is one. */
  first(kind: Got["kind"]): Promise<Got> {
    return waitFor(() => {
      const g = this.got.find((x) => x.kind === kind)
      expect(g).toBeDefined()
      return g as Got
    })
  }

  /** Resolves with the next message of this kind from the worker. */
  async next(kind: Got["kind"]): Promise<Got> {
    for (;;) {
      const [g] = (await once(this, "got", { signal: AbortSignal.timeout(5000) })) as [Got]
      if (g.kind === kind) return g
    }
  }

  async #loop(): Promise<void> {
    for (;;) {
      const [id, ...frames] = await this.router.receive()
      const first = frames[0]
      const at = performance.now()
      const kind: Got["kind"] =
        frames.length !== 1 || first === undefined
          ? "other"
          : first[0] === PPP.READY
            ? "ready"
            : first.length === 1 && first[0] === PPP.HEARTBEAT
              ? "heartbeat"
              : first.length === 1 && first[0] === PPX.VOTE
                ? "vote"
                : "other"
      const g = { kind, at, frames }
      this.got.push(g)
      if (kind === "ready" && this.mode !== "silent" && !this.#muted) {
        this.#worker = Buffer.from(id as Buffer)
        await this.router.send([
          this.#worker,
          ...encodeWelcome({
            version: 2,
            heartbeatInterval: HEARTBEAT,
            liveness: LIVENESS,
            pair: this.mode === "plain" ? undefined : this.mode.pair,
          }),
        ])
        clearInterval(this.#heartbeat)
        this.#heartbeat = setInterval(() => {
          if (this.#worker && !this.router.closed)
            this.router.send([this.#worker, FRAME_HEARTBEAT]).catch(() => undefined)
        }, HEARTBEAT)
      }
      // Confirm the worker's GOODBYE at close, so that it need not wait out its closeTimeout.
      if (first?.length === 1 && first[0] === PPX.GOODBYE && this.#worker && kind === "other")
        await this.router.send([this.#worker, first])
      this.emit("got", g)
    }
  }
}

async function fakes(...modes: Mode[]): Promise<FakeSender[]> {
  return Promise.all(modes.map((m) => new FakeSender(m).open()))
}

/** A PPX worker connected to the fakes in this order; `opened` is when open() resolved. */
async function openWorker(
  senders: FakeSender[],
  protocol: "ppx" | "ppp" = "ppx",
): Promise<{ worker: Worker; opened: number; votedFor: string[] }> {
  const worker = new Worker({
    connect: senders.map((s) => s.endpoint),
    handler: () => undefined,
    heartbeatInterval: HEARTBEAT,
    liveness: LIVENESS,
    reconnect: { initial: 50, max: 400 },
    closeTimeout: 500,
    protocol,
  })
  const votedFor: string[] = []
  worker.on("pair:vote", (e) => votedFor.push(e.endpoint))
  await worker.open()
  const opened = performance.now()
  onTestFinished(() => worker.close())
  return { worker, opened, votedFor }
}

/**
 * Waits until `sender` has received `count` heartbeats from the worker after `since`: an event
 * that marks the passing of about `count` heartbeat intervals, instead of a sleep.
 */
async function heartbeatsAfter(sender: FakeSender, since: number, count: number): Promise<void> {
  await waitFor(() =>
    expect(
      sender.got.filter((g) => g.kind === "heartbeat" && g.at > since).length,
    ).toBeGreaterThanOrEqual(count),
  )
}

describe("the worker's vote for a sender pair", () => {
  it("announces pair: true in its PPX READY", async () => {
    const [s] = await fakes({ pair: "active" })
    await openWorker([s as FakeSender])
    const ready = await (s as FakeSender).first("ready")
    expect(decodeReady(ready.frames[0] as Buffer)).toMatchObject({ pair: true })
  })

  it("never votes while it has a live session with an active sender", async () => {
    const [active, passive] = (await fakes({ pair: "active" }, { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { worker, opened } = await openWorker([active, passive])
    // Three liveness windows of the worker's heartbeats to the passive, which it could vote for.
    await heartbeatsAfter(passive, opened + 3 * WINDOW, 1)
    expect(passive.votes()).toEqual([])
    expect(active.votes()).toEqual([])
    expect(worker.stats().votes).toBe(0)
  })

  it("counts a sender whose WELCOME has no pair as active: no votes", async () => {
    const [plain, passive] = (await fakes("plain", { pair: "passive" })) as [FakeSender, FakeSender]
    const { worker, opened } = await openWorker([plain, passive])
    await heartbeatsAfter(passive, opened + 3 * WINDOW, 1)
    expect(passive.votes()).toEqual([])
    expect(worker.stats().votes).toBe(0)
  })

  it("votes for the passive once a liveness window passed without an active, then once per heartbeat; PAIR active stops it", async () => {
    const [silent, passive] = (await fakes("silent", { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { worker, opened, votedFor } = await openWorker([silent, passive])
    await waitFor(() => expect(passive.votes().length).toBeGreaterThanOrEqual(6))
    const at = passive.votes().map((v) => v.at)
    const first = (at[0] as number) - opened
    log("first vote %d ms after open (window %d ms)", first.toFixed(1), WINDOW)
    // Not before the window (a timer may fire a ms early), and soon after it.
    expect(first).toBeGreaterThanOrEqual(WINDOW - 2)
    expect(first).toBeLessThanOrEqual(WINDOW + HEARTBEAT)
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number))
    log(
      "gaps between votes: %o",
      gaps.map((g) => Math.round(g)),
    )
    // Once per heartbeat interval: never faster, and on average about that.
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(HEARTBEAT - 5)
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length
    expect(mean).toBeLessThanOrEqual(2 * HEARTBEAT)
    // Only to the passive: the silent sender got READY (and heartbeats) but no vote.
    expect(silent.votes()).toEqual([])
    expect(new Set(votedFor)).toEqual(new Set([passive.endpoint]))
    expect(worker.stats().votes).toBe(votedFor.length)

    // The passive took over: it says so, and the votes stop.
    const sent = performance.now()
    await passive.pair("active")
    await heartbeatsAfter(passive, sent, 4)
    const hb = passive.got.filter((g) => g.kind === "heartbeat" && g.at > sent)
    // Messages of one connection arrive in order: after the first heartbeat that followed the
    // PAIR, three more heartbeat intervals passed without a vote.
    expect(passive.votes().filter((v) => v.at > (hb[0] as Got).at)).toEqual([])
    expect(worker.stats().votes).toBe(passive.votes().length)
  })

  it("votes for the first passive in connect order when there are several", async () => {
    const [p1, p2] = (await fakes({ pair: "passive" }, { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { votedFor } = await openWorker([p1, p2])
    await waitFor(() => expect(p1.votes().length).toBeGreaterThanOrEqual(4))
    expect(new Set(votedFor)).toEqual(new Set([p1.endpoint]))
    expect(p2.votes()).toEqual([])
  })

  it("prefers a passive to a starting primary, and a primary to a backup", async () => {
    const [backup, primary, passive] = (await fakes(
      { pair: "backup" },
      { pair: "primary" },
      { pair: "passive" },
    )) as [FakeSender, FakeSender, FakeSender]
    const { votedFor } = await openWorker([backup, primary, passive])
    await waitFor(() => expect(passive.votes().length).toBeGreaterThanOrEqual(2))
    expect(new Set(votedFor)).toEqual(new Set([passive.endpoint]))
    // The passive turns out to be a starting primary again (it restarted): the primary first in
    // connect order gets the votes now, not the backup.
    const before = votedFor.length
    await passive.pair("primary")
    await waitFor(() => expect(primary.votes().length).toBeGreaterThanOrEqual(2))
    expect(new Set(votedFor.slice(before + 1))).toEqual(new Set([primary.endpoint]))
    expect(backup.votes()).toEqual([])
  })

  it("starts voting a liveness window after its active sender became passive", async () => {
    const [active] = (await fakes({ pair: "active" })) as [FakeSender]
    const { votedFor } = await openWorker([active])
    await active.next("heartbeat")
    const demoted = performance.now()
    await active.pair("passive")
    const vote = await active.next("vote")
    log(
      "first vote %d ms after the demotion (window %d ms)",
      (vote.at - demoted).toFixed(1),
      WINDOW,
    )
    expect(vote.at - demoted).toBeGreaterThanOrEqual(WINDOW - 2)
    expect(vote.at - demoted).toBeLessThanOrEqual(WINDOW + HEARTBEAT)
    expect(votedFor[0]).toBe(active.endpoint)
  })

  it("starts voting a liveness window after it lost its session with the active", async () => {
    const [active, passive] = (await fakes({ pair: "active" }, { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { votedFor } = await openWorker([active, passive])
    await active.next("heartbeat")
    const lost = performance.now()
    active.close()
    const vote = await passive.next("vote")
    log(
      "first vote %d ms after the active closed (window %d ms)",
      (vote.at - lost).toFixed(1),
      WINDOW,
    )
    expect(vote.at - lost).toBeGreaterThanOrEqual(WINDOW - 2)
    expect(votedFor[0]).toBe(passive.endpoint)
  })

  it("when its active goes silent, votes a liveness window after it last heard the active, not a window after noticing", async () => {
    const [active, passive] = (await fakes({ pair: "active" }, { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { votedFor } = await openWorker([active, passive])
    await active.next("heartbeat")
    const muted = performance.now()
    active.mute()
    const vote = await passive.next("vote")
    const delay = vote.at - muted
    log("first vote %d ms after the active went silent (window %d ms)", delay.toFixed(1), WINDOW)
    // The active's last heartbeat came at most a heartbeat before it went silent; the silence is
    // noticed within a quarter heartbeat (the worker's tick). Counting from the notice would be
    // about two windows.
    expect(delay).toBeGreaterThanOrEqual(WINDOW - HEARTBEAT - 2)
    expect(delay).toBeLessThanOrEqual(WINDOW + HEARTBEAT)
    expect(votedFor[0]).toBe(passive.endpoint)
  })

  it("a plain PPP worker announces no pair and never votes", async () => {
    const [silent, passive] = (await fakes("silent", { pair: "passive" })) as [
      FakeSender,
      FakeSender,
    ]
    const { worker, opened } = await openWorker([silent, passive], "ppp")
    const ready = await passive.first("ready")
    expect(decodeReady(ready.frames[0] as Buffer)).toBeNull()
    await heartbeatsAfter(passive, opened + 3 * WINDOW, 1)
    expect(passive.votes()).toEqual([])
    expect(worker.stats().votes).toBe(0)
  })
})
