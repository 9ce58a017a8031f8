/**
 * Network namespaces joined by veth pairs, for partition tests. Everything lives inside
 * namespaces this module creates (named with the pid and a random suffix, so parallel runs do
 * not clash): the sender namespace holds a bridge with the sender's address and one veth port per
 * worker namespace; nothing is added to the root namespace, and no traffic leaves these
 * namespaces. Cutting a worker's link sets its bridge port down (packets dropped both ways, no
 * TCP reset: only heartbeats can tell).
 *
 * {@link createNetwork} is the general form: named hosts, each in its own namespace, all on one
 * bridge in a hub namespace (every host reaches every other). A host can be cut from everyone
 * (its bridge port down), or only the traffic between two hosts blocked ({@link block}).
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

/**
 * Namespaces to delete, newest first, at `destroy()` or when the test process exits without
 * running its cleanup hooks.
 */
function namespaces(): { add: (ns: string) => void; destroy: () => void } {
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
  process.on("exit", destroy)
  return {
    add: (ns) => {
      ip("netns", "add", ns)
      created.push(ns)
      ip("-n", ns, "link", "set", "lo", "up")
    },
    destroy,
  }
}

/** A namespace and its address on the bridge. */
export interface Host {
  ns: string
  address: string
}

/**
 * Blocks the traffic between two hosts only, both ways: a `blackhole` route to each one's /32 in
 * the other's namespace (both stay reachable by everyone else). Each route meets only its own
 * host's outgoing packets, which it drops without a trace on the wire: the peer gets no RST and
 * no ICMP, and an established TCP connection just goes quiet (the kernel keeps retransmitting
 * into the route and tells the application nothing), so only heartbeats can tell, as on a broken
 * link. `blackhole` is the route type whose meaning is "discard silently" (`unreachable` and
 * `prohibit` are meant to answer forwarded packets with ICMP errors; for a host's own packets all
 * three refuse alike). A new `connect()` to the blocked address fails at once in the host's own
 * kernel (EINVAL), which a ZeroMQ socket retries at its reconnect interval, as for a peer that is
 * down; so the link comes back within a reconnect interval of {@link unblock}.
 */
export function block(a: Host, b: Host): void {
  ip("-n", a.ns, "route", "add", "blackhole", `${b.address}/32`)
  ip("-n", b.ns, "route", "add", "blackhole", `${a.address}/32`)
}

/** Removes what {@link block} added. */
export function unblock(a: Host, b: Host): void {
  ip("-n", a.ns, "route", "del", "blackhole", `${b.address}/32`)
  ip("-n", b.ns, "route", "del", "blackhole", `${a.address}/32`)
}

export interface Network<Name extends string> {
  /** The namespace of the bridge (no address, no process). */
  hubNs: string
  hosts: Record<Name, Host>
  /** Sets a host's bridge port down: it is cut from every other host. */
  cut(host: Name): void
  /** Sets it up again. */
  heal(host: Name): void
  /** Blocks only the traffic between two hosts ({@link block}). */
  block(a: Name, b: Name): void
  /** Removes that block. */
  unblock(a: Name, b: Name): void
  /** Deletes the namespaces (and with them the bridge and veths). Idempotent; never throws. */
  destroy(): void
}

/**
 * Creates one namespace per name, at 10.203.0.1, .2, … in the order given, each joined by a veth
 * pair to a bridge in a hub namespace of its own. Call `destroy()` when done.
 */
export function createNetwork<Name extends string>(names: readonly Name[]): Network<Name> {
  if (names.length === 0 || names.length > 250) throw new RangeError("1 to 250 hosts")
  const tag = `${process.pid}-${randomBytes(2).toString("hex")}`
  const hubNs = `pirate-${tag}-hub`
  const ns = namespaces()
  try {
    ns.add(hubNs)
    ip("-n", hubNs, "link", "add", "br0", "type", "bridge")
    ip("-n", hubNs, "link", "set", "br0", "up")
    const hosts = {} as Record<Name, Host>
    const ports = {} as Record<Name, string>
    names.forEach((name, i) => {
      const host = `pirate-${tag}-h${i}`
      ns.add(host)
      const port = `vh${i}`
      ip("-n", hubNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host)
      ip("-n", hubNs, "link", "set", port, "master", "br0")
      ip("-n", hubNs, "link", "set", port, "up")
      const address = `10.203.0.${i + 1}`
      ip("-n", host, "addr", "add", `${address}/24`, "dev", "eth0")
      ip("-n", host, "link", "set", "eth0", "up")
      hosts[name] = { ns: host, address }
      ports[name] = port
    })
    return {
      hubNs,
      hosts,
      cut: (name) => ip("-n", hubNs, "link", "set", ports[name], "down"),
      heal: (name) => ip("-n", hubNs, "link", "set", ports[name], "up"),
      block: (a, b) => block(hosts[a], hosts[b]),
      unblock: (a, b) => unblock(hosts[a], hosts[b]),
      destroy: ns.destroy,
    }
  } catch (err) {
    ns.destroy()
    throw err
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
  const ns = namespaces()
  const destroy = ns.destroy
  try {
    ns.add(senderNs)
    ip("-n", senderNs, "link", "add", "br0", "type", "bridge")
    ip("-n", senderNs, "addr", "add", "10.203.0.1/24", "dev", "br0")
    ip("-n", senderNs, "link", "set", "br0", "up")
    const list: WorkerNet[] = []
    for (let i = 0; i < workers; i++) {
      const workerNs = `pirate-${tag}-w${i}`
      ns.add(workerNs)
      const port = `vw${i}`
      // Created inside the sender namespace, the peer straight in the worker's: the root
      // namespace never sees either end.
      ip(
        "-n",
        senderNs,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        workerNs,
      )
      ip("-n", senderNs, "link", "set", port, "master", "br0")
      ip("-n", senderNs, "link", "set", port, "up")
      const address = `10.203.0.${i + 2}`
      ip("-n", workerNs, "addr", "add", `${address}/24`, "dev", "eth0")
      ip("-n", workerNs, "link", "set", "eth0", "up")
      list.push({ ns: workerNs, address, port })
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
