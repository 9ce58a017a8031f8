import fc from "fast-check"
import { describe, expect, test } from "vitest"
import {
  PairState,
  type PairOutput,
  type PairRole,
  type PeerReport,
} from "../../lib/pair/pair-state.js"

const TIMEOUT = 3000

function node(role: PairRole, now = 0, epoch = 0): PairState {
  return new PairState({ role, timeout: TIMEOUT, now, epoch })
}

function report(s: PairState): PeerReport {
  return { role: s.role, state: s.state, epoch: s.epoch }
}

function transitions(out: PairOutput[]): string[] {
  return out.filter((o) => o.type === "active" || o.type === "passive").map((o) => o.type)
}

describe("PairState", () => {
  test("the constructor checks its options", () => {
    expect(() => new PairState({ role: "leader" as PairRole, timeout: 1, now: 0 })).toThrow(
      TypeError,
    )
    expect(() => new PairState({ role: "primary", timeout: 0, now: 0 })).toThrow(RangeError)
    expect(() => new PairState({ role: "primary", timeout: 1, now: 0, epoch: -1 })).toThrow(
      RangeError,
    )
    expect(() => new PairState({ role: "primary", timeout: 1, now: Number.NaN })).toThrow(TypeError)
    const s = node("backup")
    expect(s.state).toBe("backup")
    expect(s.active).toBe(false)
    expect(s.epoch).toBe(0)
    expect(s.peerStatus).toBe("unknown")
  })

  test("a report of an unknown state or role is refused", () => {
    const s = node("primary")
    expect(() => s.peer({ role: "backup", state: "leader" as "active", epoch: 0 }, 1)).toThrow(
      TypeError,
    )
    expect(() => s.peer({ role: "backup", state: "active", epoch: 1.5 }, 1)).toThrow(TypeError)
    expect(s.state).toBe("primary")
  })

  describe("a cold start of both nodes", () => {
    test("the primary hears the backup first: it becomes active, then the backup passive", () => {
      const a = node("primary")
      const b = node("backup")
      const out = a.peer(report(b), 10)
      expect(out).toEqual([
        { type: "peer:alive" },
        { type: "active", epoch: 1, reason: "peer-backup" },
      ])
      expect(b.peer(report(a), 11)).toEqual([
        { type: "peer:alive" },
        { type: "passive", epoch: 1, reason: "peer-active" },
      ])
      expect([a.state, b.state]).toEqual(["active", "passive"])
      expect(b.epoch).toBe(1)
    })

    test("the backup hears the primary first: it waits for the primary to be active", () => {
      const a = node("primary")
      const b = node("backup")
      expect(transitions(b.peer(report(a), 10))).toEqual([])
      expect(b.state).toBe("backup")
      expect(transitions(a.peer(report(b), 11))).toEqual(["active"])
      expect(transitions(b.peer(report(a), 12))).toEqual(["passive"])
    })

    test("a starting primary that hears a passive backup waits; the passive takes over", () => {
      const a = node("primary")
      const b = node("backup")
      a.peer(report(b), 1)
      b.peer(report(a), 2)
      // The primary restarts while the backup is passive.
      const a2 = node("primary", 100, a.epoch)
      expect(transitions(a2.peer(report(b), 101))).toEqual([])
      expect(a2.state).toBe("primary")
      const out = b.peer(report(a2), 102)
      expect(out).toEqual([{ type: "active", epoch: 2, reason: "peer-restarted" }])
      expect(transitions(a2.peer(report(b), 103))).toEqual(["passive"])
      expect(a2.epoch).toBe(2)
    })

    test("a starting backup that hears a passive primary waits; the passive takes over", () => {
      const a = node("primary", 0, 4)
      const b = node("backup", 0, 5)
      // b was active (epoch 5), a passive; b restarts.
      a.peer({ role: "backup", state: "active", epoch: 5 }, 1)
      expect(a.state).toBe("passive")
      expect(transitions(b.peer(report(a), 2))).toEqual([])
      expect(a.peer(report(b), 3)).toEqual([{ type: "active", epoch: 6, reason: "peer-restarted" }])
      expect(transitions(b.peer(report(a), 4))).toEqual(["passive"])
    })
  })

  describe("votes", () => {
    test("a starting node alone becomes active on a vote once its peer was silent for the timeout", () => {
      for (const role of ["primary", "backup"] as const) {
        const s = node(role, 1000)
        expect(s.vote(1000 + TIMEOUT - 1)).toEqual([
          { type: "vote:rejected", reason: "peer-alive" },
        ])
        expect(s.state).toBe(role)
        expect(s.vote(1000 + TIMEOUT)).toEqual([
          { type: "peer:lost" },
          { type: "active", epoch: 1, reason: "alone" },
        ])
      }
    })

    test("silence alone never makes a node active", () => {
      const s = node("primary")
      const b = node("backup")
      b.peer({ role: "primary", state: "active", epoch: 1 }, 0)
      for (let t = 0; t <= 100 * TIMEOUT; t += 500) {
        s.tick(t)
        b.tick(t)
      }
      expect(s.state).toBe("primary")
      expect(b.state).toBe("passive")
    })

    test("a passive fails over on a vote only when the active has been silent for the timeout", () => {
      const p = node("backup")
      p.peer({ role: "primary", state: "active", epoch: 3 }, 500)
      expect(p.vote(500 + TIMEOUT - 1)).toEqual([{ type: "vote:rejected", reason: "peer-alive" }])
      expect(p.state).toBe("passive")
      p.heard(1000) // a record of the stream counts as a heartbeat
      expect(p.vote(500 + TIMEOUT)).toEqual([{ type: "vote:rejected", reason: "peer-alive" }])
      expect(p.vote(1000 + TIMEOUT)).toEqual([
        { type: "peer:lost" },
        { type: "active", epoch: 4, reason: "failover" },
      ])
      expect(p.active).toBe(true)
    })

    test("a vote held for voteHold is acted on at the tick that finds the active silent, not later", () => {
      const HOLD = 1000
      const p = new PairState({ role: "backup", timeout: TIMEOUT, now: 0, voteHold: HOLD })
      p.peer({ role: "primary", state: "active", epoch: 3 }, 500)
      expect(p.silentAt).toBe(500 + TIMEOUT)
      // A vote 400 ms before the active falls silent: rejected, but held.
      expect(p.vote(100 + TIMEOUT)).toEqual([{ type: "vote:rejected", reason: "peer-alive" }])
      expect(p.tick(499 + TIMEOUT)).toEqual([])
      expect(p.tick(500 + TIMEOUT)).toEqual([
        { type: "peer:lost" },
        { type: "active", epoch: 4, reason: "failover" },
      ])

      // Held too long: the silence came more than voteHold after the vote.
      const q = new PairState({ role: "backup", timeout: TIMEOUT, now: 0, voteHold: HOLD })
      q.peer({ role: "primary", state: "active", epoch: 3 }, 2000)
      q.vote(2000)
      expect(transitions(q.tick(2000 + TIMEOUT))).toEqual([])
      expect(q.state).toBe("passive")

      // The active spoke after the vote: the vote is void.
      const r = new PairState({ role: "backup", timeout: TIMEOUT, now: 0, voteHold: HOLD })
      r.peer({ role: "primary", state: "active", epoch: 3 }, 500)
      r.vote(100 + TIMEOUT)
      r.heard(200 + TIMEOUT)
      expect(transitions(r.tick(200 + 2 * TIMEOUT))).toEqual([])
      expect(r.state).toBe("passive")

      // Without a hold (the default) a rejected vote is forgotten.
      const d = node("backup")
      d.peer({ role: "primary", state: "active", epoch: 3 }, 500)
      d.vote(100 + TIMEOUT)
      expect(transitions(d.tick(500 + TIMEOUT))).toEqual([])
      expect(() => new PairState({ role: "backup", timeout: 1, now: 0, voteHold: -1 })).toThrow(
        RangeError,
      )
    })

    test("an active node ignores votes", () => {
      const a = node("primary")
      a.peer({ role: "backup", state: "backup", epoch: 0 }, 1)
      expect(a.vote(10 * TIMEOUT)).toEqual([
        { type: "peer:lost" },
        { type: "vote:rejected", reason: "active" },
      ])
      expect(a.state).toBe("active")
    })
  })

  describe("peer liveness", () => {
    test("peer:lost once after the timeout, peer:alive once when heard again", () => {
      const s = node("primary", 0)
      expect(s.tick(TIMEOUT - 1)).toEqual([])
      expect(s.peerStatus).toBe("unknown")
      expect(s.tick(TIMEOUT)).toEqual([{ type: "peer:lost" }])
      expect(s.tick(TIMEOUT + 1)).toEqual([])
      expect(s.peerStatus).toBe("lost")
      expect(s.heard(TIMEOUT + 2)).toEqual([{ type: "peer:alive" }])
      expect(s.heard(TIMEOUT + 3)).toEqual([])
      expect(s.peerStatus).toBe("alive")
      expect(s.peerSilent(2 * TIMEOUT + 2)).toBe(false)
      expect(s.peerSilent(2 * TIMEOUT + 3)).toBe(true)
    })

    test("a message that arrives late does not move the last heard time back", () => {
      const s = node("primary", 0)
      s.heard(5000)
      s.heard(4000)
      expect(s.peerSilent(5000 + TIMEOUT - 1)).toBe(false)
    })
  })

  describe("conflicts", () => {
    test("two actives: the lower epoch steps down, the higher stays", () => {
      const a = node("primary", 0, 3)
      const b = node("backup", 0, 4)
      a.peer({ role: "backup", state: "backup", epoch: 4 }, 0) // a active, epoch 5
      b.vote(TIMEOUT) // b active alone, epoch 5
      expect([a.state, b.state, a.epoch, b.epoch]).toEqual(["active", "active", 5, 5])
      // Equal epochs: the backup steps down.
      expect(transitions(a.peer(report(b), TIMEOUT + 1))).toEqual([])
      expect(b.peer(report(a), TIMEOUT + 1)).toEqual([
        { type: "peer:alive" },
        { type: "passive", epoch: 5, reason: "dual-active" },
      ])
    })

    test("two actives after a failover: the one of the older epoch steps down, whichever its role", () => {
      const a = node("primary", 0, 7) // the old active, frozen, then back
      a.peer({ role: "backup", state: "backup", epoch: 0 }, 0)
      expect(a.epoch).toBe(8)
      const b = node("backup", 0, 8)
      b.peer({ role: "primary", state: "active", epoch: 8 }, 0)
      expect(b.vote(10 * TIMEOUT)).toContainEqual({ type: "active", epoch: 9, reason: "failover" })
      expect(b.peer(report(a), 10 * TIMEOUT + 1).filter((o) => o.type !== "peer:alive")).toEqual([])
      expect(a.peer(report(b), 10 * TIMEOUT + 1)).toEqual([
        { type: "passive", epoch: 9, reason: "dual-active" },
      ])
      expect([a.state, b.state]).toEqual(["passive", "active"])
    })

    test("two passives: the higher rank becomes active", () => {
      const a = node("primary", 0, 2)
      const b = node("backup", 0, 2)
      a.peer({ role: "backup", state: "active", epoch: 2 }, 0)
      b.peer({ role: "primary", state: "active", epoch: 2 }, 0)
      expect([a.state, b.state]).toEqual(["passive", "passive"])
      expect(transitions(b.peer(report(a), 1))).toEqual([])
      expect(a.peer(report(b), 1)).toEqual([{ type: "active", epoch: 3, reason: "dual-passive" }])
      expect(transitions(b.peer(report(a), 2))).toEqual([])
      expect(b.state).toBe("passive")
    })

    test("the same role on both nodes: a conflict, and no report moves either", () => {
      for (const state of ["primary", "active", "passive"] as const) {
        const a = node("primary")
        const out = a.peer({ role: "primary", state, epoch: 9 }, 1)
        expect(out).toEqual([{ type: "peer:alive" }, { type: "conflict", reason: "same-role" }])
        expect(a.state).toBe("primary")
      }
      // It still counts as heard: no vote while it talks.
      const a = node("primary")
      a.peer({ role: "primary", state: "primary", epoch: 0 }, TIMEOUT)
      expect(transitions(a.vote(TIMEOUT + 1))).toEqual([])
    })
  })

  test("every activation takes an epoch above every one heard", () => {
    const a = node("primary", 0, 0)
    a.peer({ role: "backup", state: "backup", epoch: 41 }, 0)
    expect(a.epoch).toBe(42)
    const p = node("backup", 0, 50)
    p.peer({ role: "primary", state: "active", epoch: 10 }, 0)
    expect(p.epoch).toBe(50)
    expect(p.vote(TIMEOUT)).toContainEqual({ type: "active", epoch: 51, reason: "failover" })
  })
})

