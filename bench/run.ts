/**
 * Runs every benchmark, one after another: `npm run bench` (or `npx tsx bench/run.ts`).
 *
 *   npm run bench                          # full runs (minutes; see docs/benchmarks.md)
 *   BENCH_QUICK=1 npm run bench            # reduced runs, under a minute in all
 *   npm run bench -- journal peers         # only these scripts (by name)
 *
 * env: BENCH_QUICK=1; BENCH_TIMEOUT_S (per script: 600, journal and peers 1200; quick 120). Every other variable (N,
 * SIZE, RUNS…) goes through to the scripts; with BENCH_QUICK=1 the runner adds each script's
 * reduced settings (below) where the variable is not set already.
 *
 * Each script runs as a child process (node --import tsx) in a process group of its own, which is
 * killed (SIGTERM, then SIGKILL) at its timeout and on Ctrl-C. Its JSON lines (one object per
 * line) go, tagged with `script`, to bench/results/<timestamp>.jsonl and its stderr to
 * bench/results/<timestamp>.stderr.log; at the end the summary lines become a Markdown table on
 * stdout (also written to bench/results/<timestamp>.md). Progress goes to stderr: a bar on a
 * terminal, plain lines otherwise. A script that fails (exit code ≠ 0, or its timeout) is a row of
 * the table with its exit code, and the tail of its stderr follows the table; then the runner
 * exits 1. The peers benchmark runs only when one of its servers answers on loopback.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, mkdirSync, openSync, writeSync, closeSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import cliProgress from "cli-progress"
import { PEERS, SETUP_HINT, probePeers } from "./peers/probe.js"

const QUICK = process.env["BENCH_QUICK"] === "1"
const TIMEOUT_S =
  process.env["BENCH_TIMEOUT_S"] !== undefined ? Number(process.env["BENCH_TIMEOUT_S"]) : undefined
const ROOT = fileURLToPath(new URL("..", import.meta.url))
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url))
/** Lines of a failed script's stderr shown after the table. */
const TAIL_LINES = 15

interface Script {
  name: string
  /** Relative to bench/. */
  file: string
  /** The reduced run's settings (each script's own knobs), where the environment has none. */
  quick: Record<string, string>
  /** Its time limit (s) in a full run, unless BENCH_TIMEOUT_S says otherwise. @defaultValue 600 */
  timeoutS?: number
  /** Why it cannot run now, if it cannot (a skip, not a failure). */
  skip?(): Promise<string | undefined>
}

const SCRIPTS: Script[] = [
  // No BENCH_QUICK of its own: fewer and shorter runs.
  { name: "lazy-pirate", file: "lazy-pirate.ts", quick: { N: "1000", RUNS: "2", WARMUP: "200" } },
  // Its BENCH_QUICK (N 10000, RUNS 2, 3 failovers) with smaller N and fewer failovers.
  {
    name: "paranoid-pirate",
    file: "paranoid-pirate.ts",
    quick: { BENCH_QUICK: "1", N: "5000", FAILOVER_RUNS: "2" },
  },
  // No BENCH_QUICK: one run of 5000, at most 100 synced batches per case.
  {
    name: "journal-raw",
    file: "journal-raw.ts",
    quick: { N: "5000", RUNS: "1", SYNC_BATCHES: "100" },
  },
  // Its BENCH_QUICK (N 10000, RUNS 3, WARMUP 2000, no restart case), smaller still.
  {
    name: "journal",
    file: "journal.ts",
    quick: { BENCH_QUICK: "1", N: "5000", RUNS: "2", WARMUP: "1000" },
    // The 1M-message cases (restart, offline publish and drain) take minutes.
    timeoutS: 1200,
    skip: () =>
      Promise.resolve(
        existsSync(new URL("./journal.ts", import.meta.url))
          ? undefined
          : "bench/journal.ts is not there",
      ),
  },
  // Its BENCH_QUICK (4 KiB and 1 MiB, RUNS 2, 32 MiB per case).
  {
    name: "payload-sizes",
    file: "payload-sizes.ts",
    quick: { BENCH_QUICK: "1" },
    timeoutS: 1200,
  },
  // Its BENCH_QUICK (N 10000, RUNS 2, WARMUP 2000, LEAD_MS 1000).
  { name: "scheduling", file: "scheduling.ts", quick: { BENCH_QUICK: "1" } },
  // Its BENCH_QUICK (N 10000, RUNS 2, WARMUP 2000).
  { name: "queues", file: "queues.ts", quick: { BENCH_QUICK: "1" } },
  // Its BENCH_QUICK (N 10000, RUNS 2, WARMUP 2000, KILLS 3, CATCHUP 100000).
  { name: "pair", file: "pair.ts", quick: { BENCH_QUICK: "1" } },
  // 1 GiB of pending 1 MiB payloads; 128 MiB in a reduced run.
  { name: "journal-open", file: "journal-open.ts", quick: { TOTAL_MB: "128", RUNS: "2" } },
  {
    name: "peers",
    file: "peers/work-queue.ts",
    quick: { BENCH_QUICK: "1" },
    // Three phases for 12 cases, 5 rounds: minutes when the brokers are slow.
    timeoutS: 1200,
    skip: async () => {
      const up = await probePeers()
      if (up.some((p) => p.up)) return undefined
      const ports = PEERS.map((p) => p.port).join(", ")
      return `no peer server answers on 127.0.0.1 (${ports}); ${SETUP_HINT}`
    },
  },
]

