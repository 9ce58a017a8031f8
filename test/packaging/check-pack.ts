/**
 * `npm run check:pack` (CI runs it after `npm ci`): packs the package as `npm publish` would
 * (`npm pack` runs prepack: a clean build of dist/), checks the tarball's list with
 * pack-rules.ts, then installs that tarball into a temporary project next to the runtime
 * dependencies only (no tsx, no TypeScript sources) and uses it as a user does: imports both
 * entry points from ESM and through require(), runs `pirate --version` and a short
 * `pirate demo`, and type-checks a TypeScript file against the published .d.ts with @types/node.
 * Exits 1 with one line per problem.
 */
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { packProblems, type PackageManifest } from "./pack-rules.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const run = promisify(execFile)

interface PackResult {
  filename: string
  files: { path: string }[]
}

/** Names the package root must export (DESIGN.md's public contract). */
const ROOT_EXPORTS = [
  "LazyPirateClient",
  "LazyPirateServer",
  "Sender",
  "Worker",
  "ParanoidPirateQueue",
  "LevelJournal",
  "MemoryJournal",
  "PirateError",
  "RequestTimeoutError",
  "RetryError",
  "UnrecoverableError",
]

const CONSUMER_TS = `import { Sender, Worker, PirateError, type WorkerOptions } from "zeromq-pirate"
import { MemoryJournal } from "zeromq-pirate/lib"

const options: WorkerOptions = {
  connect: ["tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557"],
  handler: async (payload: unknown) => payload,
}
export async function main(): Promise<void> {
  await using sender = await Sender.open({ bind: "tcp://127.0.0.1:*", journal: new MemoryJournal() })
  const id: string = await sender.send({ hello: "world" })
  const worker = new Worker(options)
  worker.on("sender:lost", ({ endpoint }) => endpoint.length)
  void id
  void (new PirateError("PIRATE_CLOSED", "closed") instanceof Error)
}
`

const CONSUMER_TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    lib: ["ES2023", "ESNext.Disposable"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    types: ["node"],
    strict: true,
    noEmit: true,
    // Every .d.ts the consumer reaches is checked: the package's, and those it imports.
    skipLibCheck: false,
  },
  files: ["index.ts"],
}

async function main(): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), "pirate-pack-"))
  try {
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", work], {
      cwd: ROOT,
      maxBuffer: 64 * 1024 * 1024,
    })
    const [pack] = JSON.parse(stdout) as PackResult[]
    if (pack === undefined) throw new Error("npm pack listed no package")
    const files = pack.files.map((f) => f.path)

    // Install: the tarball unpacked as node_modules/zeromq-pirate of an empty project.
    const project = join(work, "project")
    const installed = join(project, "node_modules", "zeromq-pirate")
    mkdirSync(installed, { recursive: true })
    await run("tar", ["-xzf", join(work, pack.filename), "-C", installed, "--strip-components=1"])
    const manifest = JSON.parse(
      readFileSync(join(installed, "package.json"), "utf8"),
    ) as PackageManifest & { version: string; dependencies?: Record<string, string> }

    const problems = packProblems(files, manifest, (path) =>
      readFileSync(join(installed, path), "utf8"),
    )
    if (problems.length > 0) return report(problems)

    // The runtime dependencies (and the @types/node a TypeScript user has), nothing else.
    for (const name of [...Object.keys(manifest.dependencies ?? {}), "@types/node"]) {
      mkdirSync(dirname(join(project, "node_modules", name)), { recursive: true })
      symlinkSync(join(ROOT, "node_modules", name), join(project, "node_modules", name), "dir")
    }
    const node = (args: string[]) =>
      run(process.execPath, args, {
        cwd: project,
        timeout: 120_000,
        env: { ...process.env, NODE_OPTIONS: "" },
      })
    const expected = JSON.stringify(ROOT_EXPORTS)
    const checkExports = `const missing = ${expected}.filter((n) => typeof m[n] !== "function"); if (missing.length) throw new Error("missing exports: " + missing.join(", "))`
    await step(problems, "import zeromq-pirate and zeromq-pirate/lib", () =>
      node([
        "--input-type=module",
        "-e",
        `const m = await import("zeromq-pirate"); await import("zeromq-pirate/lib"); ${checkExports}`,
      ]),
    )
    await step(problems, 'require("zeromq-pirate")', () =>
      node(["--no-warnings", "-e", `const m = require("zeromq-pirate"); ${checkExports}`]),
    )
    const bin = join(installed, "bin", "pirate.js")
    await step(problems, "pirate --version", async () => {
      const { stdout: version } = await node([bin, "--version"])
      if (version.trim() !== manifest.version) {
        throw new Error(`printed ${JSON.stringify(version.trim())}, not ${manifest.version}`)
      }
    })
    await step(problems, "pirate demo", () => node([bin, "demo", "--messages", "300", "--quiet"]))
    writeFileSync(join(project, "index.ts"), CONSUMER_TS)
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify(CONSUMER_TSCONFIG, null, 2))
    await step(problems, "tsc against the published types", () =>
      node([join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", project]),
    )
    if (problems.length > 0) return report(problems)

    console.log(
      `check-pack: ${pack.filename}, ${files.length} files: entry points, bin, README (its links), LICENSE, ` +
        `CHANGELOG, docs; no source map without its sources; installed, it imports, requires, ` +
        `runs pirate --version and pirate demo, and type-checks`,
    )
    return 0
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

async function step(problems: string[], name: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn()
  } catch (err) {
    const {
      stdout = "",
      stderr = "",
      message,
    } = err as Error & { stdout?: string; stderr?: string }
    problems.push(`${name} failed: ${[stdout, stderr].join("").trim() || message}`)
  }
}

function report(problems: string[]): number {
  console.error(`check-pack: the package is not fit to publish:\n  ${problems.join("\n  ")}`)
  return 1
}

process.exitCode = await main()
