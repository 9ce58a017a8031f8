/** `pirate journal`: inspects a sender's journal; replays, purges or repairs dead letters. */
import { readdir, stat } from "node:fs/promises"
import { resolve } from "node:path"
import {
  LevelJournal,
  PirateError,
  isMessageId,
  type DeadLetter,
  type JournalEntry,
  type LevelJournalRepairReport,
} from "../../lib/index.js"
import { UsageError, intOption, parse, type Command } from "../cli.js"

const HELP = `Usage: pirate journal stats   DIR [--json]
       pirate journal pending DIR [--queue NAME] [--limit N] [--after ID] [--json]
       pirate journal dead    DIR [--queue NAME] [--limit N] [--after ID] [--json]
       pirate journal replay  DIR (ID… | --all) [--json]
       pirate journal replay  DIR --queue NAME [--json]
       pirate journal purge   DIR (ID… | --all) [--json]
       pirate journal purge   DIR --queue NAME [--json]
       pirate journal repair  DIR [--json]

Inspects and edits the journal of a Sender (its LevelDB directory, the "journal"
option). Only one process may hold a journal: while the sender runs, these commands
fail with "held by a running sender" and change nothing; stop the sender, or use its
API (e.g. to replay dead letters) instead.

Subcommands:
  stats     counts of pending messages, dead letters, messages scheduled for
            later (send's delay) and send ids remembered (send's id), the oldest
            pending message and its age, the last id handed out, and the
            pending messages and dead letters of each named queue (this reads
            every pending message and dead letter: slow on a large journal)
  pending   one line per pending (unacknowledged) message, in id (send) order:
            id, attempts, enqueued time, payload size, retry time, expiry,
            priority (when not the default 4), key, queue (when not
            "default"), headers, last error
  dead      one line per dead letter: id, attempts, dead-letter time, payload
            size, queue (when not "default"), headers, last error
  replay    moves dead letters back to pending with their attempts reset; the
            sender delivers them when it next starts. Prints how many were
            replayed and names the ids that were not dead letters
  purge     deletes dead letters for good
  repair    repairs a damaged journal in place: keeps every entry that can
            still be read, puts back entries whose key is damaged (each value
            carries its id) and writes LevelDB drops from a damaged log, moves
            damaged ones aside, and lists every entry it could not keep (and
            counts those whose ids cannot be read). Copy the directory first
            (cp -a DIR DIR.bak): what cannot be read is gone

DIR may come right after the subcommand or last ("pirate journal replay ID… DIR").
A message id is 16 hex digits, and any other argument is the directory; write a
directory named like an id as ./NAME.

Options:
      --json       stats: one JSON object; pending, dead: one JSON object per
                   line; replay, purge, repair: one JSON object with the outcome
  -n, --limit N    pending, dead: print at most N entries (default: all)
      --after ID   pending, dead: start after this id (to page through)
      --all        replay, purge: every dead letter
      --queue NAME pending, dead: only the entries of the named queue NAME
                   (a message sent without a queue is in "default");
                   replay, purge: every dead letter of that queue (or, with
                   --all, the same)
  -h, --help       show this help

Exit status: 0 on success; 1 when the journal is missing, held by a sender or
damaged, when replay/purge found none of the ids among the dead letters, or when
repair lost entries or cannot tell whether it did (one line on stderr); 2 for a
usage error.

Examples:
  pirate journal stats ./journal
  pirate journal pending ./journal --limit 20
  pirate journal dead ./journal --json | jq -r .lastError
  pirate journal replay ./journal 0006189a2b3c4d5e 0006189a2b3c4d5f
  pirate journal replay 0006189a2b3c4d5e ./journal
  pirate journal dead ./journal --queue resize
  pirate journal replay ./journal --queue resize
  pirate journal purge ./journal --all
`

const OPTIONS = {
  json: { type: "boolean" },
  limit: { type: "string", short: "n" },
  after: { type: "string" },
  all: { type: "boolean" },
  queue: { type: "string" },
} as const

/** The queue of a message sent without one (the library's DEFAULT_QUEUE). */
const DEFAULT_QUEUE = "default"

type Sub = "stats" | "pending" | "dead" | "replay" | "purge" | "repair"
const SUBS: readonly Sub[] = ["stats", "pending", "dead", "replay", "purge", "repair"]
const TAKES_IDS: readonly Sub[] = ["replay", "purge"]
const PAGE = 1_000

/** A message id is 16 hex digits (no type guard: a DIR is a string that is not one). */
const looksLikeId = (arg: string): boolean => isMessageId(arg)

