/**
 * The script of `pirate demo` (bin/commands/demo.ts parses its options): start a sender and
 * workers (bin/demo/supervisor.ts), kill a worker and then the sender mid-stream, restart them,
 * follow what the children report, show the progress (display.ts) and print the summary
 * (summary.ts).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { debug, errorMessage } from "../cli.js"
import type { SenderStats } from "../../patterns/index.js"
import { Display, fmt, type DisplayMode, type Snapshot } from "./display.js"
import { count, renderSummary, type Copy, type Faults } from "./summary.js"
import type {
  CloseMessage,
  ConnectMessage,
  SenderConfig,
  SenderMessage,
  WorkerConfig,
  WorkerMessage,
} from "./ipc.js"
import type { Proc } from "./children.js"
import { Supervisor } from "./supervisor.js"

/** Settings of the run: small heartbeat and reconnect delays make recovery snappy. */
const HEARTBEAT_INTERVAL = 250
const LIVENESS = 3
const RECONNECT = 100
const CONCURRENCY = 4
const MIN_DELAY = 4
const MAX_DELAY = 12
/** Fractions of the messages processed at which the faults are injected. */
const KILL_WORKER_AT = 0.25
const KILL_SENDER_AT = 0.6
const STATS_INTERVAL = 100
/** The demo fails when nothing happens for this long. */
const STALL_TIMEOUT = 20_000
/** How long a child may take to close cleanly at the end before it is killed. */
const CLOSE_TIMEOUT = 5_000

class Interrupted extends Error {
  override name = "Interrupted"
}

export interface DemoOptions {
  messages: number
  workers: number
  mode: DisplayMode
}

export class Demo {
  readonly #o: DemoOptions
  readonly #display: Display
  readonly #t0 = performance.now()
  #dir: string | undefined
  #lastProgress = performance.now()

  readonly #children: Supervisor
  readonly #workers: Proc[] = []
  #sender: Proc | undefined
  #senderUp = false
  /** Killed and not yet back. */
  #senderDown = false
  #senderRuns = 0
  #endpoint = "tcp://127.0.0.1:*"
  #drained = false
  /** The workers' reaction to the sender's crash was reported. */
  #workersNoticed = false

  /** Highest n such that the `send()` of every message up to n has resolved. */
  #confirmed = 0
  readonly #processed = new Map<number, Copy[]>()
  #stats: SenderStats | undefined
  #ackedBefore = 0
  #redeliveredBefore = 0
  #recovered = 0
  readonly #faults: Faults = {}
  /** What the workers are waiting for, to word their connection events. */
  #expecting: "start" | "replacement" | "restart" | "none" = "start"

