/**
 * `pirate queue` and `pirate worker`, run as a user would (`node bin/pirate.js …`), with
 * `pirate request` as the client. Every process is killed when its test finishes.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, onTestFinished } from "vitest"
import { Request, Router } from "zeromq"
import { LazyPirateClient, ParanoidPirateQueue } from "../../patterns/index.js"
import { UsageError } from "../../bin/cli.js"
import { command as queueCommand } from "../../bin/commands/queue.js"
import { command as workerCommand } from "../../bin/commands/worker.js"
import { spawnLines, type Spawned } from "../helpers/processes.js"
import { waitFor } from "../helpers/wait.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const PIRATE = join(ROOT, "bin/pirate.js")
const FIXTURES = join(ROOT, "test/fixtures")
const FAST = ["--heartbeat-interval", "100", "--liveness", "3"]

function pirate(args: string[], cwd = ROOT): Spawned {
  return spawnLines(process.execPath, [PIRATE, ...args], {
    cwd,
    name: `pirate ${args.slice(0, 1).join(" ")}`,
  })
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-cli-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Starts `pirate queue` on free ports and reads the endpoints it prints. */
async function startQueue(extra: string[] = []) {
  const queue = pirate([
    "queue",
    "--frontend",
    "tcp://127.0.0.1:*",
    "--backend",
    "tcp://127.0.0.1:*",
    ...FAST,
    ...extra,
  ])
  const line = await queue.waitForLine((l) => l.startsWith("queue "))
  const match = /^queue frontend=(tcp:\/\/\S+) backend=(tcp:\/\/\S+)$/.exec(line)
  expect(match, line).not.toBeNull()
  return { queue, frontend: match?.[1] as string, backend: match?.[2] as string }
}

/** Starts `pirate worker` and waits until its queue has answered. */
async function startWorker(args: string[], cwd = ROOT): Promise<Spawned> {
  const worker = pirate(["worker", ...FAST, ...args], cwd)
  await worker.waitForLine((l) => l.startsWith("worker ready "))
  return worker
}

/** Runs `pirate request` to completion. */
async function request(frontend: string, payload: string) {
  const client = pirate([
    "request",
    "--connect",
    frontend,
    "--timeout",
    "5000",
    "--retries",
    "1",
    payload,
  ])
  const code = await client.exited
  return { code, stdout: client.lines, stderr: client.stderr() }
}

/** Sends SIGTERM and resolves with the exit status. */
async function terminate(p: Spawned): Promise<number | string> {
  p.process.kill("SIGTERM")
  return p.exited
}

