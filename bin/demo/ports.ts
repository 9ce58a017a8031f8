/**
 * Addresses of a sender pair on this machine. A pair's addresses must be known before either
 * sender binds (each names the other's), and a restarted sender binds them again:
 * `tcp://127.0.0.1:*` cannot do that, so the ports are picked free by the system beforehand.
 * `pirate demo --pair` uses them, and so do the pair's tests and benchmarks.
 */
import { createServer, type AddressInfo } from "node:net"
import { join } from "node:path"

/** `n` distinct TCP ports on 127.0.0.1 that the system had free a moment ago. */
export async function freePorts(n: number): Promise<number[]> {
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

/** Where one sender of a pair keeps its journal and binds. */
export interface PairNodeAddresses {
  role: "primary" | "backup"
  /** `<dir>/primary` or `<dir>/backup`. */
  journal: string
  /** The workers' endpoint. */
  bind: string
  /** The pair socket's own address, and the peer's. */
  pairBind: string
  peer: string
}

/**
 * The journals (in `dir`) and the addresses (on free ports of 127.0.0.1) of a pair's two
 * senders, each naming the other's pair address as its peer.
 */
export async function pairAddresses(
  dir: string,
): Promise<{ primary: PairNodeAddresses; backup: PairNodeAddresses }> {
  const [pw, pp, bw, bp] = (await freePorts(4)) as [number, number, number, number]
  const at = (port: number): string => `tcp://127.0.0.1:${port}`
  return {
    primary: {
      role: "primary",
      journal: join(dir, "primary"),
      bind: at(pw),
      pairBind: at(pp),
      peer: at(bp),
    },
    backup: {
      role: "backup",
      journal: join(dir, "backup"),
      bind: at(bw),
      pairBind: at(bp),
      peer: at(pp),
    },
  }
}
