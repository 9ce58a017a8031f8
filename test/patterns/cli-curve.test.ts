/**
 * CURVE and metrics on the command line: `pirate keygen`, `--curve-keys`, `--curve-allow`,
 * `--curve-server-key` and `--metrics-port`, run as a user would.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, onTestFinished } from "vitest"
import { spawnLines, type Spawned } from "../helpers/processes.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const PIRATE = join(ROOT, "bin/pirate.js")
const FAST = ["--heartbeat-interval", "100", "--liveness", "3"]

function pirate(args: string[]): Spawned {
  return spawnLines(process.execPath, [PIRATE, ...args], {
    cwd: ROOT,
    name: `pirate ${args[0] ?? ""}`,
  })
}

describe("pirate with CURVE keys and metrics", () => {
  it(
    "keygen writes key files; an allowed worker and client get through the queue; metrics are served",
    { timeout: 40_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), "pirate-curve-cli-"))
      onTestFinished(() => rm(dir, { recursive: true, force: true }))
      const keys = ["queue", "worker", "client"].map((n) => join(dir, `${n}.keys`))
      const publics: string[] = []
      for (const file of keys) {
        const gen = pirate(["keygen", "--out", file])
        expect(await gen.exited).toBe(0)
        publics.push(gen.lines[0] ?? "")
        expect((await stat(file)).mode & 0o777).toBe(0o600)
      }
      const pair = JSON.parse(await readFile(keys[0]!, "utf8")) as { publicKey: string }
      expect(pair.publicKey).toBe(publics[0])
      const again = pirate(["keygen", "--out", keys[0]!])
      expect(await again.exited).toBe(1) // never overwrites a key file
      const allow = join(dir, "allowed.txt")
      await writeFile(allow, `# workers and clients\n${publics[1]}\n${publics[2]}\n`)

      const queue = pirate([
        "queue",
        "-f",
        "tcp://127.0.0.1:*",
        "-b",
        "tcp://127.0.0.1:*",
        "--curve-keys",
        keys[0]!,
        "--curve-allow",
        allow,
        "--metrics-port",
        "0",
        ...FAST,
      ])
      const line = await queue.waitForLine((l) => l.startsWith("queue frontend="))
      const [, frontend, backend] = /^queue frontend=(\S+) backend=(\S+)$/.exec(line) ?? []
      const metricsLine = await queue.waitForLine((l) => l.startsWith("queue metrics="))
      const worker = pirate([
        "worker",
        "-c",
        backend!,
        "--echo",
        "--curve-keys",
        keys[1]!,
        "--curve-server-key",
        publics[0]!,
        ...FAST,
      ])
      await worker.waitForLine((l) => l.startsWith("worker ready "))

      const client = pirate([
        "request",
        "-c",
        frontend!,
        "-t",
        "5000",
        "-r",
        "1",
        "--curve-keys",
        keys[2]!,
        "--curve-server-key",
        publics[0]!,
        '{"secret":1}',
      ])
      expect(await client.exited).toBe(0)
      expect(client.lines).toEqual(['{"secret":1}'])

      // A client without keys gets no answer.
      const plain = pirate(["request", "-c", frontend!, "-t", "300", "-r", "1", "hello"])
      expect(await plain.exited).toBe(1)

      const res = await fetch(metricsLine.slice("queue metrics=".length))
      const body = await res.text()
      expect(body).toMatch(/pirate_queue_replies_total 1\b/)
      expect(body).toMatch(/pirate_queue_workers 1\b/)

      for (const p of [worker, queue]) {
        p.process.kill("SIGTERM")
        expect(await p.exited).toBe(0)
      }
    },
  )

  it("refuses inconsistent CURVE options with one line and exit status 2", async () => {
    const p = pirate([
      "worker",
      "-c",
      "tcp://127.0.0.1:1",
      "--echo",
      "--curve-server-key",
      "x".repeat(40),
    ])
    expect(await p.exited).toBe(2)
    expect(p.stderr().trim().split("\n")).toHaveLength(1)
    expect(p.stderr()).toMatch(/--curve-keys/)
  })
})
