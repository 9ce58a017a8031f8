/**
 * The child processes of `pirate demo`: starts them, kills them, and lets the demo wait for a
 * state of theirs, failing every wait at once when a child fails or exits unexpectedly.
 */
import { fork } from "node:child_process"
import { createInterface } from "node:readline"
import { debug } from "../cli.js"
import { childExecArgv, programUrl, type Proc } from "./children.js"
import type { PairSenderConfig, SenderConfig, WorkerConfig } from "./ipc.js"

export interface SupervisorHooks {
  /** A line a child printed (warnings, NODE_DEBUG traces), prefixed with its name. */
  passthrough(line: string): void
  /** A child exited (expected or not); called before the waits are re-checked. */
  exited(proc: Proc): void
}

export class Supervisor {
  readonly #hooks: SupervisorHooks
  readonly #procs = new Set<Proc>()
  readonly #waiters = new Set<() => void>()
  #failure: Error | undefined

  constructor(hooks: SupervisorHooks) {
    this.#hooks = hooks
  }

  /** Starts `program` as a child with its settings as one JSON argument. */
  spawn(
    name: string,
    program: "sender" | "pair-sender" | "worker",
    config: SenderConfig | PairSenderConfig | WorkerConfig,
  ): Proc {
    const child = fork(programUrl(program), [JSON.stringify(config)], {
      execArgv: childExecArgv(),
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    })
    const proc: Proc = {
      name,
      child,
      ended: new Promise((resolve) => child.once("close", () => resolve())),
      expected: false,
      running: true,
      connected: false,
      closed: false,
      killed: false,
      processed: 0,
    }
    this.#procs.add(proc)
    debug("demo: started %s, pid %d", name, child.pid ?? 0)
    // Children print nothing of their own; pass on whatever they do print (warnings, NODE_DEBUG
    // traces) without breaking the progress lines.
    for (const stream of [child.stdout, child.stderr]) {
      if (stream)
        createInterface({ input: stream }).on("line", (line) =>
          this.#hooks.passthrough(`[${name}] ${line}`),
        )
    }
    child.on("error", (err) => this.fail(new Error(`${name}: ${err.message}`)))
    child.once("exit", (code, signal) => {
      proc.exit = signal ?? `code ${code}`
      proc.running = false
      proc.connected = false
      debug("demo: %s exited (%s)", name, signal ?? `code ${code}`)
      this.#hooks.exited(proc)
      if (!proc.expected)
        this.fail(new Error(`${name} exited unexpectedly (${signal ?? `exit code ${code}`})`))
      this.changed()
    })
    void proc.ended.then(() => this.#procs.delete(proc))
    return proc
  }

  /** A real crash: no close(), no flush. Resolves once the process is gone. */
  async kill(proc: Proc): Promise<void> {
    proc.expected = true
    proc.killed = true
    proc.child.kill("SIGKILL")
    await proc.ended
  }

  /** Ends every child still running (SIGKILL), waiting at most 3 s for them to be gone. */
  async killAll(): Promise<void> {
    const left = [...this.#procs]
    for (const p of left) {
      p.expected = true
      if (p.running) p.child.kill("SIGKILL")
    }
    await Promise.race([Promise.all(left.map((p) => p.ended)), sleep(3000)])
  }

  /** Resolves when `done()` holds; rejects when the demo fails (or after `timeout` ms). */
  until(done: () => boolean, timeout?: number, what?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const check = (): void => {
        const failure = this.#failure
        if (failure) finish(() => reject(failure))
        else if (done()) finish(resolve)
      }
      const finish = (settle: () => void): void => {
        this.#waiters.delete(check)
        clearTimeout(timer)
        settle()
      }
      if (timeout !== undefined) {
        timer = setTimeout(
          () => finish(() => reject(new Error(`timed out waiting for ${what ?? "a child"}`))),
          timeout,
        )
      }
      this.#waiters.add(check)
      check()
    })
  }

  /** Something changed: re-check every wait. */
  changed(): void {
    for (const check of [...this.#waiters]) check()
  }

  /** Fails the demo: every wait, now and later, rejects with the first failure. */
  fail(err: Error): void {
    this.#failure ??= err
    this.changed()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
