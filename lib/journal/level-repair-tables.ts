/**
 * The table checks of `pirate journal repair` (`repairJournal()` in level-repair.ts): every table
 * file read on its own, the damaged ones' entries kept to be put back, and the newest sequence
 * number of some keys in the sound ones.
 */
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import {
  META,
  decodeDedupe,
  parseDedupeIndexKey,
  parseDedupeKey,
  parseIndexKey,
  decodeMeta,
  identifyValue,
  isQuarantineKey,
} from "./level-format.js"
import { isJournalKey, keyNamedBy } from "./level-repair-state.js"

import { liveTables, readTable, type EntryReader, type TableEntry } from "./level-table.js"
import { decodeSegmentRecord, parseSegmentKey } from "./level-values.js"

export interface DamagedTable {
  name: string
  /** One line per problem, each starting with the file's name. */
  problems: string[]
  entries: TableEntry[]
}

export interface TableCheck {
  damaged: DamagedTable[]
  /** The sound tables and the greatest sequence number in each. */
  sound: { name: string; maxSequence: number }[]
}

/**
 * Reads every table; keeps the entries of the damaged ones only. Tables the MANIFEST does not
 * list are left over from a compaction cut short, and left to LevelDB, which deletes them.
 */
export async function checkTables(dir: string): Promise<TableCheck> {
  const check: TableCheck = { damaged: [], sound: [] }
  const live = await liveTables(dir)
  for (const name of (await readdir(dir)).filter((n) => /^\d+\.(ldb|sst)$/.test(n))) {
    if (live !== undefined && !live.has(parseInt(name, 10))) continue
    const table = await readTable(join(dir, name), journalEntries(dir))
    if (table.problems.length === 0) {
      check.sound.push({ name, maxSequence: table.maxSequence })
      continue
    }
    const problems = table.problems.slice(0, 5).map((p) => `${name}: ${p}`)
    if (table.problems.length > 5) problems.push(`${name}: ${table.problems.length - 5} more`)
    check.damaged.push({ name, problems, entries: table.entries })
  }
  return check
}

/** How a table of a journal is read: its values name their keys, and its keys have shapes. */
function journalEntries(dir: string): EntryReader {
  return {
    keyOf: (value) => keyNamedBy(value, dir),
    plausible: (key, value) =>
      isJournalKey(key) ||
      isQuarantineKey(key) ||
      key === META ||
      parseSegmentKey(key) !== undefined ||
      parseIndexKey(key) !== undefined ||
      parseDedupeKey(key) !== undefined ||
      parseDedupeIndexKey(key) !== undefined ||
      keyNamedBy(value, dir) !== undefined,
    verified: (key, value) =>
      parseIndexKey(key) !== undefined || parseDedupeIndexKey(key) !== undefined
        ? value.length === 0
        : parseDedupeKey(key) !== undefined
          ? typeof decodeDedupe(key, value) === "object"
          : key === META
            ? typeof decodeMeta(value) === "object"
            : parseSegmentKey(key) !== undefined
              ? typeof decodeSegmentRecord(key, value) === "object"
              : typeof identifyValue(value) === "object" || keyNamedBy(value, dir) !== undefined,
  }
}

/** The newest sequence number of each of `keys` in the sound tables that may hold one after `from`. */
export async function sequences(
  dir: string,
  sound: TableCheck["sound"],
  keys: Set<string>,
  from: number,
): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const table of sound) {
    if (table.maxSequence <= from) continue
    for (const e of (await readTable(join(dir, table.name))).entries) {
      if (keys.has(e.key) && (out.get(e.key) ?? -1) < e.sequence) out.set(e.key, e.sequence)
    }
  }
  return out
}