describe("pirate queue + pirate worker", () => {
  it(
    "serve `pirate request` (--echo, and --module FILE relative to the working directory), then exit 0 on SIGTERM",
    { timeout: 30_000 },
    async () => {
      const journal = await tempDir()
      // Two queues side by side, so that each request meets one known worker.
      const [echoQueue, moduleQueue] = await Promise.all([
        startQueue(["--journal", journal]),
        startQueue(),
      ])
      const [echo, module] = await Promise.all([
        startWorker(["--connect", echoQueue.backend, "--echo"]),
        startWorker(["--connect", moduleQueue.backend, "--module", "echo-handler.ts"], FIXTURES),
      ])
      expect(echo.lines).toEqual([
        `worker connect=${echoQueue.backend} concurrency=1`,
        `worker ready endpoint=${echoQueue.backend} protocol=ppx`,
      ])

      const [echoed, handled] = await Promise.all([
        request(echoQueue.frontend, '{"a":1,"list":[1,"two",null]}'),
        request(moduleQueue.frontend, '{"a":1}'),
      ])
      expect(echoed).toEqual({ code: 0, stdout: ['{"a":1,"list":[1,"two",null]}'], stderr: "" })
      expect(handled).toEqual({ code: 0, stdout: ['{"echo":{"a":1},"attempt":1}'], stderr: "" })
      expect((await readdir(journal)).length).toBeGreaterThan(0) // --journal opened a LevelDB there

      const processes = [echo, module, echoQueue.queue, moduleQueue.queue]
      expect(await Promise.all(processes.map(terminate))).toEqual([0, 0, 0, 0])
      expect(processes.map((p) => p.stderr())).toEqual(["", "", "", ""])
    },
  )

  it(
    "`pirate worker` lets a running job finish and answer on SIGTERM before exiting 0",
    { timeout: 20_000 },
    async () => {
      const dir = await tempDir()
      // The handler says when it starts (on the worker's stdout), then waits for the worker's
      // shutdown signal before it answers: the answer can only come from the drain in close().
      await writeFile(
        join(dir, "slow.mjs"),
        [
          "export default async function (payload) {",
          '  console.log("job started")',
          '  await new Promise((resolve) => process.once("SIGTERM", resolve))',
          "  await new Promise((resolve) => setTimeout(resolve, 100))",
          "  return { finished: payload }",
          "}",
        ].join("\n"),
      )
      const queue = await ParanoidPirateQueue.open({
        frontend: "tcp://127.0.0.1:*",
        backend: "tcp://127.0.0.1:*",
        heartbeatInterval: 100,
      })
      onTestFinished(() => queue.close())
      const client = new LazyPirateClient({
        connect: queue.frontendEndpoint,
        timeout: 8000,
        retries: 1,
      })
      onTestFinished(() => client.close())
      const worker = await startWorker([
        "--connect",
        queue.backendEndpoint,
        "--module",
        join(dir, "slow.mjs"),
      ])

      const reply = client.request("x")
      reply.catch(() => undefined) // awaited below
      await worker.waitForLine((l) => l === "job started")
      expect(await terminate(worker)).toBe(0)
      expect(await reply).toEqual({ finished: "x" })
      expect(queue.stats()).toMatchObject({ acked: 1, redelivered: 0 })
      // The worker said GOODBYE and left once its job was answered.
      await waitFor(() => expect(queue.stats().workers).toBe(0))
    },
  )

  it("`pirate worker --raw --protocol ppp` echoes bytes as a plain PPP worker", async () => {
    const queue = await ParanoidPirateQueue.open({
      frontend: "tcp://127.0.0.1:*",
      backend: "tcp://127.0.0.1:*",
      heartbeatInterval: 100,
    })
    onTestFinished(() => queue.close())
    const worker = await startWorker([
      "-c",
      queue.backendEndpoint,
      "--echo",
      "--raw",
      "--protocol",
      "ppp",
      "--concurrency",
      "2",
    ])
    expect(worker.lines[0]).toBe(`worker connect=${queue.backendEndpoint} concurrency=2`)
    expect(worker.lines[1]).toBe(`worker ready endpoint=${queue.backendEndpoint} protocol=ppp`)
    expect(queue.workers()).toEqual([expect.objectContaining({ protocol: "ppp", credit: 1 })])

    const req = new Request({ linger: 0, receiveTimeout: 5000 })
    onTestFinished(() => req.close())
    req.connect(queue.frontendEndpoint)
    const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80])
    await req.send(bytes)
    expect(await req.receive()).toEqual([bytes])
    expect(await terminate(worker)).toBe(0)
  })

  it(
    "exit 2 for usage errors, 1 when they cannot run, 0 for --help; one line on stderr",
    { timeout: 30_000 },
    async () => {
      const dir = await tempDir()
      await writeFile(join(dir, "broken.mjs"), 'throw new Error("cannot start:\\nsecond line")\n')
      const taken = new Router({ linger: 0 })
      onTestFinished(() => taken.close())
      await taken.bind("tcp://127.0.0.1:*")
      const runs: [string[], number, RegExp][] = [
        [["queue", "--frontend", "tcp://127.0.0.1:*"], 2, /^pirate: --backend EP is required$/],
        [
          ["worker", "--connect", "tcp://127.0.0.1:1"],
          2,
          /^pirate: a handler is required: --echo or --module FILE$/,
        ],
        [
          ["queue", "-f", taken.lastEndpoint as string, "-b", "tcp://127.0.0.1:*"],
          1,
          /^pirate: .*in use/i,
        ],
        [
          ["worker", "-c", "tcp://127.0.0.1:1", "--module", join(dir, "broken.mjs")],
          1,
          /^pirate: --module .*broken\.mjs failed to load: cannot start:$/,
        ],
      ]
      const help = pirate(["worker", "--help"])
      const results = await Promise.all(
        runs.map(async ([args]) => {
          const p = pirate(args)
          return {
            code: await p.exited,
            stdout: p.lines,
            stderr: p.stderr().split("\n").filter(Boolean),
          }
        }),
      )
      results.forEach((result, i) => {
        const [args, code, message] = runs[i] as [string[], number, RegExp]
        expect({ args, ...result }).toMatchObject({
          code,
          stdout: [],
          stderr: [expect.stringMatching(message)],
        })
      })
      expect(await help.exited).toBe(0)
      expect(help.lines.join("\n")).toBe(workerCommand.help.trimEnd())
    },
  )
})

