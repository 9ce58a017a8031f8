/** The chaos run's child processes, and where the sender binds. */
import { fork, type ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import type { Fault, Msg } from "./types.js"

/** A forked child with fork IPC, its messages, and a way to wait for one. */
export class Proc {
  readonly child: ChildProcess
  readonly name: string
  readonly exited: Promise<void>
  exitInfo: string | undefined
  /** Set before we end it ourselves, so its exit is not reported as a crash. */
  killedByUs = false
  stoppedAt: number | undefined
  /** The SIGSTOP fault in progress (its `end` is set at SIGCONT). */
  stopFault: Fault | undefined
  contTimer: NodeJS.Timeout | undefined
  #waiters: { match: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = []

  constructor(file: string, name: string, config: object, onMessage: (p: Proc, m: Msg) => void) {
    this.name = name
    this.child = fork(new URL(file, import.meta.url), [JSON.stringify(config)], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    })
    this.child.on("message", (m: Msg) => {
      onMessage(this, m)
      for (const w of [...this.#waiters]) {
        if (w.match(m)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(m)
        }
      }
    })
    const exit = new Promise<void>((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exitInfo = signal ?? `code ${code ?? "?"}`
        resolve()
      })
    })
    // Messages still in the pipe arrive before "disconnect": wait for both, so that everything
    // a killed sender reported (resolved sends) is known before its successor starts.
    const disconnect = new Promise<void>((resolve) => {
      if (!this.child.connected) resolve()
      else this.child.once("disconnect", resolve)
    })
    this.exited = Promise.all([exit, disconnect]).then(() => undefined)
  }

  get pid(): number {
    return this.child.pid ?? -1
  }

  get alive(): boolean {
    return this.exitInfo === undefined
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child.kill(sig)
  }

  /** SIGKILL (after SIGCONT, in case it is stopped) and wait for the exit. */
  async kill(): Promise<void> {
    this.killedByUs = true
    clearTimeout(this.contTimer)
    if (this.alive) {
      this.child.kill("SIGCONT")
      this.child.kill("SIGKILL")
    }
    await this.exited
  }

  waitFor(match: (m: Msg) => boolean, timeoutMs: number, what: string): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.push({
        match,
        resolve: (m) => {
          clearTimeout(timer)
          resolve(m)
        },
      })
      void this.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${this.exitInfo ?? "?"}) before ${what}`))
      })
    })
  }
}

/** A free TCP port below the ephemeral range, so no outgoing connection takes it while the sender is down. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once("error", () => resolve(false))
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
    })
    if (free) return port
  }
  throw new Error("no free port found")
}
