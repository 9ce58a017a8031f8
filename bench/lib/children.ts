/**
 * Child processes for the benchmarks: forked fixtures (compiled to JavaScript first, see
 * ./compiled.ts), tracked so that every one of them is killed at the end, on error and on Ctrl-C
 * too.
 */
import { fork, type ChildProcess } from "node:child_process"
import { compiled } from "./compiled.js"

const children = new Set<ChildProcess>()
let hooked = false

/** A forked fixture and the IPC messages it sent that nobody has taken yet. */
export interface Child {
  readonly process: ChildProcess
  readonly pid: number
  /** Resolves with the next IPC message matching `match` (buffered ones first); rejects after `timeoutMs`. */
  next<T extends { type: string }>(
    match: (m: T) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<T>
  /** Sends an IPC message (ignored once the child is gone). */
  send(message: object): void
  /** Kills the child with `signal` and waits (bounded) for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /**
   * Closes the IPC channel so that the fixture exits by itself (and writes its CPU profile when
   * asked to); SIGKILL if it has not within 2 s.
   */
  end(): Promise<void>
}

/**
 * Forks `bench/fixtures/<file>`, compiled. The fixtures exit by themselves when the IPC channel
 * closes, so a parent that dies without cleaning up leaves nothing running for long.
 */
export function forkFixture(file: string, args: string[]): Child {
  return forkModule(new URL(`../fixtures/${file}`, import.meta.url), args)
}

/** Like {@link forkFixture} for a fixture anywhere (e.g. `bench/peers/fixtures/`), by its URL. */
export function forkModule(module: URL, args: string[]): Child {
  hookExit()
  const file = module.pathname.split("/").pop() ?? module.pathname
  const child = fork(compiled(module), args, {
    // BENCH_CHILD_NODE_ARGS adds node flags to every child, e.g. "--cpu-prof --cpu-prof-dir=prof"
    // (NODE_OPTIONS refuses --cpu-prof); a child writes its profile when it exits by itself.
    execArgv: childNodeArgs(),
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  })
  children.add(child)
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      children.delete(child)
      resolve()
    })
  })
  const inbox: { type: string }[] = []
  const wanted: {
    match: (m: { type: string }) => boolean
    resolve: (m: { type: string }) => void
  }[] = []
  child.on("message", (m: { type: string }) => {
    const i = wanted.findIndex((w) => w.match(m))
    if (i >= 0) wanted.splice(i, 1)[0]?.resolve(m)
    else inbox.push(m)
  })
  return {
    process: child,
    pid: child.pid ?? -1,
    next<T extends { type: string }>(
      match: (m: T) => boolean,
      timeoutMs: number,
      what: string,
    ): Promise<T> {
      const m = match as (m: { type: string }) => boolean
      const i = inbox.findIndex(m)
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0] as T)
      return new Promise<T>((resolve, reject) => {
        const entry = {
          match: m,
          resolve: (v: { type: string }) => {
            clearTimeout(timer)
            child.off("exit", onExit)
            resolve(v as T)
          },
        }
        const fail = (why: string): void => {
          const j = wanted.indexOf(entry)
          if (j >= 0) wanted.splice(j, 1)
          child.off("exit", onExit)
          clearTimeout(timer)
          reject(
            new Error(`child ${String(child.pid)} (${file}): ${why} while waiting for ${what}`),
          )
        }
        const onExit = (code: number | null, signal: string | null): void => {
          fail(`exited (${String(code ?? signal)})`)
        }
        const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs)
        wanted.push(entry)
        child.once("exit", onExit)
      })
    },
    send(message: object): void {
      if (child.connected) child.send(message)
    },
    async end(): Promise<void> {
      if (child.connected) child.disconnect()
      await withTimeout(exited, 2000, `exit of child ${String(child.pid)}`).catch(() => undefined)
      await this.kill()
    },
    async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      await withTimeout(exited, 5000, `exit of child ${String(child.pid)}`).catch(() => {
        child.kill("SIGKILL")
      })
    },
  }
}

function childNodeArgs(): string[] {
  return (process.env["BENCH_CHILD_NODE_ARGS"] ?? "").split(" ").filter((a) => a !== "")
}

/** Kills every child still running (SIGKILL: a benchmark child holds nothing worth flushing). */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...children].map(async (c) => {
      const gone = new Promise<void>((resolve) => c.once("exit", () => resolve()))
      c.kill("SIGKILL")
      await withTimeout(gone, 5000, `exit of child ${String(c.pid)}`).catch(() => undefined)
    }),
  )
}

function hookExit(): void {
  if (hooked) return
  hooked = true
  // Last resort for paths that never reach killAll() (process.exit, a signal): kill synchronously.
  process.once("exit", () => {
    for (const c of children) c.kill("SIGKILL")
  })
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      for (const c of children) c.kill("SIGKILL")
      process.exit(130)
    })
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Runs a benchmark's `main` within `limitMs` (past it, every child is killed and the process
 * exits 2), reports a failure on stderr with exit code 1, ends every child, and exits: sockets
 * and stray timers of a failed run must not keep the process alive.
 */
export async function runBench(main: () => Promise<void>, limitMs: number): Promise<never> {
  const overall = setTimeout(() => {
    process.stderr.write("bench: overall time limit reached\n")
    void killAll().finally(() => process.exit(2))
  }, limitMs)
  overall.unref()
  try {
    await main()
  } catch (err) {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    )
    process.exitCode = 1
  } finally {
    await killAll()
    await sleep(10)
    clearTimeout(overall)
  }
  process.exit()
}