/** One JSON line of a script. */
type Line = Record<string, unknown>

interface Outcome {
  script: Script
  status: "ok" | "failed" | "skipped"
  /** Exit code, or the signal / "timeout" that ended it. */
  exit?: string
  reason?: string
  ms: number
  lines: Line[]
  stderrTail: string[]
}

// ---------------------------------------------------------------------------------------------
// progress

interface Progress {
  start(script: Script, index: number): void
  tick(elapsedMs: number, lines: number): void
  done(outcome: Outcome): void
  stop(): void
}

function progress(total: number): Progress {
  const fancy = process.stdout.isTTY && process.stderr.isTTY
  let current = ""
  let index = 0
  if (fancy) {
    const bar = new cliProgress.SingleBar(
      {
        format:
          "bench [{bar}] {value}/{total} scripts | {script} | {elapsed} s | {lines} JSON lines",
        hideCursor: true,
        clearOnComplete: false,
        stream: process.stderr,
      },
      cliProgress.Presets.shades_classic,
    )
    bar.start(total, 0, { script: "", elapsed: "0", lines: 0 })
    return {
      start(script, i) {
        current = script.name
        index = i
        bar.update(i, { script: current, elapsed: "0", lines: 0 })
      },
      tick(elapsedMs, lines) {
        bar.update(index, { script: current, elapsed: (elapsedMs / 1000).toFixed(0), lines })
      },
      done(o) {
        bar.update(index + 1, {
          script: `${o.script.name} ${o.status}`,
          elapsed: (o.ms / 1000).toFixed(1),
          lines: o.lines.length,
        })
      },
      stop() {
        bar.stop()
      },
    }
  }
  let lastNote = 0
  const say = (s: string): void => void process.stderr.write(`[bench] ${s}\n`)
  return {
    start(script, i) {
      current = script.name
      lastNote = 0
      say(`${i + 1}/${total} ${script.file}: started`)
    },
    tick(elapsedMs, lines) {
      if (elapsedMs - lastNote < 30_000) return
      lastNote = elapsedMs
      say(`${current}: ${(elapsedMs / 1000).toFixed(0)} s, ${lines} JSON lines`)
    },
    done(o) {
      const what = o.status === "skipped" ? `skipped (${o.reason ?? "?"})` : o.status
      const exit = o.status === "failed" ? `, exit ${o.exit ?? "?"}` : ""
      say(
        `${o.script.file}: ${what}${exit} in ${(o.ms / 1000).toFixed(1)} s, ${o.lines.length} JSON lines`,
      )
    },
    stop() {},
  }
}