/**
 * A simulation of a pair and its workers. Workers reach every running node (only the pair link
 * may be cut), and follow the vote rule of docs/pair.md section 5: they vote once no node has
 * been active for a whole liveness window, for one node (a passive, else a starting primary,
 * else a starting backup).
 */
class Cluster {
  readonly window = TIMEOUT
  now = 0
  link = true
  nodes: (PairState | undefined)[] = [node("primary"), node("backup")]
  epochs = [0, 0]
  lastActive = 0
  maxActives = 0

  step(op: Op): void {
    switch (op.kind) {
      case "wait":
        this.now += op.ms
        break
      case "cut":
        this.link = false
        break
      case "heal":
        this.link = true
        break
      case "kill":
        this.#remember()
        this.nodes[op.node] = undefined
        break
      case "start":
        this.nodes[op.node] ??= node(
          op.node === 0 ? "primary" : "backup",
          this.now,
          this.epochs[op.node] ?? 0,
        )
        break
    }
    this.#exchange()
  }

  #remember(): void {
    this.nodes.forEach((n, i) => {
      if (n) this.epochs[i] = n.epoch
    })
  }

  #exchange(): void {
    const [a, b] = this.nodes
    if (this.link && a && b) {
      a.peer(report(b), this.now)
      b.peer(report(a), this.now)
      a.peer(report(b), this.now)
    }
    for (const n of this.nodes) n?.tick(this.now)
    this.#observe()
    if (this.now - this.lastActive >= this.window) {
      const running = this.nodes.filter((n) => n !== undefined)
      const target =
        running.find((n) => n.state === "passive") ??
        running.find((n) => n.state === "primary") ??
        running.find((n) => n.state === "backup")
      target?.vote(this.now)
      this.#observe()
    }
    this.#remember()
  }

  #observe(): void {
    const actives = this.nodes.filter((n) => n?.active).length
    if (actives > 0) this.lastActive = this.now
    this.maxActives = Math.max(this.maxActives, actives)
  }

  get actives(): number {
    return this.nodes.filter((n) => n?.active).length
  }
}

