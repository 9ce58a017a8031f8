/**
 * The script of `pirate demo --pair`: a sender pair (bin/demo/pair-sender.ts, a primary and a
 * backup, each with its own journal) and workers connected to both (worker.ts). The active sender
 * produces; mid-stream it is SIGKILLed, the passive takes over (the workers vote for it) and its
 * producer goes on after the last confirmed send(); the killed sender is restarted, rejoins as
 * passive and catches up. The display and the supervisor are `pirate demo`'s; the summary
 * (pair-summary.ts) checks that every send() that resolved, on either sender, was processed.
 */
import type { SenderStats } from "../../patterns/index.js"
import type { Proc } from "./children.js"
import { fmt, seconds, type PairNodeState, type Snapshot } from "./display.js"
import type { PairSenderConfig, PairSenderMessage, ProduceMessage } from "./ipc.js"
import { renderPairSummary, type PairFaults, type PairRole } from "./pair-summary.js"
import { pairAddresses } from "./ports.js"
import {
  DemoScript,
  WORKER_SETTINGS,
  type DemoOptions,
  type WorkerStateMessage,
} from "./run-common.js"
import { count } from "./summary.js"

/**
 * Fraction of the messages processed at which the active sender is killed. The other settings
 * are `pirate demo`'s (run-common.ts); the pair's timeout is the default, heartbeatInterval ×
 * liveness (750 ms), and so is the workers' liveness window before they vote.
 */
const KILL_ACTIVE_AT = 0.5

export type PairDemoOptions = DemoOptions

/** One sender of the pair, across its restarts. */
interface Node {
  role: PairRole
  config: PairSenderConfig
  proc?: Proc
  state: PairNodeState
  /** Its last stats report (of the running process). */
  stats?: SenderStats
  /** Seconds since the start at which this process started. */
  startedAt: number
}

const other = (role: PairRole): PairRole => (role === "primary" ? "backup" : "primary")

export class PairDemo extends DemoScript {
  /** The sender endpoints each worker has a live session with. */
  readonly #sessions = new Map<Proc, Set<string>>()
  readonly #nodes = new Map<PairRole, Node>()
  /** The sender that is active (as far as the parent has heard), or the one that was killed. */
  #active: PairRole = "primary"
  #drained = false
  /** After the restart of the killed node: the active has a caught-up passive again. */
  #caughtUp = false
  #killedAt = 0
  #votes = 0
  #workersNoticed = false

  #ackedBefore = 0
  #redeliveredBefore = 0
  #recovered = 0
  readonly #faults: PairFaults = {}
  #expecting: "start" | "none" = "start"
  readonly #closedSenders: Proc[] = []

  protected readonly emptied = "both journals are empty"

