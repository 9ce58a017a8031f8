/**
 * The script of `pirate demo` (bin/commands/demo.ts parses its options): start a sender and
 * workers (bin/demo/supervisor.ts), kill a worker and then the sender mid-stream, restart them,
 * follow what the children report, show the progress (display.ts) and print the summary
 * (summary.ts). What it shares with `pirate demo --pair` is in run-common.ts.
 */
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { SenderStats } from "../../patterns/index.js"
import type { Proc } from "./children.js"
import { fmt, type Snapshot } from "./display.js"
import type { ConnectMessage, SenderConfig, SenderMessage } from "./ipc.js"
import { DemoScript, WORKER_SETTINGS, type WorkerStateMessage } from "./run-common.js"
import { count, renderSummary, type Faults } from "./summary.js"

export type { DemoOptions } from "./run-common.js"

/** Fractions of the messages processed at which the faults are injected. */
const KILL_WORKER_AT = 0.25
const KILL_SENDER_AT = 0.6

export class Demo extends DemoScript {
  #sender: Proc | undefined
  #senderUp = false
  /** Killed and not yet back. */
  #senderDown = false
  #senderRuns = 0
  #endpoint = "tcp://127.0.0.1:*"
  #drained = false
  /** The workers' reaction to the sender's crash was reported. */
  #workersNoticed = false

  #stats: SenderStats | undefined
  #ackedBefore = 0
  #redeliveredBefore = 0
  #recovered = 0
  readonly #faults: Faults = {}
  /** What the workers are waiting for, to word their connection events. */
  #expecting: "start" | "replacement" | "restart" | "none" = "start"

  protected readonly emptied = "the journal is empty"

  protected exited(proc: Proc): void {
    if (proc === this.#sender) {
      this.#senderUp = false
      this.#senderDown = true
    }
  }

