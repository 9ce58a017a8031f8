/**
 * Network namespaces joined by veth pairs, for partition tests. Everything lives inside
 * namespaces this module creates (named with the pid and a random suffix, so parallel runs do
 * not clash): the sender namespace holds a bridge with the sender's address and one veth port per
 * worker namespace; nothing is added to the root namespace, and no traffic leaves these
 * namespaces. Cutting a worker's link sets its bridge port down (packets dropped both ways, no
 * TCP reset: only heartbeats can tell).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== "linux")
    return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return "creating network namespaces needs root"
  const probe = `pirate-probe-${process.pid}-${randomBytes(3).toString("hex")}`
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "pipe" })
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer }
    if (e.code === "ENOENT") return "the `ip` command (iproute2) is missing"
    return `\`ip netns add\` failed: ${e.stderr?.toString().trim() ?? String(err)}`
  }
  execFileSync("ip", ["netns", "del", probe], { stdio: "pipe" })
  return undefined
}

function ip(...args: string[]): void {
  try {
    execFileSync("ip", args, { stdio: "pipe" })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
    throw new Error(`ip ${args.join(" ")} failed: ${stderr ?? String(err)}`, { cause: err })
  }
}

export interface WorkerNet {
  /** Namespace of the worker. */
  ns: string
  /** The worker's address on the link. */
  address: string
  /** The bridge port (in the sender namespace) of this worker's veth pair. */
  port: string
}

export interface Topology {
  senderNs: string
  /** The sender's address (on the bridge in its namespace). */
  senderAddress: string
  workers: WorkerNet[]
  /** Sets a worker's link down (the partition). */
  cut(worker: WorkerNet): void
  /** Sets it up again. */
  heal(worker: WorkerNet): void
  /** Deletes the namespaces (and with them the bridge and veths). Idempotent; never throws. */
  destroy(): void
}

/**
 * Creates a sender namespace with a bridge at 10.203.0.1/24 and `workers` worker namespaces at
 * 10.203.0.2, .3, … each joined to the bridge by a veth pair. Call `destroy()` when done.
 */
export function createTopology(workers: number): Topology {
  const tag = `${process.pid}-${randomBytes(2).toString("hex")}`
  const senderNs = `pirate-${tag}-s`
  const created: string[] = []
  const destroy = (): void => {
    process.off("exit", destroy)
    for (const ns of created.splice(0).reverse()) {
      try {
        execFileSync("ip", ["netns", "del", ns], { stdio: "pipe" })
      } catch {
        /* already gone */
      }
    }
  }
  // Also if the test process exits without running its cleanup hooks.
  process.on("exit", destroy)
  try {
    ip("netns", "add", senderNs)
    created.push(senderNs)
    ip("-n", senderNs, "link", "set", "lo", "up")
    ip("-n", senderNs, "link", "add", "br0", "type", "bridge")
    ip("-n", senderNs, "addr", "add", "10.203.0.1/24", "dev", "br0")
    ip("-n", senderNs, "link", "set", "br0", "up")
    const list: WorkerNet[] = []
    for (let i = 0; i < workers; i++) {
      const ns = `pirate-${tag}-w${i}`
      ip("netns", "add", ns)
      created.push(ns)
      ip("-n", ns, "link", "set", "lo", "up")
      const port = `vw${i}`
      // Created inside the sender namespace, the peer straight in the worker's: the root
      // namespace never sees either end.
      ip("-n", senderNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
      ip("-n", senderNs, "link", "set", port, "master", "br0")
      ip("-n", senderNs, "link", "set", port, "up")
      const address = `10.203.0.${i + 2}`
      ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0")
      ip("-n", ns, "link", "set", "eth0", "up")
      list.push({ ns, address, port })
    }
    return {
      senderNs,
      senderAddress: "10.203.0.1",
      workers: list,
      cut: (w) => ip("-n", senderNs, "link", "set", w.port, "down"),
      heal: (w) => ip("-n", senderNs, "link", "set", w.port, "up"),
      destroy,
    }
  } catch (err) {
    destroy()
    throw err
  }
}

export interface Line {
  type?: string
  [key: string]: unknown
}

/** A child running under `ip netns exec`, reporting JSON lines on stdout, taking them on stdin. */
export class NsChild {
  readonly name: string
  readonly process: ChildProcess
  /** Every line so far, with the parent's `performance.now()` at arrival. */
  readonly lines: (Line & { t: number })[] = []
  readonly exited: Promise<void>
  #exit: string | undefined
  #waiters: { match: (l: Line) => boolean; resolve: (l: Line & { t: number }) => void }[] = []

  constructor(name: string, ns: string, file: URL, config: object) {
    this.name = name
    // `ip netns exec` execs node in place, so the pid is node's and signals reach it.
    this.process = spawn(
      "ip",
      [
        "netns",
        "exec",
        ns,
        process.execPath,
        "--import",
        "tsx",
        fileURLToPath(file),
        JSON.stringify(config),
      ],
      { cwd: fileURLToPath(new URL("../..", import.meta.url)), stdio: ["pipe", "pipe", "inherit"] },
    )
    this.exited = new Promise((resolve) =>
      this.process.on("exit", (code, signal) => {
        this.#exit = signal ?? `code ${code ?? "?"}`
        resolve()
      }),
    )
    createInterface({ input: this.process.stdout as NodeJS.ReadableStream }).on("line", (text) => {
      let line: Line
      try {
        line = JSON.parse(text) as Line
      } catch {
        process.stderr.write(`${this.name}: ${text}\n`)
        return
      }
      const entry = { ...line, t: performance.now() }
      this.lines.push(entry)
      for (const w of [...this.#waiters]) {
        if (w.match(entry)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1)
          w.resolve(entry)
        }
      }
    })
  }

  /** Every line so far, one per line, with its arrival time (ms since the test started). */
  transcript(): string {
    return this.lines
      .map((l) => `  ${l.t.toFixed(0)} ${JSON.stringify({ ...l, t: undefined })}`)
      .join("\n")
  }

  /** Sends one command line. */
  command(line: Line): void {
    this.process.stdin?.write(`${JSON.stringify(line)}\n`)
  }

  /** The first line (already received or future) that matches. */
  waitFor(
    match: (l: Line) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Line & { t: number }> {
    const found = this.lines.find(match)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: no ${what} within ${timeoutMs} ms; last lines ${JSON.stringify(this.lines.slice(-5))}`,
            ),
          ),
        timeoutMs,
      )
      this.#waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer)
          resolve(l)
        },
      })
      void this.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited (${this.#exit ?? "?"}) before ${what}`))
      })
    })
  }

  /** Sends a command and waits for the next line of type `reply`. */
  async ask(command: Line, reply: string, timeoutMs = 5000): Promise<Line & { t: number }> {
    const seen = this.lines.length
    this.command(command)
    return this.waitFor(
      (l) => l.type === reply && this.lines.indexOf(l as Line & { t: number }) >= seen,
      timeoutMs,
      reply,
    )
  }

  async kill(): Promise<void> {
    if (this.#exit === undefined) this.process.kill("SIGKILL")
    await this.exited
  }
}
