/**
 * The script of `pirate demo --pair`: a sender pair (bin/demo/pair-sender.ts, a primary and a
 * backup, each with its own journal) and workers connected to both (worker.ts). The active sender
 * produces; mid-stream it is SIGKILLed, the passive takes over (the workers vote for it) and its
 * producer goes on after the last confirmed send(); the killed sender is restarted, rejoins as
 * passive and catches up. The display and the supervisor are `pirate demo`'s; the summary
 * (pair-summary.ts) checks that every send() that resolved, on either sender, was processed.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { debug, errorMessage } from "../cli.js"
import type { SenderStats } from "../../patterns/index.js"
import type { Proc } from "./children.js"
import {
  Display,
  fmt,
  seconds,
  type DisplayMode,
  type PairNodeState,
  type Snapshot,
} from "./display.js"
import type {
  CloseMessage,
  PairSenderConfig,
  PairSenderMessage,
  ProduceMessage,
  WorkerConfig,
  WorkerMessage,
} from "./ipc.js"
import { renderPairSummary, type PairFaults, type PairRole } from "./pair-summary.js"
import { count, type Copy } from "./summary.js"
import { Supervisor } from "./supervisor.js"

/**
 * Settings of the run. The pair's timeout is the default, heartbeatInterval × liveness (750 ms),
 * and so is the workers' liveness window before they vote.
 */
const HEARTBEAT_INTERVAL = 250
const LIVENESS = 3
const RECONNECT = 100
const CONCURRENCY = 4
const MIN_DELAY = 4
const MAX_DELAY = 12
/** Fraction of the messages processed at which the active sender is killed. */
const KILL_ACTIVE_AT = 0.5
const STATS_INTERVAL = 100
/** The demo fails when nothing happens for this long. */
const STALL_TIMEOUT = 20_000
/** How long a child may take to close cleanly at the end before it is killed. */
const CLOSE_TIMEOUT = 5_000

class Interrupted extends Error {
  override name = "Interrupted"
}

export interface PairDemoOptions {
  messages: number
  workers: number
  mode: DisplayMode
}

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

/**
 * `n` distinct TCP ports on 127.0.0.1 that the system had free a moment ago. The pair's addresses
 * must be known before either sender binds (each names the other's), and the killed one binds
 * them again when it restarts: `tcp://127.0.0.1:*` cannot do that.
 */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer()
          server.once("error", reject)
          server.listen(0, "127.0.0.1", () => resolve(server))
        }),
    ),
  )
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  return ports
}

const other = (role: PairRole): PairRole => (role === "primary" ? "backup" : "primary")

export class PairDemo {
  readonly #o: PairDemoOptions
  readonly #display: Display
  readonly #t0 = performance.now()
  #dir: string | undefined
  #lastProgress = performance.now()

  readonly #children: Supervisor
  readonly #workers: Proc[] = []
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

  /** Highest n such that the `send()` of every message up to n has resolved (either sender). */
  #confirmed = 0
  readonly #processed = new Map<number, Copy[]>()
  #ackedBefore = 0
  #redeliveredBefore = 0
  #recovered = 0
  readonly #faults: PairFaults = {}
  #expecting: "start" | "none" = "start"
  readonly #closedSenders: Proc[] = []