type Op =
  | { kind: "wait"; ms: number }
  | { kind: "cut" }
  | { kind: "heal" }
  | { kind: "kill"; node: 0 | 1 }
  | { kind: "start"; node: 0 | 1 }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.integer({ min: 1, max: TIMEOUT }).map((ms) => ({ kind: "wait" as const, ms })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "cut" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "heal" as const }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<0 | 1>(0, 1).map((n) => ({ kind: "kill" as const, node: n })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<0 | 1>(0, 1).map((n) => ({ kind: "start" as const, node: n })),
  },
)

describe("PairState in a simulated pair", () => {
  test("a cut of the pair link only: one active before, during and after", () => {
    const c = new Cluster()
    c.step({ kind: "wait", ms: 100 })
    expect(c.nodes.map((n) => n?.state)).toEqual(["active", "passive"])
    c.step({ kind: "cut" })
    for (let i = 0; i < 50; i++) c.step({ kind: "wait", ms: 700 })
    expect(c.nodes.map((n) => n?.state)).toEqual(["active", "passive"])
    expect(c.nodes.map((n) => n?.peerStatus)).toEqual(["lost", "lost"])
    c.step({ kind: "heal" })
    expect(c.nodes.map((n) => n?.state)).toEqual(["active", "passive"])
    expect(c.maxActives).toBe(1)
  })

  test("the active's process dies: the passive takes over once the workers vote", () => {
    const c = new Cluster()
    c.step({ kind: "wait", ms: 100 })
    c.step({ kind: "kill", node: 0 })
    c.step({ kind: "wait", ms: TIMEOUT - 1 })
    expect(c.nodes[1]?.state).toBe("passive")
    c.step({ kind: "wait", ms: 1 })
    expect(c.nodes[1]?.state).toBe("active")
    // The old primary returns and becomes passive: the backup stays active (manual fail-back).
    c.step({ kind: "start", node: 0 })
    expect(c.nodes.map((n) => n?.state)).toEqual(["passive", "active"])
    expect(c.maxActives).toBe(1)
  })

  test("a cold start with only the backup running: it becomes active after the window", () => {
    const c = new Cluster()
    c.nodes[0] = undefined
    c.step({ kind: "wait", ms: TIMEOUT - 1 })
    expect(c.nodes[1]?.state).toBe("backup")
    c.step({ kind: "wait", ms: 1 })
    expect(c.nodes[1]?.state).toBe("active")
  })

  test("the link cut and the active restarted during the cut: still one active", () => {
    const c = new Cluster()
    c.step({ kind: "wait", ms: 100 })
    c.step({ kind: "cut" })
    c.step({ kind: "kill", node: 0 })
    c.step({ kind: "start", node: 0 })
    for (let i = 0; i < 20; i++) c.step({ kind: "wait", ms: 500 })
    expect(c.nodes.map((n) => n?.state)).toEqual(["primary", "active"])
    c.step({ kind: "heal" })
    expect(c.nodes.map((n) => n?.state)).toEqual(["passive", "active"])
    expect(c.maxActives).toBe(1)
  })

  test("property: with workers reaching every running node, never two actives, and an active once both run and talk", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        const c = new Cluster()
        for (const op of ops) c.step(op)
        expect(c.maxActives).toBeLessThanOrEqual(1)
        // Liveness: start both, heal, wait long enough: exactly one active.
        c.step({ kind: "start", node: 0 })
        c.step({ kind: "start", node: 1 })
        c.step({ kind: "heal" })
        for (let i = 0; i < 4; i++) c.step({ kind: "wait", ms: TIMEOUT })
        expect(c.actives).toBe(1)
        expect(c.maxActives).toBeLessThanOrEqual(1)
      }),
      { numRuns: 300 },
    )
  })

  test("a partition of the active from everyone gives two actives; the heal leaves one", () => {
    const a = node("primary")
    const b = node("backup")
    a.peer(report(b), 0)
    b.peer(report(a), 0)
    // a is cut from b and from the workers; the workers vote for b.
    expect(transitions(b.vote(TIMEOUT))).toEqual(["active"])
    expect([a.active, b.active]).toEqual([true, true])
    a.peer(report(b), TIMEOUT + 1)
    b.peer(report(a), TIMEOUT + 1)
    expect([a.state, b.state]).toEqual(["passive", "active"])
  })
})