// ---------------------------------------------------------------------------------------------
// running one script

let running: ChildProcess | undefined

/** Signals the script's whole process group (its own children too); ignores a gone group. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

function runScript(
  script: Script,
  stamp: { jsonl: number; stderr: number },
  onTick: (elapsedMs: number, lines: number) => void,
): Promise<Outcome> {
  const start = performance.now()
  const timeoutS = TIMEOUT_S ?? (QUICK ? 120 : (script.timeoutS ?? 600))
  const env: NodeJS.ProcessEnv = { ...(QUICK ? script.quick : {}), ...process.env }
  const child = spawn(process.execPath, ["--import", "tsx", `bench/${script.file}`], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // a process group of its own: killed as a whole
  })
  running = child
  const lines: Line[] = []
  const tail: string[] = []
  const splitter = (onLine: (line: string) => void): ((chunk: Buffer) => void) => {
    let rest = ""
    return (chunk) => {
      rest += chunk.toString("utf8")
      let nl: number
      while ((nl = rest.indexOf("\n")) >= 0) {
        onLine(rest.slice(0, nl))
        rest = rest.slice(nl + 1)
      }
    }
  }
  child.stdout.on(
    "data",
    splitter((text) => {
      const line = text.trim()
      if (!line.startsWith("{")) return // the scripts' own tables and notes
      let parsed: unknown
      try {
        parsed = JSON.parse(line)
      } catch {
        return
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return
      const tagged = { script: script.name, ...(parsed as Line) }
      lines.push(tagged)
      writeSync(stamp.jsonl, `${JSON.stringify(tagged)}\n`)
    }),
  )
  child.stderr.on(
    "data",
    splitter((text) => {
      writeSync(stamp.stderr, `[${script.name}] ${text}\n`)
      tail.push(text)
      if (tail.length > TAIL_LINES) tail.shift()
    }),
  )
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    tail.push(`bench: ${script.file} timed out after ${timeoutS} s: killed`)
    signalGroup(child, "SIGTERM")
    setTimeout(() => signalGroup(child, "SIGKILL"), 5000).unref()
  }, timeoutS * 1000)
  const ticker = setInterval(() => onTick(performance.now() - start, lines.length), 1000)
  return new Promise((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error): void => {
      clearTimeout(timer)
      clearInterval(ticker)
      running = undefined
      // Whatever the script left behind in its group goes with it.
      signalGroup(child, "SIGKILL")
      if (error) tail.push(error.message)
      const ok = code === 0 && !timedOut && error === undefined
      resolve({
        script,
        status: ok ? "ok" : "failed",
        exit: timedOut ? "timeout" : String(code ?? signal ?? "spawn error"),
        ms: performance.now() - start,
        lines,
        stderrTail: tail,
      })
    }
    child.once("error", (err) => finish(null, null, err))
    // "close": the exit and the end of its output (a grandchild holding the pipes is killed above
    // on exit, so "close" follows).
    child.once("exit", (code, signal) => {
      child.once("close", () => finish(code, signal))
      signalGroup(child, "SIGKILL")
    })
  })
}

// ---------------------------------------------------------------------------------------------
// the table

function isSummary(l: Line): boolean {
  // The scripts mark their summary lines in three ways.
  return (
    l["summary"] === true ||
    l["summary"] === "median" ||
    l["median"] === true ||
    l["stat"] === "median"
  )
}

function str(v: unknown, fallback: string): string {
  return typeof v === "string"
    ? v
    : typeof v === "number" || typeof v === "boolean"
      ? String(v)
      : fallback
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined
}

function fmt(v: number | undefined, digits = 0): string {
  return v === undefined ? "—" : v.toLocaleString("en-US", { maximumFractionDigits: digits })
}

function cell(s: string): string {
  return s.replaceAll("|", "/").replaceAll("\n", " ")
}

function caseLabel(l: Line): string {
  const parts: string[] = []
  if (typeof l["codec"] === "string") parts.push(l["codec"])
  const size = num(l["size"])
  if (l["bench"] === "payload-sizes" && size !== undefined)
    parts.push(size >= 1024 * 1024 ? `${size / 1024 / 1024} MiB` : `${size / 1024} KiB`)
  if (num(l["batch"]) !== undefined) parts.push(`batch ${String(l["batch"])}`)
  if (typeof l["sync"] === "boolean") parts.push(l["sync"] ? "sync" : "no sync")
  const name = typeof l["case"] === "string" ? l["case"] : "?"
  // The phase (publish-only, drain, end-to-end) unless the case name says it already.
  const phase =
    typeof l["phase"] === "string" && !name.startsWith(l["phase"]) ? `${l["phase"]}: ` : ""
  return parts.length > 0 ? `${phase}${name} (${parts.join(", ")})` : `${phase}${name}`
}

/** The ratios a line carries, each with what it is relative to. */
function ratios(l: Line): string {
  const out: string[] = []
  const r = num(l["ratio"])
  if (r !== undefined) {
    const base = typeof l["baseline"] === "string" ? ` × ${l["baseline"]}` : ""
    const perRun = num(l["runRatioMedian"])
    out.push(`${fmt(r, 3)}${base}${perRun !== undefined ? ` (per run ${fmt(perRun, 3)})` : ""}`)
  }
  const p50 = num(l["ratio_p50"])
  if (p50 !== undefined) out.push(`p50 ${fmt(p50, 3)} × zeromq-req-rep`)
  const best = num(l["vsBestPeer"])
  if (best !== undefined) {
    const perRun = num(l["vsBestPeerRun"])
    out.push(
      `${fmt(best, 2)} × the best peer, ${str(l["bestPeer"], "?")}${perRun !== undefined ? ` (per run ${fmt(perRun, 2)})` : ""}`,
    )
  }
  const ceiling = num(l["vsCeiling"])
  if (ceiling !== undefined) out.push(`${fmt(ceiling, 3)} × ${str(l["ceiling"], "ceiling")}`)
  for (const [key, label] of [
    ["pirateOs", "zeromq-pirate os"],
    ["pirateFsync", "zeromq-pirate fsync"],
  ] as const) {
    const v = num(l[`${key}Ratio`])
    const perRun = num(l[`${key}RunRatio`])
    if (v !== undefined)
      out.push(
        `${label} ÷ this ${fmt(v, 2)}${perRun !== undefined ? ` (per run ${fmt(perRun, 2)})` : ""}`,
      )
  }
  return out.length > 0 ? out.join("; ") : "—"
}

