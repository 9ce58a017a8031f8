/**
 * The sender side of the worker vote (docs/pair.md section 5): a `Dispatcher` given pair hooks
 * tells workers that announced `pair` its state (WELCOME, PAIR) and hands their VOTEs to the
 * hooks; without hooks it behaves as before (the key ignored, VOTE an unknown command).
 */
import { once } from "node:events"
import { describe, expect, it, onTestFinished } from "vitest"
import { Dealer } from "zeromq"
import { MemoryJournal } from "../../lib/journal/memory.js"
import type { PairStateName } from "../../lib/pair/pair-state.js"
import {
  FRAME_VOTE,
  PPP,
  PPX,
  decodePair,
  decodeWelcome,
  encodeReady,
  type Welcome,
} from "../../lib/protocol.js"
import { Dispatcher } from "../../patterns/paranoid-pirate/core/index.js"
import type { PairHooks } from "../../patterns/paranoid-pirate/core/sessions.js"
import { resolveCore } from "../../patterns/paranoid-pirate/settings.js"
import { waitFor } from "../helpers/wait.js"

const HEARTBEAT = 50

/** A core on a free port, with these pair hooks (none: a sender not in a pair). */
async function openCore(pair?: PairHooks): Promise<Dispatcher> {
  const { settings } = resolveCore({ heartbeatInterval: HEARTBEAT })
  const core = new Dispatcher("sender", settings, new MemoryJournal(), undefined, pair)
  core.on("error", () => undefined)
  await core.open("tcp://127.0.0.1:*")
  onTestFinished(() => core.close())
  return core
}

/** Hooks that report `state` and count votes. */
function hooks(state: PairStateName): PairHooks & { votes: number; current: PairStateName } {
  const h = {
    votes: 0,
    current: state,
    state: () => h.current,
    vote: () => {
      h.votes++
    },
  }
  return h
}

/** A fake PPX worker: a DEALER that announced itself, with what it received since. */
class FakeWorker {
  readonly dealer = new Dealer({ linger: 0 })
  readonly got: Buffer[][] = []
  #waiters: (() => void)[] = []

  static async open(core: Dispatcher, pair: boolean): Promise<FakeWorker> {
    const w = new FakeWorker()
    onTestFinished(() => w.dealer.close())
    w.dealer.connect(core.endpoint as string)
    await w.dealer.send(
      encodeReady({
        credit: 1,
        heartbeatInterval: HEARTBEAT,
        liveness: 3,
        ...(pair ? { pair: true as const } : {}),
      }),
    )
    w.#loop().catch(() => undefined)
    return w
  }

  async #loop(): Promise<void> {
    for (;;) {
      const msg = await this.dealer.receive()
      this.got.push(msg)
      // Heartbeat back, so that the core keeps us.
      if (msg.length === 1 && msg[0]?.[0] === PPP.HEARTBEAT)
        await this.dealer.send(Buffer.from([PPP.HEARTBEAT]))
      for (const wake of this.#waiters.splice(0)) wake()
    }
  }

  /** Waits for a message matching `match` (received at index `from` or later). */
  async find(match: (msg: Buffer[]) => boolean, from = 0): Promise<Buffer[]> {
    return waitFor(() => {
      const m = this.got.slice(from).find(match)
      expect(m).toBeDefined()
      return m as Buffer[]
    })
  }

  async welcome(): Promise<Welcome> {
    const msg = await this.find((m) => m[0]?.[0] === PPX.WELCOME)
    return decodeWelcome(msg[1])
  }

  /** The states of the PAIRs received from index `from` on. */
  pairs(from = 0): PairStateName[] {
    return this.got
      .slice(from)
      .filter((m) => m.length === 2 && m[0]?.length === 1 && m[0][0] === PPX.PAIR)
      .map((m) => decodePair(m[1]))
  }

  /** Waits until `n` heartbeats arrived after index `from`: a few heartbeat intervals passed. */
  async heartbeats(n: number, from: number): Promise<void> {
    await waitFor(() =>
      expect(
        this.got.slice(from).filter((m) => m.length === 1 && m[0]?.[0] === PPP.HEARTBEAT).length,
      ).toBeGreaterThanOrEqual(n),
    )
  }
}

