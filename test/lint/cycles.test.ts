/**
 * No import cycles in the shipped code (lib/, patterns/, bin/): dependencies point down only
 * (README, "Layout"), and a cycle makes a module see another half-initialised at load time.
 * As eslint-plugin-import's `import/no-cycle` (the guard this stands in for, without the
 * dependency), `import type` and `export type` are left out: TypeScript erases them. An
 * `import { type X }` stays (as `import {}`, verbatimModuleSyntax), so it counts.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const DIRS = ["lib", "patterns", "bin"]

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sources(path)
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : []
  })
}

/** Relative specifiers of a module's imports and re-exports that remain at run time, and of its `import()`s. */
export function relativeImports(code: string): string[] {
  const withoutComments = code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  const found: string[] = []
  const patterns = [
    /^\s*(?:import|export)(?!\s+type\b)\b[^"'`;]*?\bfrom\s*["'](\.[^"']+)["']/gm,
    /^\s*import\s*["'](\.[^"']+)["']/gm,
    /\bimport\(\s*["'](\.[^"']+)["']\s*\)/g,
  ]
  for (const pattern of patterns)
    for (const m of withoutComments.matchAll(pattern)) found.push(m[1] as string)
  return found
}

/** The graph of the modules under `dirs`, by path relative to the root. */
export function importGraph(root: string, dirs: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of dirs.flatMap((d) => sources(join(root, d)))) {
    const targets = relativeImports(readFileSync(file, "utf8")).map((spec) =>
      relative(root, resolve(dirname(file), spec.replace(/\.js$/, ".ts"))),
    )
    graph.set(relative(root, file), targets)
  }
  return graph
}

/** Every cycle's modules (the strongly connected components of more than one module, or a self-import), by Tarjan. */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  let next = 0
  const visit = (node: string): void => {
    index.set(node, next)
    low.set(node, next)
    next++
    stack.push(node)
    onStack.add(node)
    for (const to of graph.get(node) ?? []) {
      if (!graph.has(to)) continue // outside the walked directories
      if (!index.has(to)) {
        visit(to)
        low.set(node, Math.min(low.get(node) as number, low.get(to) as number))
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node) as number, index.get(to) as number))
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = []
      let member: string
      do {
        member = stack.pop() as string
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1 || graph.get(node)?.includes(node)) found.push(component.sort())
    }
  }
  for (const node of graph.keys()) if (!index.has(node)) visit(node)
  return found
}

describe("import graph", () => {
  it("reads static, re-export and dynamic imports, but type-only ones", () => {
    const code = [
      'import { a } from "./a.js"',
      'import type { B } from "../b.js"',
      'export type { B2 } from "../b2.js"',
      'import { type B3 } from "./b3.js"',
      "import {",
      "  c,",
      "  type D,",
      '} from "./c.js"',
      'export { e } from "./e.js"',
      'export * from "./f.js"',
      'import "./g.js"',
      'const h = await import("./h.js")',
      'import { z } from "zeromq"',
      '// import { x } from "./commented.js"',
      '/* import { y } from "./commented-too.js" */',
    ].join("\n")
    expect(relativeImports(code).sort()).toEqual(
      ["./a.js", "./b3.js", "./c.js", "./e.js", "./f.js", "./g.js", "./h.js"].sort(),
    )
  })

  it("finds a cycle, and only the modules on it", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a", "d"]],
      ["d", []],
      ["e", ["e"]],
    ])
    expect(cycles(graph)).toEqual([["a", "b", "c"], ["e"]])
    expect(
      cycles(
        new Map([
          ["a", ["b"]],
          ["b", []],
        ]),
      ),
    ).toEqual([])
  })

  it(`has no cycle in ${DIRS.join("/, ")}/`, () => {
    const graph = importGraph(ROOT, DIRS)
    expect(graph.size).toBeGreaterThan(50)
    expect(graph.get("patterns/index.ts")).toContain("patterns/paranoid-pirate/sender.ts")
    expect(cycles(graph)).toEqual([])
  })
})