describe("their arguments", () => {
  const ep = "tcp://127.0.0.1:1"
  it.each([
    [["--frontend", "tcp://127.0.0.1:*"], /^--backend EP is required$/],
    [["--backend", "tcp://127.0.0.1:*"], /^--frontend EP is required$/],
    [
      ["--frontend", "nowhere", "--backend", "tcp://127.0.0.1:*"],
      /^--frontend must be a ZeroMQ endpoint/,
    ],
    [
      ["-f", ep, "-b", ep, "--liveness", "abc"],
      /^--liveness must be a non-negative integer, got "abc"$/,
    ],
    [
      ["-f", ep, "-b", ep, "--heartbeat-interval", "0"],
      /^--heartbeat-interval must be a positive integer, got 0$/,
    ],
    [
      ["-f", ep, "-b", ep, "--max-attempts", "0"],
      /^--max-attempts must be a positive integer, got 0$/,
    ],
    [["-f", ep, "-b", ep, "extra"], /Unexpected argument 'extra'/],
    [["-f", ep, "-b", ep, "--bogus"], /Unknown option '--bogus'/],
  ])("pirate queue %j → usage error", async (argv, message) => {
    const run = queueCommand.run(argv)
    await expect(run).rejects.toBeInstanceOf(UsageError)
    await expect(run).rejects.toThrow(message)
  })

  it.each([
    [["--echo"], /^--connect EP is required$/],
    [["--connect", ep], /^a handler is required: --echo or --module FILE$/],
    [
      ["--connect", ep, "--echo", "--module", "x.js"],
      /^give either --echo or --module FILE, not both$/,
    ],
    [
      ["-c", ep, "--echo", "--concurrency", "0"],
      /^--concurrency must be a positive integer, got 0$/,
    ],
    [
      ["-c", ep, "--echo", "--liveness=-1"],
      /^--liveness must be a non-negative integer, got "-1"$/,
    ],
    [["-c", ep, "--echo", "--protocol", "amqp"], /^--protocol must be ppx or ppp, got "amqp"$/],
    [["-c", "localhost:5556", "--echo"], /^--connect must be a ZeroMQ endpoint/],
    [["-c", ep, "--module", "missing.js"], /^--module missing\.js: no such file/],
    [["-c", ep, "--echo", "stray"], /Unexpected argument 'stray'/],
  ])("pirate worker %j → usage error", async (argv, message) => {
    const run = workerCommand.run(argv)
    await expect(run).rejects.toBeInstanceOf(UsageError)
    await expect(run).rejects.toThrow(message)
  })

  it("pirate worker --module FILE without a default export function → usage error", async () => {
    const dir = await tempDir()
    await writeFile(join(dir, "no-default.mjs"), "export const handler = () => 1\n")
    await writeFile(join(dir, "not-a-function.mjs"), "export default 42\n")
    for (const [file, found] of [
      ["no-default.mjs", "none"],
      ["not-a-function.mjs", "number"],
    ]) {
      const run = workerCommand.run(["-c", ep, "--module", join(dir, file as string)])
      await expect(run).rejects.toBeInstanceOf(UsageError)
      await expect(run).rejects.toThrow(`has no default export function (found ${found as string})`)
    }
  })

  it("have full --help texts", () => {
    expect(queueCommand.help).toMatch(/^Usage: pirate queue --frontend EP --backend EP/)
    for (const flag of [
      "--journal",
      "--heartbeat-interval",
      "--liveness",
      "--max-attempts",
      "Exit status",
    ]) {
      expect(queueCommand.help).toContain(flag)
    }
    expect(workerCommand.help).toMatch(/^Usage: pirate worker --connect EP/)
    for (const flag of [
      "--echo",
      "--module",
      "--concurrency",
      "--raw",
      "--heartbeat-interval",
      "--liveness",
      "Exit status",
    ]) {
      expect(workerCommand.help).toContain(flag)
    }
  })
})