describe("a sender of a pair and the workers' votes", () => {
  it("says its state in WELCOME to a worker that announced pair, and not to one that did not", async () => {
    const h = hooks("passive")
    const core = await openCore(h)
    const aware = await FakeWorker.open(core, true)
    const plain = await FakeWorker.open(core, false)
    expect(await aware.welcome()).toMatchObject({ pair: "passive" })
    expect(await plain.welcome()).not.toHaveProperty("pair")
  })

  it("hands a VOTE from a worker that announced pair to the hooks", async () => {
    const h = hooks("passive")
    const core = await openCore(h)
    const w = await FakeWorker.open(core, true)
    await w.welcome()
    await w.dealer.send(FRAME_VOTE)
    await w.dealer.send(FRAME_VOTE)
    await waitFor(() => expect(h.votes).toBe(2))
    expect(core.stats().dropped).toBe(0)
  })

  it("drops a VOTE from a worker that did not announce pair, as an unknown command", async () => {
    const h = hooks("passive")
    const core = await openCore(h)
    const w = await FakeWorker.open(core, false)
    await w.welcome()
    await w.dealer.send(FRAME_VOTE)
    await waitFor(() => expect(core.stats().dropped).toBe(1))
    expect(h.votes).toBe(0)
  })

  it("announcePair sends PAIR to every worker that announced pair, and only to those", async () => {
    const h = hooks("primary")
    const core = await openCore(h)
    const a = await FakeWorker.open(core, true)
    const b = await FakeWorker.open(core, true)
    const plain = await FakeWorker.open(core, false)
    expect(await a.welcome()).toMatchObject({ pair: "primary" })
    expect(await b.welcome()).toMatchObject({ pair: "primary" })
    await plain.welcome()
    const from = plain.got.length
    h.current = "active"
    core.announcePair("active")
    await a.find((m) => m[0]?.[0] === PPX.PAIR)
    await b.find((m) => m[0]?.[0] === PPX.PAIR)
    expect(a.pairs()).toEqual(["active"])
    expect(b.pairs()).toEqual(["active"])
    // Messages of one connection arrive in order: two heartbeats after it, no PAIR came.
    await plain.heartbeats(2, from)
    expect(plain.pairs()).toEqual([])
    // A worker that registers now is welcomed with the new state.
    const c = await FakeWorker.open(core, true)
    expect(await c.welcome()).toMatchObject({ pair: "active" })
  })

  it("forgets a worker's pair once it is lost: a new connection must announce it again", async () => {
    const h = hooks("passive")
    const core = await openCore(h)
    const w = await FakeWorker.open(core, true)
    await w.welcome()
    const lost = once(core, "worker:lost", { signal: AbortSignal.timeout(5000) })
    w.dealer.close()
    await lost
    const again = await FakeWorker.open(core, false)
    await again.welcome()
    await again.dealer.send(FRAME_VOTE)
    await waitFor(() => expect(core.stats().dropped).toBe(1))
    expect(h.votes).toBe(0)
  })
})

describe("a sender not in a pair (no hooks) behaves as before", () => {
  it("ignores READY's pair: no pair in WELCOME, VOTE dropped as an unknown command, no PAIR", async () => {
    const core = await openCore()
    const w = await FakeWorker.open(core, true)
    const welcome = await w.welcome()
    expect(welcome).not.toHaveProperty("pair")
    expect(welcome).toMatchObject({ version: 2, heartbeatInterval: HEARTBEAT, liveness: 3 })
    expect(core.workers()).toHaveLength(1)
    await w.dealer.send(FRAME_VOTE)
    await waitFor(() => expect(core.stats().dropped).toBe(1))
    const from = w.got.length
    core.announcePair("active")
    await w.heartbeats(2, from)
    expect(w.pairs()).toEqual([])
    expect(core.workers()).toHaveLength(1)
  })
})