  constructor(options: DemoOptions) {
    this.#o = options
    this.#display = new Display(options.mode, () => this.#snapshot())
    this.#children = new Supervisor({
      passthrough: (line) => this.#display.passthrough(line),
      exited: (proc) => {
        if (proc === this.#sender) {
          this.#senderUp = false
          this.#senderDown = true
        }
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
        `done: ${fmt(this.#o.messages)} sent, processed and acked; the journal is empty`,
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
    this.#dir = await mkdtemp(join(tmpdir(), "pirate-demo-"))
    const victim = workers >= 2 ? 2 : 1
    if (this.#o.mode !== "quiet") {
      process.stdout.write(
        [
          `pirate demo: ${count(messages, "message")}, 1 sender + ${count(workers, "worker")}, each in its own process`,
          `  sender   a Sender that produces messages 1…${fmt(messages)}, durability "os"`,
          `  journal  ${this.#journalDir()}`,
          `  workers  concurrency ${CONCURRENCY}, ${MIN_DELAY}-${MAX_DELAY} ms per message, heartbeat ${HEARTBEAT_INTERVAL} ms`,
          `  faults   SIGKILL worker ${victim} at ${KILL_WORKER_AT * 100}%, SIGKILL the sender at ${KILL_SENDER_AT * 100}%`,
          "",
          "",
        ].join("\n"),
      )
    }
    this.#display.start()

    // The workers start loading while the sender binds; they get its endpoint once it has.
    const senderReady = this.#startSender(1)
    for (let i = 1; i <= workers; i++) this.#startWorker(`worker ${i}`)
    await senderReady
    const connect: ConnectMessage = { type: "connect", endpoint: this.#endpoint }
    for (const w of this.#workers) w.child.send(connect)

    // Fault 1: a worker dies while it holds messages; the sender gives them to the others.
    await this.#until(() => this.#processed.size >= Math.ceil(messages * KILL_WORKER_AT))
    const dead = this.#workers.find((w) => w.name === `worker ${victim}`) as Proc
    const pid = dead.child.pid ?? 0
    const replacement = `worker ${workers + 1}`
    this.#faults.worker = { name: dead.name, pid, at: this.#elapsed(), replacement }
    const deadEnded = this.#kill(dead)
    this.#event(`✗ SIGKILL ${dead.name} (pid ${pid}) while it processes messages`)
    await deadEnded
    this.#expecting = "replacement"
    this.#startWorker(replacement, this.#endpoint)
    this.#event(`+ started ${replacement} to replace it`)

    // Fault 2: the sender (and producer) dies; restarted on the same journal and endpoint.
    await this.#until(() => this.#processed.size >= Math.ceil(messages * KILL_SENDER_AT))
    const sender = this.#sender as Proc
    const senderPid = sender.child.pid ?? 0
    this.#expecting = "none"
    this.#senderUp = false
    this.#senderDown = true
    this.#workersNoticed = false
    const killedAt = this.#elapsed()
    const senderEnded = this.#kill(sender)
    this.#event(`✗ SIGKILL the sender (pid ${senderPid}) mid-stream`)
    await senderEnded
    // Its last reports (sends confirmed, stats) may have been in the pipe: read only now.
    this.#ackedBefore += this.#stats?.acked ?? 0
    this.#redeliveredBefore += this.#stats?.redelivered ?? 0
    this.#stats = undefined
    this.#faults.sender = { pid: senderPid, at: killedAt, confirmed: this.#confirmed }
    // Restarted at once, as a supervisor would: the downtime is the time a process takes to start.
    this.#expecting = "restart"
    await this.#startSender(this.#confirmed + 1)
    this.#faults.sender.back = this.#elapsed() - killedAt

    await this.#until(() => this.#drained)
    this.#expecting = "none"
    this.#event(
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
      to: this.#o.messages,
      window: Math.min(1000, Math.max(50, Math.round(this.#o.messages / 20))),
      heartbeatInterval: HEARTBEAT_INTERVAL,
      statsInterval: STATS_INTERVAL,
    }
    const proc = this.#children.spawn("sender", "sender", config)
    proc.child.on("message", (m) => this.#onSender(proc, m as SenderMessage, from))
    this.#sender = proc
    await this.#until(() => this.#senderUp)
  }

  #startWorker(name: string, endpoint?: string): void {
    const config: WorkerConfig = {
      ...(endpoint === undefined ? {} : { endpoint }),
      concurrency: CONCURRENCY,
      minDelay: MIN_DELAY,
      maxDelay: MAX_DELAY,
      heartbeatInterval: HEARTBEAT_INTERVAL,
      liveness: LIVENESS,
      reconnect: RECONNECT,
    }
    const proc = this.#children.spawn(name, "worker", config)
    proc.child.on("message", (m) => this.#onWorker(proc, m as WorkerMessage))
    this.#workers.push(proc)
  }

  #onSender(proc: Proc, m: SenderMessage, from: number): void {
    if (proc !== this.#sender) return
    switch (m.type) {
      case "ready":
        this.#endpoint = m.endpoint
        this.#senderUp = true
        this.#senderDown = false
        if (this.#senderRuns === 1) this.#event(`✓ sender bound to ${m.endpoint}`)
        else {
          this.#recovered += m.recovered
          if (this.#faults.sender) this.#faults.sender.recovered = m.recovered
          this.#event(
            `↻ restarted the sender (pid ${proc.child.pid ?? 0}) on the same journal and endpoint`,
          )
          this.#event(
            `↻ its journal held ${count(m.recovered, "unacked message")}: it redelivers them`,
          )
          this.#event(
            from <= this.#o.messages
              ? `↻ the producer goes on after #${fmt(from - 1)}, its last confirmed send()`
              : "↻ the producer had sent everything already",
          )
        }
        break
      case "sent":
        this.#confirmed = Math.max(this.#confirmed, m.upTo)
        break
      case "stats":
        this.#stats = m.stats
        break
      case "worker:lost":
        if (this.#faults.worker && this.#faults.worker.requeued === undefined)
          this.#faults.worker.requeued = m.requeued
        this.#event(
          `↻ the sender lost a worker (${m.reason}) and requeued its ${count(m.requeued, "unacked message")}`,
        )
        break
      case "drained":
        this.#stats = m.stats
        this.#drained = true
        break
      case "error":
        this.#fail(new Error(`sender: ${m.message}`))
        break
    }
    this.#changed()
  }

  #onWorker(proc: Proc, m: WorkerMessage): void {
    switch (m.type) {
      case "connected": {
        proc.connected = true
        const alive = this.#workers.filter((w) => w.running)
        const connected = alive.filter((w) => w.connected).length
        if (this.#expecting === "start" && connected === alive.length) {
          this.#event(`✓ ${connected} workers connected`)
          this.#expecting = "none"
        } else if (
          this.#expecting === "replacement" &&
          proc.name === this.#faults.worker?.replacement
        ) {
          this.#event(`✓ ${proc.name} connected and takes its share`)
          this.#expecting = "none"
        } else if (this.#expecting === "restart" && connected === alive.length) {
          this.#event(`✓ all ${connected} workers reconnected to the restarted sender`)
          this.#expecting = "none"
        }
        break
      }
      case "lost":
        proc.connected = false
        if (this.#senderUp)
          this.#event(`~ ${proc.name} lost the sender (${m.reason}); reconnecting`)
        else if (!this.#workersNoticed) {
          this.#workersNoticed = true
          this.#event(`~ the workers noticed (${m.reason}); they reconnect with backoff`)
        }
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
      case "vote": // a worker of a sender pair (pirate demo --pair)
        break
      case "error":
        this.#fail(new Error(`${proc.name}: ${m.message}`))
        break
    }
    this.#changed()
  }

  /** A real crash: no close(), no flush. Resolves once the process is gone. */
  async #kill(proc: Proc): Promise<void> {
    await this.#children.kill(proc)
    this.#lastProgress = performance.now()
  }

  /** Closes the workers (they finish and report what runs) and then the sender, cleanly. */
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
    const sender = this.#sender
    if (sender?.running) {
      sender.expected = true
      sender.child.send(close)
      await this.#until(() => !sender.running, CLOSE_TIMEOUT, "the sender to close")
    }
    await Promise.all([...workers, ...(sender ? [sender] : [])].map((p) => p.ended))
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

  /** The last sender, once it has exited (the one that was closed at the end). */
  #closedSenders(): Proc[] {
    return this.#sender && !this.#sender.running ? [this.#sender] : []
  }

  #journalDir(): string {
    return join(this.#dir ?? tmpdir(), "journal")
  }

  #snapshot(): Snapshot {
    const alive = this.#workers.filter((w) => w.running)
    return {
      sent: this.#confirmed,
      processed: this.#processed.size,
      total: this.#o.messages,
      acked: this.#ackedBefore + (this.#stats?.acked ?? 0),
      inFlight: this.#senderUp ? (this.#stats?.inFlight ?? 0) : 0,
      redelivered: this.#redeliveredBefore + (this.#stats?.redelivered ?? 0) + this.#recovered,
      workersConnected: alive.filter((w) => w.connected).length,
      workersAlive: alive.length,
      sender: this.#senderUp ? "up" : this.#senderDown ? "down" : "starting",
      elapsed: this.#elapsed(),
    }
  }

  #state(): string {
    const s = this.#snapshot()
    return `sent ${s.sent}, processed ${s.processed}/${s.total}, acked ${s.acked}, in flight ${s.inFlight}, workers ${s.workersConnected}/${s.workersAlive}, sender ${s.sender}`
  }

  /** Prints the summary; returns the exit status. */
  #summary(): number {
    const { text, ok } = renderSummary({
      total: this.#o.messages,
      elapsed: this.#elapsed(),
      confirmed: this.#confirmed,
      processed: this.#processed,
      faults: this.#faults,
      workers: this.#workers,
      closedSenders: this.#closedSenders(),
    })
    process.stdout.write(text)
    return ok ? 0 : 1
  }
}