  /** The demo, step by step. */
  protected async script(): Promise<void> {
    const { messages, workers } = this.o
    await this.makeDir("pirate-demo-")
    const victim = workers >= 2 ? 2 : 1
    this.start([
      `pirate demo: ${count(messages, "message")}, 1 sender + ${count(workers, "worker")}, each in its own process`,
      `  sender   a Sender that produces messages 1…${fmt(messages)}, durability "os"`,
      `  journal  ${this.#journalDir()}`,
      `  workers  ${WORKER_SETTINGS}`,
      `  faults   SIGKILL worker ${victim} at ${KILL_WORKER_AT * 100}%, SIGKILL the sender at ${KILL_SENDER_AT * 100}%`,
    ])

    // The workers start loading while the sender binds; they get its endpoint once it has.
    const senderReady = this.#startSender(1)
    for (let i = 1; i <= workers; i++) this.#startWorker(`worker ${i}`)
    await senderReady
    const connect: ConnectMessage = { type: "connect", endpoint: this.#endpoint }
    for (const w of this.workers) w.child.send(connect)

    // Fault 1: a worker dies while it holds messages; the sender gives them to the others.
    await this.until(() => this.processed.size >= Math.ceil(messages * KILL_WORKER_AT))
    const dead = this.workers.find((w) => w.name === `worker ${victim}`) as Proc
    const pid = dead.child.pid ?? 0
    const replacement = `worker ${workers + 1}`
    this.#faults.worker = { name: dead.name, pid, at: this.elapsed(), replacement }
    const deadEnded = this.kill(dead)
    this.event(`✗ SIGKILL ${dead.name} (pid ${pid}) while it processes messages`)
    await deadEnded
    this.#expecting = "replacement"
    this.#startWorker(replacement, this.#endpoint)
    this.event(`+ started ${replacement} to replace it`)

    // Fault 2: the sender (and producer) dies; restarted on the same journal and endpoint.
    await this.until(() => this.processed.size >= Math.ceil(messages * KILL_SENDER_AT))
    const sender = this.#sender as Proc
    const senderPid = sender.child.pid ?? 0
    this.#expecting = "none"
    this.#senderUp = false
    this.#senderDown = true
    this.#workersNoticed = false
    const killedAt = this.elapsed()
    const senderEnded = this.kill(sender)
    this.event(`✗ SIGKILL the sender (pid ${senderPid}) mid-stream`)
    await senderEnded
    // Its last reports (sends confirmed, stats) may have been in the pipe: read only now.
    this.#ackedBefore += this.#stats?.acked ?? 0
    this.#redeliveredBefore += this.#stats?.redelivered ?? 0
    this.#stats = undefined
    this.#faults.sender = { pid: senderPid, at: killedAt, confirmed: this.confirmed }
    // Restarted at once, as a supervisor would: the downtime is the time a process takes to start.
    this.#expecting = "restart"
    await this.#startSender(this.confirmed + 1)
    this.#faults.sender.back = this.elapsed() - killedAt

    await this.until(() => this.#drained)
    this.#expecting = "none"
    this.event(
      `✓ ${messages === 1 ? "the message" : `all ${fmt(messages)} messages`} sent and acked; closing the workers and the sender`,
    )
    await this.#shutdown()
  }

  async #startSender(from: number): Promise<void> {
    this.#senderRuns++
    const config: SenderConfig = {
      journal: this.#journalDir(),
      bind: this.#endpoint,
      from,
      ...this.senderSettings(),
    }
    const proc = this.children.spawn("sender", "sender", config)
    proc.child.on("message", (m) => this.#onSender(proc, m as SenderMessage, from))
    this.#sender = proc
    await this.until(() => this.#senderUp)
  }

  #startWorker(name: string, endpoint?: string): void {
    this.startWorker(name, endpoint, (proc, m) => this.#onWorker(proc, m))
  }

  #onSender(proc: Proc, m: SenderMessage, from: number): void {
    if (proc !== this.#sender) return
    switch (m.type) {
      case "ready":
        this.#endpoint = m.endpoint
        this.#senderUp = true
        this.#senderDown = false
        if (this.#senderRuns === 1) this.event(`✓ sender bound to ${m.endpoint}`)
        else {
          this.#recovered += m.recovered
          if (this.#faults.sender) this.#faults.sender.recovered = m.recovered
          this.event(
            `↻ restarted the sender (pid ${proc.child.pid ?? 0}) on the same journal and endpoint`,
          )
          this.event(
            `↻ its journal held ${count(m.recovered, "unacked message")}: it redelivers them`,
          )
          this.event(
            from <= this.o.messages
              ? `↻ the producer goes on after #${fmt(from - 1)}, its last confirmed send()`
              : "↻ the producer had sent everything already",
          )
        }
        break
      case "sent":
        this.confirmed = Math.max(this.confirmed, m.upTo)
        break
      case "stats":
        this.#stats = m.stats
        break
      case "worker:lost":
        if (this.#faults.worker && this.#faults.worker.requeued === undefined)
          this.#faults.worker.requeued = m.requeued
        this.event(
          `↻ the sender lost a worker (${m.reason}) and requeued its ${count(m.requeued, "unacked message")}`,
        )
        break
      case "drained":
        this.#stats = m.stats
        this.#drained = true
        break
      case "error":
        this.fail(new Error(`sender: ${m.message}`))
        break
    }
    this.changed()
  }

  #onWorker(proc: Proc, m: WorkerStateMessage): void {
    switch (m.type) {
      case "connected": {
        proc.connected = true
        const alive = this.workers.filter((w) => w.running)
        const connected = alive.filter((w) => w.connected).length
        if (this.#expecting === "start" && connected === alive.length) {
          this.event(`✓ ${connected} workers connected`)
          this.#expecting = "none"
        } else if (
          this.#expecting === "replacement" &&
          proc.name === this.#faults.worker?.replacement
        ) {
          this.event(`✓ ${proc.name} connected and takes its share`)
          this.#expecting = "none"
        } else if (this.#expecting === "restart" && connected === alive.length) {
          this.event(`✓ all ${connected} workers reconnected to the restarted sender`)
          this.#expecting = "none"
        }
        break
      }
      case "lost":
        proc.connected = false
        if (this.#senderUp) this.event(`~ ${proc.name} lost the sender (${m.reason}); reconnecting`)
        else if (!this.#workersNoticed) {
          this.#workersNoticed = true
          this.event(`~ the workers noticed (${m.reason}); they reconnect with backoff`)
        }
        break
      case "vote": // a worker of a sender pair (pirate demo --pair)
        break
    }
  }

  /** Closes the workers (they finish and report what runs) and then the sender, cleanly. */
  async #shutdown(): Promise<void> {
    const workers = await this.closeWorkers()
    const sender = this.#sender
    if (sender?.running) await this.closeSender(sender, "the sender to close")
    await Promise.all([...workers, ...(sender ? [sender] : [])].map((p) => p.ended))
  }

  // -------------------------------------------------------------------------------------------
  // output

  /** The last sender, once it has exited (the one that was closed at the end). */
  #closedSenders(): Proc[] {
    return this.#sender && !this.#sender.running ? [this.#sender] : []
  }

  #journalDir(): string {
    return join(this.dir ?? tmpdir(), "journal")
  }

  protected snapshot(): Snapshot {
    const alive = this.workers.filter((w) => w.running)
    return {
      sent: this.confirmed,
      processed: this.processed.size,
      total: this.o.messages,
      acked: this.#ackedBefore + (this.#stats?.acked ?? 0),
      inFlight: this.#senderUp ? (this.#stats?.inFlight ?? 0) : 0,
      redelivered: this.#redeliveredBefore + (this.#stats?.redelivered ?? 0) + this.#recovered,
      workersConnected: alive.filter((w) => w.connected).length,
      workersAlive: alive.length,
      sender: this.#senderUp ? "up" : this.#senderDown ? "down" : "starting",
      elapsed: this.elapsed(),
    }
  }

  protected senderState(s: Snapshot): string {
    return `sender ${s.sender}`
  }

  protected render(): { text: string; ok: boolean } {
    return renderSummary({
      ...this.observed(),
      faults: this.#faults,
      closedSenders: this.#closedSenders(),
    })
  }
}
