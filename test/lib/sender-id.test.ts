import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it, onTestFinished } from "vitest"
import { LevelJournal } from "../../lib/journal/level.js"
import { MemoryJournal } from "../../lib/journal/memory.js"
import { SENDER_ID_FILE, journalSenderId, senderIdIn } from "../../lib/journal/sender-id.js"

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "pirate-sender-id-"))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const HEX32 = /^[0-9a-f]{32}$/

describe("sender id", () => {
  it("is created once in a LevelJournal's directory and read back after a reopen", async () => {
    const dir = await tempDir()
    const journal = new LevelJournal(dir)
    await journal.open()
    const id = await journalSenderId(journal)
    expect(id).toMatch(HEX32)
    expect((await readFile(join(dir, SENDER_ID_FILE), "latin1")).trim()).toBe(id)
    await journal.close()
    const again = new LevelJournal(dir)
    await again.open()
    onTestFinished(() => again.close())
    expect(await journalSenderId(again)).toBe(id)
    expect(await senderIdIn(await tempDir())).not.toBe(id)
  })

  it("is the journal's own senderId() when it has one: a MemoryJournal's lives with it", async () => {
    const a = new MemoryJournal()
    const b = new MemoryJournal()
    expect(await journalSenderId(a)).toMatch(HEX32)
    expect(await journalSenderId(a)).toBe(await journalSenderId(a))
    expect(await journalSenderId(a)).not.toBe(await journalSenderId(b))
  })

  it("refuses a SENDER_ID file that holds no id, naming it", async () => {
    const dir = await tempDir()
    await writeFile(join(dir, SENDER_ID_FILE), "not an id\n")
    await expect(senderIdIn(dir)).rejects.toMatchObject({
      code: "PIRATE_JOURNAL_CORRUPT",
      message: expect.stringContaining(SENDER_ID_FILE) as string,
    })
  })
})