export const command: Command = {
  summary: "inspect a sender's journal; replay, purge or repair dead letters",
  help: HELP,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, OPTIONS)
    const [name, ...rest] = positionals
    if (name === undefined) throw new UsageError(`expected a subcommand: ${SUBS.join(", ")}`)
    if (!(SUBS as readonly string[]).includes(name)) {
      throw new UsageError(`unknown subcommand "${name}"; expected one of ${SUBS.join(", ")}`)
    }
    const sub = name as Sub
    const queue = values.queue
    if (queue !== undefined && (sub === "stats" || sub === "repair"))
      throw new UsageError("--queue applies to pending, dead, replay and purge")
    if (queue === "") throw new UsageError("--queue must name a queue, got an empty name")
    const { dir, ids } = splitArguments(sub, rest, values.all === true, queue !== undefined)
    const listing = sub === "pending" || sub === "dead"
    if (!listing && values.limit !== undefined)
      throw new UsageError("--limit applies to pending and dead")
    if (!listing && values.after !== undefined)
      throw new UsageError("--after applies to pending and dead")
    if (values.after !== undefined && !looksLikeId(values.after)) {
      throw new UsageError(`--after must be a message id (16 hex digits), got "${values.after}"`)
    }
    const limit = intOption("limit", values.limit) ?? Infinity
    const json = values.json === true
    const out = (output ??= new Output())

    if (sub === "repair") return repair(dir, json, out)
    await assertJournalExists(dir)
    const journal = new LevelJournal(dir)
    try {
      await journal.open()
    } catch (err) {
      throw explain(err, dir)
    }
    try {
      switch (sub) {
        case "stats":
          return await stats(journal, json, out)
        case "pending":
        case "dead":
          return await list(journal, sub, { limit, after: values.after, json, queue }, out)
        case "replay":
        case "purge":
          return await edit(journal, sub, ids, json, out, queue)
      }
    } finally {
      await journal.close()
    }
  },
}

/** Finds DIR (first or last, not an id) and the ids among the arguments after the subcommand. */
function splitArguments(
  sub: Sub,
  args: string[],
  all: boolean,
  byQueue: boolean,
): { dir: string; ids: string[] } {
  if (!TAKES_IDS.includes(sub)) {
    if (all) throw new UsageError("--all applies to replay and purge")
    if (args.length !== 1) {
      throw new UsageError(`expected one argument DIR after "${sub}", got ${args.length}`)
    }
    return { dir: args[0] as string, ids: [] }
  }
  const dirs = args.filter((a) => !looksLikeId(a))
  if (dirs.length === 0) {
    throw new UsageError(
      `expected the journal directory DIR; a name of 16 hex digits is read as a message id, so write it as ./NAME`,
    )
  }
  if (dirs.length > 1) {
    throw new UsageError(
      `expected one DIR and message ids (16 hex digits), got ${dirs.map((d) => `"${d}"`).join(", ")}`,
    )
  }
  const dir = dirs[0] ?? ""
  if (args[0] !== dir && args.at(-1) !== dir) {
    throw new UsageError(`DIR must come right after "${sub}" or last, got "${dir}" among the ids`)
  }
  const ids = args.filter((a) => a !== dir)
  if (all && ids.length > 0) throw new UsageError("give either message ids or --all, not both")
  if (byQueue && ids.length > 0)
    throw new UsageError("give either message ids or --queue NAME, not both")
  if (!all && !byQueue && ids.length === 0)
    throw new UsageError(`expected message ids to ${sub}, or --all (or --queue NAME)`)
  return { dir, ids }
}

/** Read commands must not create an empty journal where there was none. */
async function assertJournalExists(dir: string): Promise<void> {
  const where = resolve(dir)
  const info = await stat(where).catch(() => undefined)
  if (info === undefined)
    throw new Error(`there is no journal in ${where}: the directory does not exist`)
  if (!info.isDirectory())
    throw new Error(`${where} is not a directory; give the journal directory`)
  // A damaged journal (CURRENT lost, tables left) is opened anyway: LevelJournal explains the damage.
  const names = await readdir(where)
  if (!names.includes("CURRENT") && !names.some((n) => /^\d+\.(log|ldb|sst)$/.test(n))) {
    throw new Error(`there is no journal in ${where}; is this the sender's journal directory?`)
  }
}

function explain(err: unknown, dir: string): unknown {
  if (err instanceof PirateError && err.code === "PIRATE_JOURNAL_LOCKED") {
    return new PirateError(
      "PIRATE_JOURNAL_LOCKED",
      `the journal in ${resolve(dir)} is held by a running sender; stop it or use the sender's API to replay`,
      { cause: err },
    )
  }
  return err
}