  /** A sender closed at the end keeps its last state on the live lines. */
  protected exited(proc: Proc): void {
    for (const node of this.#nodes.values())
      if (node.proc === proc && (proc.killed || !proc.expected)) node.state = "down"
  }

  /** The demo, step by step. */
  protected async script(): Promise<void> {
    const { messages, workers } = this.o
    const addresses = await pairAddresses(await this.makeDir("pirate-demo-pair-"))
    const common = this.senderSettings()
    const primary: PairSenderConfig = { ...common, ...addresses.primary }
    const backup: PairSenderConfig = { ...common, ...addresses.backup }
    for (const config of [primary, backup])
      this.#nodes.set(config.role, { role: config.role, config, state: "starting", startedAt: 0 })

    this.start([
      `pirate demo --pair: ${count(messages, "message")}, a sender pair + ${count(workers, "worker")}, each in its own process`,
      `  primary  a Sender with durability "replicated", workers at ${primary.bind}, pair link ${primary.pairBind}`,
      `  backup   the same at ${backup.bind}, pair link ${backup.pairBind}; passive while the primary is active`,
      `  journals ${primary.journal}, ${backup.journal}`,
      `  producer in the active sender, messages 1…${fmt(messages)}; a new active goes on after the last confirmed send()`,
      `  workers  connected to both senders, ${WORKER_SETTINGS}`,
      `  faults   SIGKILL the active sender at ${KILL_ACTIVE_AT * 100}%, then restart it`,
    ])

    // Both senders and the workers start at once: the addresses are known beforehand.
    this.#startNode("primary")
    this.#startNode("backup")
    for (let i = 1; i <= workers; i++) this.#startWorker(`worker ${i}`, [primary.bind, backup.bind])
    await this.until(() => this.#activeNode() !== undefined && this.#passiveNode() !== undefined)
    const first = this.#activeNode() as Node
    this.#active = first.role
    await this.until(() => this.#expecting === "none")
    this.#produce(first, 1)
    this.event(`▶ the ${first.role}'s producer starts sending messages 1…${fmt(messages)}`)

    // The fault: the active sender (and its producer) dies mid-stream.
    await this.until(() => this.processed.size >= Math.ceil(messages * KILL_ACTIVE_AT))
    const victim = first
    const proc = victim.proc as Proc
    const pid = proc.child.pid ?? 0
    this.#workersNoticed = false
    this.#votes = 0
    const kill = { name: victim.role, pid, at: this.elapsed(), confirmed: 0 }
    this.#faults.kill = kill
    const killed = this.kill(proc)
    this.#killedAt = performance.now()
    this.event(`✗ SIGKILL the active sender, the ${victim.role} (pid ${pid}), mid-stream`)
    await killed
    // Its last reports (sends confirmed, stats) may have been in the pipe: read only now.
    kill.confirmed = this.confirmed
    this.#ackedBefore += victim.stats?.acked ?? 0
    this.#redeliveredBefore += victim.stats?.redelivered ?? 0
    delete victim.stats

    // The passive takes over once the workers vote for it (see #onNode), then produces.
    const heir = this.#nodes.get(other(victim.role)) as Node
    await this.until(() => heir.state === "active")
    this.#active = heir.role
    this.#produce(heir, this.confirmed + 1)
    this.event(
      this.confirmed < messages
        ? `↻ the ${heir.role}'s producer goes on after #${fmt(this.confirmed)}, the last send() the ${victim.role} confirmed; its sends wait until they are replicated again`
        : `↻ the ${victim.role} had confirmed every send() already`,
    )

    // Restarted at once, as a supervisor would: it finds its peer active and rejoins as passive.
    this.#faults.rejoin = { name: victim.role, pid: 0, at: this.elapsed() }
    this.#startNode(victim.role)
    this.event(`↻ restarting the ${victim.role} on its own journal and addresses`)

    await this.until(() => this.#drained && this.#caughtUp)
    this.event(
      `✓ ${messages === 1 ? "the message" : `all ${fmt(messages)} messages`} sent and acked; closing the workers and the senders`,
    )
    await this.#shutdown()
  }

  #startNode(role: PairRole): void {
    const node = this.#nodes.get(role) as Node
    node.state = "starting"
    node.startedAt = this.elapsed()
    delete node.stats
    const proc = this.children.spawn(role, "pair-sender", node.config)
    node.proc = proc
    proc.child.on("message", (m) => this.#onNode(node, proc, m as PairSenderMessage))
  }

  #startWorker(name: string, endpoints: string[]): void {
    const proc = this.startWorker(name, endpoints, (p, m) => this.#onWorker(p, m))
    this.#sessions.set(proc, new Set())
  }

  #produce(node: Node, from: number): void {
    const produce: ProduceMessage = { type: "produce", from }
    node.proc?.child.send(produce)
  }

  #onNode(node: Node, proc: Proc, m: PairSenderMessage): void {
    if (proc !== node.proc) return
    switch (m.type) {
      case "ready":
        if (this.#faults.rejoin && node.role === this.#faults.rejoin.name) {
          const rejoin = this.#faults.rejoin
          rejoin.pid = proc.child.pid ?? 0
          rejoin.up = this.elapsed() - rejoin.at
          this.event(`↻ the ${node.role} is up again (pid ${rejoin.pid}) and finds its peer active`)
        }
        break
      case "state":
        this.#onState(node, m)
        break
      case "sent":
        this.confirmed = Math.max(this.confirmed, m.upTo)
        break
      case "stats":
        node.stats = m.stats
        if (
          !this.#caughtUp &&
          this.#faults.rejoin?.passive !== undefined &&
          node.role === this.#active &&
          m.stats.pair?.replicated === true
        ) {
          this.#caughtUp = true
          this.#faults.rejoin.caughtUp = this.elapsed() - this.#faults.rejoin.at
          this.event(
            `✓ the ${this.#faults.rejoin.name} caught up: sends are replicated on both senders again`,
          )
        }
        break
      case "worker:lost":
        this.event(
          `↻ the ${node.role} lost a worker (${m.reason}) and requeued its ${count(m.requeued, "unacked message")}`,
        )
        break
      case "drained":
        node.stats = m.stats
        this.#drained = true
        break
      case "error":
        this.fail(new Error(`${node.role}: ${m.message}`))
        break
    }
    this.changed()
  }

  #onState(node: Node, m: Extract<PairSenderMessage, { type: "state" }>): void {
    node.state = m.state
    const rejoin = this.#faults.rejoin
    if (m.state === "active" && this.#faults.kill && !this.#faults.takeover) {
      const after = (performance.now() - this.#killedAt) / 1000
      this.#recovered += m.pending
      this.#faults.takeover = {
        name: node.role,
        at: this.elapsed(),
        after,
        reason: m.reason,
        pending: m.pending,
        votes: this.#votes,
      }
      this.event(
        `✓ the ${node.role} took over as active ${seconds(after)} after the kill (reason "${m.reason}", epoch ${m.epoch})`,
      )
      this.event(
        `↻ its replica of the journal held ${count(m.pending, "unacked message")}: it redelivers them`,
      )
    } else if (m.state === "passive" && rejoin && node.role === rejoin.name) {
      rejoin.passive = this.elapsed() - rejoin.at
      this.event(
        `✓ the ${node.role} rejoined as passive (reason "${m.reason}") and catches up from the ${other(node.role)}`,
      )
    } else if (this.#expecting === "start") {
      const active = this.#activeNode()
      const passive = this.#passiveNode()
      if (active && passive)
        this.event(`✓ the ${active.role} is active, the ${passive.role} passive (epoch ${m.epoch})`)
    } else {
      this.event(`~ the ${node.role} became ${m.state} (reason "${m.reason}")`)
    }
    this.#checkStarted()
  }

  #onWorker(proc: Proc, m: WorkerStateMessage): void {
    const sessions = this.#sessions.get(proc) as Set<string>
    switch (m.type) {
      case "connected":
        sessions.add(m.endpoint)
        this.#checkStarted()
        break
      case "lost":
        sessions.delete(m.endpoint)
        if (this.#faults.kill && !this.#faults.takeover && !this.#workersNoticed) {
          this.#workersNoticed = true
          this.event(
            `~ the workers lost the ${this.#faults.kill.name} (${m.reason}); with no active sender for a liveness window they vote for the ${other(this.#faults.kill.name)}`,
          )
        }
        break
      case "vote":
        this.#votes++
        if (this.#faults.kill && !this.#faults.takeover && this.#votes === 1)
          this.event(`~ ${proc.name} votes for the ${other(this.#faults.kill.name)}`)
        break
    }
  }

  /** At the start: once the pair has decided and every worker has a session with both. */
  #checkStarted(): void {
    if (this.#expecting !== "start" || !this.#activeNode() || !this.#passiveNode()) return
    const all = this.workers.every((w) => (this.#sessions.get(w)?.size ?? 0) >= 2)
    if (!all) return
    this.#expecting = "none"
    this.event(`✓ ${count(this.workers.length, "worker")} connected to both senders`)
  }

  #activeNode(): Node | undefined {
    return [...this.#nodes.values()].find((n) => n.state === "active")
  }

  #passiveNode(): Node | undefined {
    return [...this.#nodes.values()].find((n) => n.state === "passive")
  }

  /** Closes the workers (they finish and report what runs), then the passive, then the active. */
  async #shutdown(): Promise<void> {
    const workers = await this.closeWorkers()
    const nodes = [this.#passiveNode(), this.#activeNode()]
    for (const node of nodes) {
      const proc = node?.proc
      if (!node || !proc?.running) continue
      await this.closeSender(proc, `the ${node.role} to close`)
      this.#closedSenders.push(proc)
    }
    await Promise.all([...workers, ...this.#closedSenders].map((p) => p.ended))
  }

  // -------------------------------------------------------------------------------------------
  // output

  protected snapshot(): Snapshot {
    const alive = this.workers.filter((w) => w.running)
    const active = this.#activeNode()
    const endpoint = active?.config.bind
    const state = (role: PairRole): PairNodeState => this.#nodes.get(role)?.state ?? "starting"
    return {
      sent: this.confirmed,
      processed: this.processed.size,
      total: this.o.messages,
      acked: this.#ackedBefore + (this.#nodes.get(this.#active)?.stats?.acked ?? 0),
      inFlight: active?.stats?.inFlight ?? 0,
      redelivered:
        this.#redeliveredBefore +
        (this.#nodes.get(this.#active)?.stats?.redelivered ?? 0) +
        this.#recovered,
      // Connected: with a live session with the active sender.
      workersConnected: alive.filter((w) => this.#sessions.get(w)?.has(endpoint ?? "") === true)
        .length,
      workersAlive: alive.length,
      sender: active ? "up" : "down",
      pair: {
        primary: state("primary"),
        backup: state("backup"),
        replicated: active?.stats?.pair?.replicated ?? false,
      },
      elapsed: this.elapsed(),
    }
  }

  protected senderState(s: Snapshot): string {
    return `primary ${s.pair?.primary}, backup ${s.pair?.backup}`
  }

  protected render(): { text: string; ok: boolean } {
    return renderPairSummary({
      ...this.observed(),
      faults: this.#faults,
      closedSenders: this.#closedSenders,
    })
  }
}
