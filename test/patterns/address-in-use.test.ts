/**
 * An endpoint in use: `open()` rejects with PIRATE_ADDRESS_IN_USE naming the endpoint and the
 * option that gave it, leaves the role "new" so that `open()` may be tried again, and the CLI
 * says which option failed in one line on stderr.
 */
import { execFile } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, onTestFinished } from "vitest"
import { Router } from "zeromq"
import { serveMetrics } from "../../lib/metrics.js"
import { LazyPirateServer, ParanoidPirateQueue, Sender } from "../../patterns/index.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const PIRATE = join(ROOT, "bin/pirate.js")
const FREE = "tcp://127.0.0.1:*"

/** A ROUTER holding a free port, released when the test finishes (or by `release()`). */
async function holdPort(): Promise<{ endpoint: string; release(): void }> {
  const router = new Router({ linger: 0 })
  await router.bind(FREE)
  const release = (): void => {
    if (!router.closed) router.close()
  }
  onTestFinished(release)
  return { endpoint: router.lastEndpoint as string, release }
}

function inUse(option: string, endpoint: string): unknown {
  return expect.objectContaining({
    name: "PirateError",
    code: "PIRATE_ADDRESS_IN_USE",
    message: expect.stringContaining(`cannot bind '${option}' to ${endpoint}`) as unknown,
    cause: expect.objectContaining({ code: "EADDRINUSE" }) as unknown,
  })
}

describe("binding an endpoint in use", () => {
  it("LazyPirateServer names 'bind'; a later open() succeeds once the port is free", async () => {
    const held = await holdPort()
    const server = new LazyPirateServer({ bind: held.endpoint, handler: () => null })
    onTestFinished(() => server.close())
    await expect(server.open()).rejects.toEqual(inUse("bind", held.endpoint))
    expect(server.status).toBe("new")
    held.release()
    await server.open()
    expect(server.status).toBe("open")
    expect(server.endpoint).toBe(held.endpoint)
  })

  it("Sender names 'bind'; a later open() succeeds once the port is free", async () => {
    const held = await holdPort()
    const sender = new Sender({ bind: held.endpoint })
    onTestFinished(() => sender.close())
    await expect(sender.open()).rejects.toEqual(inUse("bind", held.endpoint))
    expect(sender.status).toBe("new")
    held.release()
    await sender.open()
    expect(sender.endpoint).toBe(held.endpoint)
  })

  it("ParanoidPirateQueue names 'frontend' or 'backend'", async () => {
    const held = await holdPort()
    const front = new ParanoidPirateQueue({ frontend: held.endpoint, backend: FREE })
    onTestFinished(() => front.close())
    await expect(front.open()).rejects.toEqual(inUse("frontend", held.endpoint))
    const back = new ParanoidPirateQueue({ frontend: FREE, backend: held.endpoint })
    onTestFinished(() => back.close())
    await expect(back.open()).rejects.toEqual(inUse("backend", held.endpoint))
    expect([front.status, back.status]).toEqual(["new", "new"])
  })

  it("serveMetrics names 'port'", async () => {
    const first = await serveMetrics({ port: 0 }, () => "")
    onTestFinished(() => first.close())
    const port = Number(new URL(first.url).port)
    await expect(serveMetrics({ port }, () => "")).rejects.toMatchObject({
      code: "PIRATE_ADDRESS_IN_USE",
      message: expect.stringContaining(`cannot bind 'port' to http://127.0.0.1:${port}`) as unknown,
    })
  })
})

describe("pirate queue with an endpoint in use", () => {
  /** Runs the CLI to its end; resolves with its exit status and stderr lines. */
  function pirate(args: string[]): Promise<{ code: number | null; stderr: string[] }> {
    return new Promise((resolve) => {
      const child = execFile(process.execPath, [PIRATE, ...args], { cwd: ROOT }, (_, __, err) =>
        resolve({ code: child.exitCode, stderr: err.split("\n").filter(Boolean) }),
      )
    })
  }

  it(
    "says which option failed, in one line on stderr, exit status 1",
    { timeout: 30_000 },
    async () => {
      const held = await holdPort()
      const [front, back] = await Promise.all([
        pirate(["queue", "--frontend", held.endpoint, "--backend", FREE]),
        pirate(["queue", "--frontend", FREE, "--backend", held.endpoint]),
      ])
      expect(front.code).toBe(1)
      expect(front.stderr).toHaveLength(1)
      expect(front.stderr[0]).toMatch(
        new RegExp(`^pirate: cannot bind --frontend to ${held.endpoint}: the address is in use`),
      )
      expect(back.code).toBe(1)
      expect(back.stderr).toHaveLength(1)
      expect(back.stderr[0]).toMatch(
        new RegExp(`^pirate: cannot bind --backend to ${held.endpoint}: the address is in use`),
      )
    },
  )

  it("names --metrics-port when the metrics port is in use", { timeout: 30_000 }, async () => {
    const metrics = await serveMetrics({ port: 0 }, () => "")
    onTestFinished(() => metrics.close())
    const port = new URL(metrics.url).port
    const run = await pirate(["queue", "-f", FREE, "-b", FREE, "--metrics-port", port])
    expect(run.code).toBe(1)
    expect(run.stderr).toEqual([
      expect.stringMatching(
        new RegExp(`^pirate: cannot bind --metrics-port to http://127\\.0\\.0\\.1:${port}: `),
      ),
    ])
  })
})
