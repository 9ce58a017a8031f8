/**
 * What `pirate demo` (script.ts) and `pirate demo --pair` (pair-script.ts) share: the settings of
 * the run, the run itself (signals, the stall watchdog, the summary or the error, the cleanup),
 * the workers (started, their reports of what they processed, closed at the end), killing a child,
 * and the live output. Each script adds its sender(s) and its story.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { debug, errorMessage } from "../cli.js"
import type { Proc } from "./children.js"
import { Display, fmt, type DisplayMode, type Snapshot } from "./display.js"
import type { CloseMessage, SenderConfig, WorkerConfig, WorkerMessage } from "./ipc.js"
import type { Copy, DemoRun } from "./summary.js"
import { Supervisor } from "./supervisor.js"

/** Settings of the run: small heartbeat and reconnect delays make recovery snappy. */
const HEARTBEAT_INTERVAL = 250
const LIVENESS = 3
const RECONNECT = 100
const CONCURRENCY = 4
const MIN_DELAY = 4
const MAX_DELAY = 12
const STATS_INTERVAL = 100
/** The demo fails when nothing happens for this long. */
const STALL_TIMEOUT = 20_000
/** How long a child may take to close cleanly at the end before it is killed. */
const CLOSE_TIMEOUT = 5_000

/** The workers' settings, as the header of the demo tells them. */
export const WORKER_SETTINGS = `concurrency ${CONCURRENCY}, ${MIN_DELAY}-${MAX_DELAY} ms per message, heartbeat ${HEARTBEAT_INTERVAL} ms`

class Interrupted extends Error {
  override name = "Interrupted"
}

export interface DemoOptions {
  messages: number
  workers: number
  mode: DisplayMode
}

/** A worker's reports that every script handles alike. */
type WorkerReport = Extract<WorkerMessage, { type: "done" | "closed" | "error" }>
/** A worker's reports of its sessions with the sender(s), which each script words its own way. */
export type WorkerStateMessage = Exclude<WorkerMessage, WorkerReport>

export abstract class DemoScript {
  protected readonly o: DemoOptions
  protected readonly display: Display
  protected readonly children: Supervisor
  protected readonly workers: Proc[] = []
  /** Highest n such that the `send()` of every message up to n has resolved. */
  protected confirmed = 0
  protected readonly processed = new Map<number, Copy[]>()
  readonly #t0 = performance.now()
  #dir: string | undefined
  #lastProgress = performance.now()

  /** The end of the line printed when everything was processed ("the journal is empty"). */
  protected abstract readonly emptied: string

  constructor(options: DemoOptions) {
    this.o = options
    this.display = new Display(options.mode, () => this.snapshot())
    this.children = new Supervisor({
      passthrough: (line) => this.display.passthrough(line),
      exited: (proc) => this.exited(proc),
    })
  }