async function stats(journal: LevelJournal, json: boolean, out: Output): Promise<number> {
  const counts = await journal.stats()
  const lastId = await journal.lastId()
  const [oldest] = await journal.pending({ limit: 1 })
  const now = Date.now()
  const disk = await diskUse(journal.path)
  const queues = await queueCounts(journal)
  if (json) {
    await out.line(
      JSON.stringify({
        path: journal.path,
        pending: counts.pending,
        dead: counts.dead,
        scheduled: counts.scheduled ?? 0,
        sendIds: counts.dedupe ?? 0,
        disk,
        lastId: lastId ?? null,
        oldest: oldest
          ? { id: oldest.id, enqueuedAt: oldest.enqueuedAt, ageMs: now - oldest.enqueuedAt }
          : null,
        queues,
      }),
    )
    return 0
  }
  const rows: [string, string][] = [
    ["journal", journal.path],
    ["pending", String(counts.pending)],
    ["dead", String(counts.dead)],
    ["scheduled", String(counts.scheduled ?? 0)],
    ["send ids", String(counts.dedupe ?? 0)],
    [
      "oldest",
      oldest
        ? `${oldest.id}, enqueued ${iso(oldest.enqueuedAt)} (${age(now - oldest.enqueuedAt)} ago)`
        : "-",
    ],
    ["last id", lastId ?? "-"],
    [
      "on disk",
      `${mib(disk.levelBytes + disk.valueLogBytes)} (LevelDB ${mib(disk.levelBytes)}, value log ${mib(disk.valueLogBytes)} in ${disk.segments} ${disk.segments === 1 ? "segment" : "segments"})`,
    ],
  ]
  for (const [name, c] of Object.entries(queues))
    rows.push(["queue", `${JSON.stringify(name)}: ${c.pending} pending, ${c.dead} dead`])
  for (const [k, v] of rows) await out.line(`${k.padEnd(9)} ${v}`)
  return 0
}

/**
 * The pending messages and dead letters of each queue, by name in sorted order: the journal
 * keeps no count per queue, so this reads every entry (a page at a time).
 */