  constructor(options: PairDemoOptions) {
    this.#o = options
    this.#display = new Display(options.mode, () => this.#snapshot())
    this.#children = new Supervisor({
      passthrough: (line) => this.#display.passthrough(line),
      // A sender closed at the end keeps its last state on the live lines.
      exited: (proc) => {
        for (const node of this.#nodes.values())
          if (node.proc === proc && (proc.killed || !proc.expected)) node.state = "down"
      },
    })
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals): void =>
      this.#fail(new Interrupted(`interrupted by ${signal}`))
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    const watchdog = setInterval(() => {
      if (performance.now() - this.#lastProgress > STALL_TIMEOUT) {
        this.#fail(new Error(`no progress for ${STALL_TIMEOUT / 1000} s (${this.#state()})`))
      }
    }, 1000)
    let code: number
    try {
      await this.#script()
      this.#display.stop(
        `done: ${fmt(this.#o.messages)} sent, processed and acked; both journals are empty`,
      )
      code = this.#summary()
    } catch (err) {
      this.#display.stop()
      if (err instanceof Interrupted) {
        process.stdout.write(`\npirate demo: ${err.message}; ending the child processes\n`)
        code = 130
      } else {
        process.stderr.write(`pirate demo: ${errorMessage(err)}\n`)
        process.stderr.write(`pirate demo: state: ${this.#state()}\n`)
        code = 1
      }
    } finally {
      clearInterval(watchdog)
      await this.#cleanup()
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
    }
    return code
  }

  /** The demo, step by step. */
  async #script(): Promise<void> {
    const { messages, workers } = this.#o
    const dir = await mkdtemp(join(tmpdir(), "pirate-demo-pair-"))
    this.#dir = dir
    const [pw, pp, bw, bp] = (await freePorts(4)) as [number, number, number, number]
    const at = (port: number): string => `tcp://127.0.0.1:${port}`
    const window = Math.min(1000, Math.max(50, Math.round(messages / 20)))
    const common = {
      to: messages,
      window,
      heartbeatInterval: HEARTBEAT_INTERVAL,
      statsInterval: STATS_INTERVAL,
    }
    const configs: Record<PairRole, PairSenderConfig> = {
      primary: {
        ...common,
        role: "primary",
        journal: join(dir, "primary"),
        bind: at(pw),
        pairBind: at(pp),
        peer: at(bp),
      },
      backup: {
        ...common,
        role: "backup",
        journal: join(dir, "backup"),
        bind: at(bw),
        pairBind: at(bp),
        peer: at(pp),
      },
    }
    for (const role of ["primary", "backup"] as const)
      this.#nodes.set(role, { role, config: configs[role], state: "starting", startedAt: 0 })

    if (this.#o.mode !== "quiet") {
      process.stdout.write(
        [
          `pirate demo --pair: ${count(messages, "message")}, a sender pair + ${count(workers, "worker")}, each in its own process`,
          `  primary  a Sender with durability "replicated", workers at ${at(pw)}, pair link ${at(pp)}`,
          `  backup   the same at ${at(bw)}, pair link ${at(bp)}; passive while the primary is active`,
          `  journals ${join(dir, "primary")}, ${join(dir, "backup")}`,
          `  producer in the active sender, messages 1…${fmt(messages)}; a new active goes on after the last confirmed send()`,
          `  workers  connected to both senders, concurrency ${CONCURRENCY}, ${MIN_DELAY}-${MAX_DELAY} ms per message, heartbeat ${HEARTBEAT_INTERVAL} ms`,
          `  faults   SIGKILL the active sender at ${KILL_ACTIVE_AT * 100}%, then restart it`,
          "",
          "",
        ].join("\n"),
      )
    }
    this.#display.start()

    // Both senders and the workers start at once: the addresses are known beforehand.
    this.#startNode("primary")
    this.#startNode("backup")
    for (let i = 1; i <= workers; i++) this.#startWorker(`worker ${i}`, [at(pw), at(bw)])
    await this.#until(() => this.#activeNode() !== undefined && this.#passiveNode() !== undefined)
    const first = this.#activeNode() as Node
    this.#active = first.role
    await this.#until(() => this.#expecting === "none")
    this.#produce(first, 1)
    this.#event(`▶ the ${first.role}'s producer starts sending messages 1…${fmt(messages)}`)

    // The fault: the active sender (and its producer) dies mid-stream.
    await this.#until(() => this.#processed.size >= Math.ceil(messages * KILL_ACTIVE_AT))
    const victim = first
    const proc = victim.proc as Proc
    const pid = proc.child.pid ?? 0
    this.#workersNoticed = false
    this.#votes = 0
    const kill = { name: victim.role, pid, at: this.#elapsed(), confirmed: 0 }
    this.#faults.kill = kill
    const killed = this.#kill(proc)
    this.#killedAt = performance.now()
    this.#event(`✗ SIGKILL the active sender, the ${victim.role} (pid ${pid}), mid-stream`)
    await killed
    // Its last reports (sends confirmed, stats) may have been in the pipe: read only now.
    kill.confirmed = this.#confirmed
    this.#ackedBefore += victim.stats?.acked ?? 0
    this.#redeliveredBefore += victim.stats?.redelivered ?? 0
    delete victim.stats

    // The passive takes over once the workers vote for it (see #onNode), then produces.
    const heir = this.#nodes.get(other(victim.role)) as Node
    await this.#until(() => heir.state === "active")
    this.#active = heir.role
    this.#produce(heir, this.#confirmed + 1)
    this.#event(
      this.#confirmed < messages
        ? `↻ the ${heir.role}'s producer goes on after #${fmt(this.#confirmed)}, the last send() the ${victim.role} confirmed; its sends wait until they are replicated again`
        : `↻ the ${victim.role} had confirmed every send() already`,
    )

    // Restarted at once, as a supervisor would: it finds its peer active and rejoins as passive.
    this.#faults.rejoin = { name: victim.role, pid: 0, at: this.#elapsed() }
    this.#startNode(victim.role)
    this.#event(`↻ restarting the ${victim.role} on its own journal and addresses`)

    await this.#until(() => this.#drained && this.#caughtUp)
    this.#event(
      `✓ ${messages === 1 ? "the message" : `all ${fmt(messages)} messages`} sent and acked; closing the workers and the senders`,
    )
    await this.#shutdown()
  }

  #startNode(role: PairRole): void {
    const node = this.#nodes.get(role) as Node
    node.state = "starting"
    node.startedAt = this.#elapsed()
    delete node.stats
    const proc = this.#children.spawn(role, "pair-sender", node.config)
    node.proc = proc
    proc.child.on("message", (m) => this.#onNode(node, proc, m as PairSenderMessage))
  }

  #startWorker(name: string, endpoints: string[]): void {
    const config: WorkerConfig = {
      endpoint: endpoints,
      concurrency: CONCURRENCY,
      minDelay: MIN_DELAY,
      maxDelay: MAX_DELAY,
      heartbeatInterval: HEARTBEAT_INTERVAL,
      liveness: LIVENESS,
      reconnect: RECONNECT,
    }
    const proc = this.#children.spawn(name, "worker", config)
    this.#sessions.set(proc, new Set())
    proc.child.on("message", (m) => this.#onWorker(proc, m as WorkerMessage))
    this.#workers.push(proc)
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
          rejoin.up = this.#elapsed() - rejoin.at
          this.#event(
            `↻ the ${node.role} is up again (pid ${rejoin.pid}) and finds its peer active`,
          )
        }
        break
      case "state":
        this.#onState(node, m)
        break
      case "sent":
        this.#confirmed = Math.max(this.#confirmed, m.upTo)
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
          this.#faults.rejoin.caughtUp = this.#elapsed() - this.#faults.rejoin.at
          this.#event(
            `✓ the ${this.#faults.rejoin.name} caught up: sends are replicated on both senders again`,
          )
        }
        break
      case "worker:lost":
        this.#event(
          `↻ the ${node.role} lost a worker (${m.reason}) and requeued its ${count(m.requeued, "unacked message")}`,
        )
        break
      case "drained":
        node.stats = m.stats
        this.#drained = true
        break
      case "error":
        this.#fail(new Error(`${node.role}: ${m.message}`))
        break
    }
    this.#changed()
  }

  #onState(node: Node, m: Extract<PairSenderMessage, { type: "state" }>): void {
    node.state = m.state
    const rejoin = this.#faults.rejoin
    if (m.state === "active" && this.#faults.kill && !this.#faults.takeover) {
      const after = (performance.now() - this.#killedAt) / 1000
      this.#recovered += m.pending
      this.#faults.takeover = {
        name: node.role,
        at: this.#elapsed(),
        after,
        reason: m.reason,
        pending: m.pending,
        votes: this.#votes,
      }
      this.#event(
        `✓ the ${node.role} took over as active ${seconds(after)} after the kill (reason "${m.reason}", epoch ${m.epoch})`,
      )
      this.#event(
        `↻ its replica of the journal held ${count(m.pending, "unacked message")}: it redelivers them`,
      )
    } else if (m.state === "passive" && rejoin && node.role === rejoin.name) {
      rejoin.passive = this.#elapsed() - rejoin.at
      this.#event(
        `✓ the ${node.role} rejoined as passive (reason "${m.reason}") and catches up from the ${other(node.role)}`,
      )
    } else if (this.#expecting === "start") {
      const active = this.#activeNode()
      const passive = this.#passiveNode()
      if (active && passive)
        this.#event(
          `✓ the ${active.role} is active, the ${passive.role} passive (epoch ${m.epoch})`,
        )
    } else {
      this.#event(`~ the ${node.role} became ${m.state} (reason "${m.reason}")`)
    }
    this.#checkStarted()
  }

  #onWorker(proc: Proc, m: WorkerMessage): void {
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
          this.#event(
            `~ the workers lost the ${this.#faults.kill.name} (${m.reason}); with no active sender for a liveness window they vote for the ${other(this.#faults.kill.name)}`,
          )
        }
        break
      case "vote":
        this.#votes++
        if (this.#faults.kill && !this.#faults.takeover && this.#votes === 1)
          this.#event(`~ ${proc.name} votes for the ${other(this.#faults.kill.name)}`)
        break
      case "done":
        for (const [n, id, attempt] of m.items) {
          const copies = this.#processed.get(n)
          if (copies) copies.push({ id, attempt })
          else this.#processed.set(n, [{ id, attempt }])
        }
        proc.processed += m.items.length
        this.#lastProgress = performance.now()
        break
      case "closed":
        proc.closed = true
        break
      case "error":
        this.#fail(new Error(`${proc.name}: ${m.message}`))
        break
    }
    this.#changed()
  }

  /** At the start: once the pair has decided and every worker has a session with both. */
  #checkStarted(): void {
    if (this.#expecting !== "start" || !this.#activeNode() || !this.#passiveNode()) return
    const all = this.#workers.every((w) => (this.#sessions.get(w)?.size ?? 0) >= 2)
    if (!all) return
    this.#expecting = "none"
    this.#event(`✓ ${count(this.#workers.length, "worker")} connected to both senders`)
  }

  #activeNode(): Node | undefined {
    return [...this.#nodes.values()].find((n) => n.state === "active")
  }

  #passiveNode(): Node | undefined {
    return [...this.#nodes.values()].find((n) => n.state === "passive")
  }

  /** A real crash: no close(), no flush. Resolves once the process is gone. */
  async #kill(proc: Proc): Promise<void> {
    await this.#children.kill(proc)
    this.#lastProgress = performance.now()
  }

  /** Closes the workers (they finish and report what runs), then the passive, then the active. */
  async #shutdown(): Promise<void> {
    const close: CloseMessage = { type: "close" }
    const workers = this.#workers.filter((w) => w.running)
    for (const w of workers) {
      w.expected = true
      w.child.send(close)
    }
    await this.#until(
      () => workers.every((w) => w.closed || !w.running),
      CLOSE_TIMEOUT,
      "the workers to close",
    )
    const nodes = [this.#passiveNode(), this.#activeNode()]
    for (const node of nodes) {
      const proc = node?.proc
      if (!node || !proc?.running) continue
      proc.expected = true
      proc.child.send(close)
      await this.#until(() => !proc.running, CLOSE_TIMEOUT, `the ${node.role} to close`)
      this.#closedSenders.push(proc)
    }
    await Promise.all([...workers, ...this.#closedSenders].map((p) => p.ended))
  }

  /** Ends every child still running (SIGKILL) and removes the temporary folder. */
  async #cleanup(): Promise<void> {
    await this.#children.killAll()
    if (this.#dir !== undefined) {
      try {
        await rm(this.#dir, { recursive: true, force: true, maxRetries: 3 })
      } catch (err) {
        process.stderr.write(`pirate demo: could not remove ${this.#dir}: ${errorMessage(err)}\n`)
      }
    }
  }

  #until(done: () => boolean, timeout?: number, what?: string): Promise<void> {
    return this.#children.until(done, timeout, what)
  }

  #changed(): void {
    this.#children.changed()
  }

  #fail(err: Error): void {
    this.#children.fail(err)
  }

  // -------------------------------------------------------------------------------------------
  // output

  #event(text: string): void {
    this.#lastProgress = performance.now()
    debug("demo: %s", text)
    this.#display.event(text)
  }

  #elapsed(): number {
    return (performance.now() - this.#t0) / 1000
  }

  #snapshot(): Snapshot {
    const alive = this.#workers.filter((w) => w.running)
    const active = this.#activeNode()
    const endpoint = active?.config.bind
    const state = (role: PairRole): PairNodeState => this.#nodes.get(role)?.state ?? "starting"
    return {
      sent: this.#confirmed,
      processed: this.#processed.size,
      total: this.#o.messages,
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
      elapsed: this.#elapsed(),
    }
  }

  #state(): string {
    const s = this.#snapshot()
    return `sent ${s.sent}, processed ${s.processed}/${s.total}, acked ${s.acked}, in flight ${s.inFlight}, workers ${s.workersConnected}/${s.workersAlive}, primary ${s.pair?.primary}, backup ${s.pair?.backup}`
  }

  /** Prints the summary; returns the exit status. */
  #summary(): number {
    const { text, ok } = renderPairSummary({
      total: this.#o.messages,
      elapsed: this.#elapsed(),
      confirmed: this.#confirmed,
      processed: this.#processed,
      faults: this.#faults,
      workers: this.#workers,
      closedSenders: this.#closedSenders,
    })
    process.stdout.write(text)
    return ok ? 0 : 1
  }
}
