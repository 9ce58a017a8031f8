import { MemoryJournal } from "../../lib/journal/memory.js"
import { journalSuite } from "../suites/journal.js"

journalSuite("MemoryJournal", async () => ({ journal: new MemoryJournal() }))