async function queueCounts(
  journal: LevelJournal,
): Promise<Record<string, { pending: number; dead: number }>> {
  const counts = new Map<string, { pending: number; dead: number }>()
  const count = (e: JournalEntry, field: "pending" | "dead"): void => {
    const name = e.queue ?? DEFAULT_QUEUE
    let c = counts.get(name)
    if (c === undefined) counts.set(name, (c = { pending: 0, dead: 0 }))
    c[field]++
  }
  for (const field of ["pending", "dead"] as const) {
    let after: string | undefined
    for (;;) {
      const page: JournalEntry[] =
        field === "pending"
          ? await journal.pending(after === undefined ? { limit: PAGE } : { after, limit: PAGE })
          : await journal.dead(after === undefined ? { limit: PAGE } : { after, limit: PAGE })
      for (const e of page) count(e, field)
      if (page.length < PAGE) break
      after = page.at(-1)?.id
    }
  }
  return Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** Bytes of the journal's LevelDB files and of its value log (`values/`). */
async function diskUse(
  dir: string,
): Promise<{ levelBytes: number; valueLogBytes: number; segments: number }> {
  const sizes = async (d: string, match: RegExp): Promise<number[]> => {
    const names = await readdir(d).catch(() => [] as string[])
    const out: number[] = []
    for (const n of names.filter((n) => match.test(n)))
      out.push((await stat(`${d}/${n}`).catch(() => undefined))?.size ?? 0)
    return out
  }
  const level = await sizes(dir, /^(\d+\.(log|ldb|sst)|MANIFEST-\d+|CURRENT)$/)
  const values = await sizes(`${dir}/values`, /^\d+\.vlog$/)
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
  return { levelBytes: sum(level), valueLogBytes: sum(values), segments: values.length }
}

function mib(bytes: number): string {
  return bytes < 1024 * 1024
    ? `${(bytes / 1024).toFixed(1)} KiB`
    : `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

async function list(
  journal: LevelJournal,
  sub: "pending" | "dead",
  o: { limit: number; after: string | undefined; json: boolean; queue: string | undefined },
  out: Output,
): Promise<number> {
  let after = o.after
  let left = o.limit
  // Page through: a journal may hold millions of entries.
  while (left > 0 && !out.closed) {
    // With --queue, entries of other queues are read and skipped: read whole pages.
    const limit = o.queue === undefined ? Math.min(PAGE, left) : PAGE
    const page: (JournalEntry | DeadLetter)[] =
      sub === "pending"
        ? await journal.pending(after === undefined ? { limit } : { after, limit })
        : await journal.dead(after === undefined ? { limit } : { after, limit })
    for (const e of page) {
      if (left === 0) break
      if (o.queue !== undefined && (e.queue ?? DEFAULT_QUEUE) !== o.queue) continue
      await out.line(o.json ? jsonLine(e) : textLine(e))
      left--
    }
    if (page.length < limit) break
    after = page.at(-1)?.id
  }
  return 0
}

function textLine(e: JournalEntry | DeadLetter): string {
  const parts = [e.id, `attempts=${e.attempts}`, `enqueued=${iso(e.enqueuedAt)}`]
  if ("deadAt" in e) parts.push(`dead=${iso(e.deadAt)}`)
  parts.push(`size=${e.payload.length}`)
  if (e.notBefore !== undefined) parts.push(`not-before=${iso(e.notBefore)}`)
  if (e.expiresAt !== undefined) parts.push(`expires=${iso(e.expiresAt)}`)
  if (e.priority !== undefined) parts.push(`priority=${e.priority}`)
  if (e.key !== undefined) parts.push(`key=${JSON.stringify(e.key)}`)
  if (e.queue !== undefined && e.queue !== DEFAULT_QUEUE)
    parts.push(`queue=${JSON.stringify(e.queue)}`)
  if (e.headers !== undefined) parts.push(`headers=${JSON.stringify(e.headers)}`)
  if (e.lastError !== undefined) parts.push(`error=${JSON.stringify(e.lastError)}`)
  return parts.join("  ")
}

function jsonLine(e: JournalEntry | DeadLetter): string {
  return JSON.stringify({
    id: e.id,
    attempts: e.attempts,
    enqueuedAt: e.enqueuedAt,
    ...("deadAt" in e ? { deadAt: e.deadAt } : {}),
    size: e.payload.length,
    notBefore: e.notBefore ?? null,
    expiresAt: e.expiresAt ?? null,
    priority: e.priority ?? 4,
    key: e.key ?? null,
    queue: e.queue ?? DEFAULT_QUEUE,
    headers: e.headers ?? null,
    lastError: e.lastError ?? null,
  })
}

async function edit(
  journal: LevelJournal,
  sub: "replay" | "purge",
  ids: string[],
  json: boolean,
  out: Output,
  queue: string | undefined,
): Promise<number> {
  const all = ids.length === 0
  let done: string[] = []
  let asked = ids.length
  if (all && queue !== undefined) {
    // Dead letters of other queues stay: page past them, moving each page's matches.
    let after: string | undefined
    for (;;) {
      const page = await journal.dead(
        after === undefined ? { limit: PAGE } : { after, limit: PAGE },
      )
      const mine = page.filter((d) => (d.queue ?? DEFAULT_QUEUE) === queue).map((d) => d.id)
      asked += mine.length
      if (mine.length > 0) done.push(...(await apply(journal, sub, mine)))
      if (page.length < PAGE) break
      after = page.at(-1)?.id
    }
  } else if (all) {
    // Each page is moved (or deleted) before the next one is read, so start from the top again.
    for (;;) {
      const page = (await journal.dead({ limit: PAGE })).map((d) => d.id)
      if (page.length === 0) break
      asked += page.length
      const moved = await apply(journal, sub, page)
      done.push(...moved)
      if (moved.length < page.length) break // cannot happen, but never loop forever
    }
  } else {
    done = await apply(journal, sub, ids)
  }
  const found = new Set(done)
  const missing = [...new Set(ids)].filter((id) => !found.has(id))
  const verb = sub === "replay" ? "replayed" : "purged"
  if (json) {
    await out.line(JSON.stringify({ [verb]: done, notDead: missing }))
  } else {
    await out.line(
      all
        ? `${verb} ${done.length} dead ${done.length === 1 ? "letter" : "letters"}${queue === undefined ? "" : ` of queue ${JSON.stringify(queue)}`}`
        : `${verb} ${done.length} of ${asked} (${missing.length} not found among the dead letters)`,
    )
    for (const id of missing) process.stderr.write(`pirate: ${id} is not a dead letter\n`)
  }
  return done.length > 0 || (all && asked === 0) ? 0 : 1
}

async function apply(
  journal: LevelJournal,
  sub: "replay" | "purge",
  ids: string[],
): Promise<string[]> {
  if (sub === "replay") {
    const moved = new Set((await journal.replay(ids)).map((e) => e.id))
    return [...new Set(ids)].filter((id) => moved.has(id)) // in the order asked, as printed
  }
  // purgeDead() only counts, so purge one id at a time to name the ones that were not dead.
  const purged: string[] = []
  for (const id of new Set(ids)) if ((await journal.purgeDead([id])) === 1) purged.push(id)
  return purged
}

async function repair(dir: string, json: boolean, out: Output): Promise<number> {
  const where = resolve(dir)
  const info = await stat(where).catch(() => undefined)
  if (info === undefined)
    throw new Error(`there is no journal in ${where}: the directory does not exist`)
  let report: LevelJournalRepairReport
  try {
    report = await LevelJournal.repair(where)
  } catch (err) {
    throw explain(err, dir)
  }
  const complete = report.lost === 0 && report.warnings.length === 0
  if (json) await out.line(JSON.stringify({ path: where, ...report }))
  else for (const line of repairLines(where, report)) await out.line(line)
  if (report.lost > 0) {
    process.stderr.write(
      `pirate: lost ${entries(report.lost)} of the journal in ${where}; ${report.lostEntries.length > 0 ? "the ids that could be read are listed above" : "their ids could not be read"}\n`,
    )
  }
  for (const warning of report.warnings) process.stderr.write(`pirate: ${warning}\n`)
  return complete ? 0 : 1
}

function repairLines(where: string, r: LevelJournalRepairReport): string[] {
  // Scheduled messages (send's delay) are named only when there are some.
  const scheduled = (n: number | undefined): string => (n ? `, ${n} scheduled` : "")
  const before = r.before
    ? `; the counters said ${r.before.pending} pending, ${r.before.dead} dead${scheduled(r.before.scheduled)}`
    : "; the counters could not be read"
  const nothingLost = r.lost === 0 && r.warnings.length === 0 ? "; nothing lost" : ""
  const lines = [
    `repaired ${where}: ${r.pending} pending, ${r.dead} dead${scheduled(r.scheduled)}${before}${nothingLost}`,
  ]
  for (const place of r.damage) lines.push(`damage: ${place}`)
  for (const file of r.movedAside) lines.push(`moved a damaged table aside: ${file}`)
  if (r.levelRepaired) lines.push("LevelDB's own repair ran")
  if (r.recovered > 0) {
    lines.push(
      `put back ${entries(r.recovered)} (from damaged keys, tables or log records; each checked against the checksum and id in its value)`,
    )
  }
  if (r.quarantined > 0) lines.push(`moved ${entries(r.quarantined)} aside (keys q:…)`)
  if (r.redelivered > 0) {
    lines.push(
      `${r.redelivered} acknowledged ${r.redelivered === 1 ? "message is" : "messages are"} pending again (the ack was in a damaged log record): delivered again, not lost`,
    )
  }
  if (r.lost > 0) {
    const unnamed = r.lost - r.lostEntries.reduce((n, e) => n + (e.count ?? 1), 0)
    lines.push(
      `lost ${entries(r.lost)}` +
        (unnamed > 0 ? ` (${unnamed} shown missing by the counters, ids unreadable)` : "") +
        (r.lostEntries.length > 0 ? ":" : ""),
    )
    for (const e of r.lostEntries) {
      lines.push(`${e.id === "" ? "?".repeat(16) : e.id}  ${e.state ?? "?"}  ${e.reason}`)
    }
  }
  for (const warning of r.warnings) lines.push(`warning: ${warning}`)
  return lines
}

function entries(n: number): string {
  return `${n} ${n === 1 ? "entry" : "entries"}`
}

function iso(ms: number): string {
  const d = new Date(ms)
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString()
}

function age(ms: number): string {
  if (ms < 0) return "0 s"
  if (ms < 1_000) return `${Math.round(ms)} ms`
  const s = Math.floor(ms / 1_000)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${s % 60} s`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h} h ${m % 60} min`
  return `${Math.floor(h / 24)} d ${h % 24} h`
}

let output: Output | undefined

/** Writes lines to stdout with backpressure; stops quietly when the reader goes away (`| head`). */
class Output {
  closed = false
  constructor() {
    process.stdout.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err
      this.closed = true
    })
  }
  async line(text: string): Promise<void> {
    if (this.closed) return
    if (!process.stdout.write(`${text}\n`)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          process.stdout.off("drain", done)
          process.stdout.off("error", done)
          resolve()
        }
        process.stdout.on("drain", done)
        process.stdout.on("error", done)
      })
    }
  }
}