  /** The demo, step by step. */
  protected abstract script(): Promise<void>
  /** A child exited (expected or not); called before the waits are checked again. */
  protected abstract exited(proc: Proc): void
  /** What the live lines show. */
  protected abstract snapshot(): Snapshot
  /** The sender(s) in the state line of an error (after the workers). */
  protected abstract senderState(s: Snapshot): string
  /** The summary and whether the run passed. */
  protected abstract render(): { text: string; ok: boolean }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals): void =>
      this.fail(new Interrupted(`interrupted by ${signal}`))
    process.on("SIGINT", onSignal)
    process.on("SIGTERM", onSignal)
    const watchdog = setInterval(() => {
      if (performance.now() - this.#lastProgress > STALL_TIMEOUT) {
        this.fail(new Error(`no progress for ${STALL_TIMEOUT / 1000} s (${this.#state()})`))
      }
    }, 1000)
    let code: number
    try {
      await this.script()
      this.display.stop(`done: ${fmt(this.o.messages)} sent, processed and acked; ${this.emptied}`)
      const { text, ok } = this.render()
      process.stdout.write(text)
      code = ok ? 0 : 1
    } catch (err) {
      this.display.stop()
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

  /** Makes the run's temporary folder (removed at the end); returns it. */
  protected async makeDir(prefix: string): Promise<string> {
    this.#dir = await mkdtemp(join(tmpdir(), prefix))
    return this.#dir
  }

  protected get dir(): string | undefined {
    return this.#dir
  }

  /**
   * The settings every sender of the run gets: the last message number, the window (how far the
   * producer may run ahead of the workers), the heartbeat and how often to report stats.
   */
  protected senderSettings(): Pick<
    SenderConfig,
    "to" | "window" | "heartbeatInterval" | "statsInterval"
  > {
    const messages = this.o.messages
    return {
      to: messages,
      window: Math.min(1000, Math.max(50, Math.round(messages / 20))),
      heartbeatInterval: HEARTBEAT_INTERVAL,
      statsInterval: STATS_INTERVAL,
    }
  }

  /** Prints the header (not with --quiet) and starts the live lines. */
  protected start(header: string[]): void {
    if (this.o.mode !== "quiet") process.stdout.write([...header, "", ""].join("\n"))
    this.display.start()
  }

  /**
   * Starts a worker connected to `endpoint` (when missing, it waits to be told). What it
   * processed, that it closed or failed is handled here; its other reports go to `onMessage`.
   */
  protected startWorker(
    name: string,
    endpoint: string | string[] | undefined,
    onMessage: (proc: Proc, m: WorkerStateMessage) => void,
  ): Proc {
    const config: WorkerConfig = {
      ...(endpoint === undefined ? {} : { endpoint }),
      concurrency: CONCURRENCY,
      minDelay: MIN_DELAY,
      maxDelay: MAX_DELAY,
      heartbeatInterval: HEARTBEAT_INTERVAL,
      liveness: LIVENESS,
      reconnect: RECONNECT,
    }
    const proc = this.children.spawn(name, "worker", config)
    proc.child.on("message", (message) => {
      const m = message as WorkerMessage
      if (m.type === "done" || m.type === "closed" || m.type === "error")
        this.#workerReport(proc, m)
      else onMessage(proc, m)
      this.changed()
    })
    this.workers.push(proc)
    return proc
  }

  /** What a worker processed, that it closed, or that it failed. */
  #workerReport(proc: Proc, m: WorkerReport): void {
    switch (m.type) {
      case "done":
        for (const [n, id, attempt] of m.items) {
          const copies = this.processed.get(n)
          if (copies) copies.push({ id, attempt })
          else this.processed.set(n, [{ id, attempt }])
        }
        proc.processed += m.items.length
        this.#lastProgress = performance.now()
        break
      case "closed":
        proc.closed = true
        break
      case "error":
        this.fail(new Error(`${proc.name}: ${m.message}`))
        break
    }
  }

  /** A real crash: no close(), no flush. Resolves once the process is gone. */
  protected async kill(proc: Proc): Promise<void> {
    await this.children.kill(proc)
    this.#lastProgress = performance.now()
  }

  /** Closes the running workers (they finish and report what runs); returns them. */
  protected async closeWorkers(): Promise<Proc[]> {
    const close: CloseMessage = { type: "close" }
    const workers = this.workers.filter((w) => w.running)
    for (const w of workers) {
      w.expected = true
      w.child.send(close)
    }
    await this.until(
      () => workers.every((w) => w.closed || !w.running),
      CLOSE_TIMEOUT,
      "the workers to close",
    )
    return workers
  }

  /** Closes a sender cleanly; `what` names it in the timeout's error. */
  protected async closeSender(proc: Proc, what: string): Promise<void> {
    const close: CloseMessage = { type: "close" }
    proc.expected = true
    proc.child.send(close)
    await this.until(() => !proc.running, CLOSE_TIMEOUT, what)
  }

  /** Ends every child still running (SIGKILL) and removes the temporary folder. */
  async #cleanup(): Promise<void> {
    await this.children.killAll()
    if (this.#dir !== undefined) {
      try {
        await rm(this.#dir, { recursive: true, force: true, maxRetries: 3 })
      } catch (err) {
        process.stderr.write(`pirate demo: could not remove ${this.#dir}: ${errorMessage(err)}\n`)
      }
    }
  }

  protected until(done: () => boolean, timeout?: number, what?: string): Promise<void> {
    return this.children.until(done, timeout, what)
  }

  protected changed(): void {
    this.children.changed()
  }

  protected fail(err: Error): void {
    this.children.fail(err)
  }

  // -------------------------------------------------------------------------------------------
  // output

  protected event(text: string): void {
    this.#lastProgress = performance.now()
    debug("demo: %s", text)
    this.display.event(text)
  }

  protected elapsed(): number {
    return (performance.now() - this.#t0) / 1000
  }

  /** What every summary is built from, besides the faults and the senders. */
  protected observed(): Omit<DemoRun, "faults" | "closedSenders"> {
    return {
      total: this.o.messages,
      elapsed: this.elapsed(),
      confirmed: this.confirmed,
      processed: this.processed,
      workers: this.workers,
    }
  }

  #state(): string {
    const s = this.snapshot()
    return `sent ${s.sent}, processed ${s.processed}/${s.total}, acked ${s.acked}, in flight ${s.inFlight}, workers ${s.workersConnected}/${s.workersAlive}, ${this.senderState(s)}`
  }
}