/** Target, and for lines without a rate (failover, restart) their main numbers. */
function notes(l: Line): string {
  const out: string[] = []
  if (typeof l["meetsTarget"] === "boolean")
    out.push(`target ${str(l["target"], "?")}: ${l["meetsTarget"] ? "met" : "missed"}`)
  else if (typeof l["meetsTargets"] === "boolean")
    out.push(`targets ${l["meetsTargets"] ? "met" : "missed"}`)
  const rss = num(l["maxRssMbWorst"])
  if (rss !== undefined) out.push(`sender peak RSS ${fmt(rss)} MB (worst run)`)
  const rate = num(l["msgsPerSec"]) ?? num(l["rps"])
  if (rate === undefined || l["case"] === "restart-1m") {
    const skip = new Set(["runs", "n", "size", "pending", "target", "expectedMs", "repeatedRuns"])
    const extra = Object.entries(l)
      .filter(
        ([k, v]) => !skip.has(k) && num(v) !== undefined && !/^(msgsPerSec|rps|p50|p99)/.test(k),
      )
      .slice(0, 5)
      .map(([k, v]) => `${k} ${fmt(v as number, 1)}`)
    out.push(...extra)
  }
  return out.join(", ")
}

function table(outcomes: Outcome[]): string {
  const rows = [
    "| script | case | msgs/s | p50 µs | p99 µs | ratio | notes |",
    "| --- | --- | ---: | ---: | ---: | --- | --- |",
  ]
  const failures: string[] = []
  for (const o of outcomes) {
    const name = o.script.name
    if (o.status === "skipped") {
      rows.push(`| ${name} | — | skipped | | | | ${cell(o.reason ?? "")} |`)
      continue
    }
    for (const l of o.lines) {
      if (l["skipped"] === true) {
        rows.push(`| ${name} | ${caseLabel(l)} | skipped | | | | ${cell(str(l["reason"], ""))} |`)
      } else if (typeof l["error"] === "string") {
        rows.push(`| ${name} | ${caseLabel(l)} | failed | | | | ${cell(l["error"])} |`)
      } else if (isSummary(l)) {
        const rate = num(l["msgsPerSec"]) ?? num(l["rps"])
        const p50 = num(l["p50us"]) ?? num(l["p50_us"])
        const p99 = num(l["p99us"]) ?? num(l["p99_us"])
        rows.push(
          `| ${name} | ${cell(caseLabel(l))} | ${fmt(rate)} | ${fmt(p50)} | ${fmt(p99)} | ` +
            `${cell(ratios(l))} | ${cell(notes(l))} |`,
        )
      }
    }
    if (o.status === "failed") {
      rows.push(`| ${name} | — | **failed** (exit ${o.exit ?? "?"}) | | | | stderr below |`)
      failures.push(
        [
          `${name} (exit ${o.exit ?? "?"}), last lines of its stderr:`,
          "",
          "```",
          ...o.stderrTail,
          "```",
        ].join("\n"),
      )
    }
  }
  return [rows.join("\n"), ...failures].join("\n\n")
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<number> {
  const wanted = process.argv.slice(2)
  const unknown = wanted.filter((w) => !SCRIPTS.some((s) => s.name === w))
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown script ${unknown.join(", ")}; known: ${SCRIPTS.map((s) => s.name).join(", ")}\n`,
    )
    return 2
  }
  const scripts = wanted.length === 0 ? SCRIPTS : SCRIPTS.filter((s) => wanted.includes(s.name))
  mkdirSync(RESULTS, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, "-")
  const base = `${RESULTS}${stamp}`
  const files = {
    jsonl: openSync(`${base}.jsonl`, "a"),
    stderr: openSync(`${base}.stderr.log`, "a"),
  }
  const started = performance.now()
  const bar = progress(scripts.length)
  const outcomes: Outcome[] = []
  try {
    for (const [i, script] of scripts.entries()) {
      bar.start(script, i)
      const t0 = performance.now()
      const reason = await script.skip?.()
      const outcome: Outcome =
        reason !== undefined
          ? {
              script,
              status: "skipped",
              reason,
              ms: performance.now() - t0,
              lines: [],
              stderrTail: [],
            }
          : await runScript(script, files, (ms, n) => bar.tick(ms, n))
      outcomes.push(outcome)
      bar.done(outcome)
    }
  } finally {
    bar.stop()
    closeSync(files.jsonl)
    closeSync(files.stderr)
  }
  const total = (performance.now() - started) / 1000
  const header = [
    `Benchmarks${QUICK ? " (BENCH_QUICK=1)" : ""}, ${new Date().toISOString()}, Node ${process.version}, ` +
      `${total.toFixed(0)} s in all. JSON lines: ${base}.jsonl`,
  ]
  const md = `${header.join("\n")}\n\n${table(outcomes)}\n`
  writeFileSync(`${base}.md`, md)
  process.stdout.write(`\n${md}`)
  return outcomes.some((o) => o.status === "failed") ? 1 : 0
}

// Ctrl-C / SIGTERM: the running script's whole group goes first (it has 3 s to clean up).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    const child = running
    process.stderr.write(`\nbench: ${signal}: stopping\n`)
    if (child === undefined) process.exit(130)
    signalGroup(child, "SIGTERM")
    setTimeout(() => {
      signalGroup(child, "SIGKILL")
      process.exit(130)
    }, 3000).unref()
    child.once("exit", () => {
      signalGroup(child, "SIGKILL")
      process.exit(130)
    })
  })
}
process.once("exit", () => {
  if (running) signalGroup(running, "SIGKILL")
})

process.exitCode = await main()
