#!/usr/bin/env node
// Entry point of the `pirate` CLI. In a checkout of the repository it runs the TypeScript
// source through tsx; in an installed package it runs the compiled file in dist/.
import { existsSync } from "node:fs"

const source = new URL("./pirate.ts", import.meta.url)
const built = new URL("../dist/bin/pirate.js", import.meta.url)

if (existsSync(source)) {
  const { register } = await import("tsx/esm/api")
  register()
  await import(source.href)
} else {
  await import(built.href)
}
