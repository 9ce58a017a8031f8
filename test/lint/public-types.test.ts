/**
 * The published declarations name only public types: every type that the `.d.ts` of an exported
 * name refers to is itself exported by one of the package's entry points (`zeromq-pirate`,
 * `zeromq-pirate/lib`), so that users can name it and no internal type (the queue core's
 * `Dispatcher…`, `CoreOptions`, …) is promised by accident. Members marked `@internal` are left
 * out, as the build does (`stripInternal`).
 */
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const ENTRIES = ["patterns/index.ts", "lib/index.ts"].map((p) => join(ROOT, p))

/** The declarations the build would publish for the entry points, by source path. */
function emitDeclarations(): Map<string, ts.SourceFile> {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(ROOT, "tsconfig.build.json"),
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined },
  )
  if (!config) throw new Error("tsconfig.build.json does not parse")
  const options: ts.CompilerOptions = {
    ...config.options,
    noEmit: false,
    emitDeclarationOnly: true,
    declarationMap: false,
    sourceMap: false,
  }
  const program = ts.createProgram(ENTRIES, options)
  const out = new Map<string, ts.SourceFile>()
  const outDir = options.outDir ?? ROOT
  program.emit(undefined, (file, text) => {
    // dist/lib/x.d.ts → lib/x.ts, so that relative imports resolve against the sources' names.
    const source = join(ROOT, file.slice(outDir.length).replace(/\.d\.ts$/, ".ts"))
    out.set(source, ts.createSourceFile(source, text, ts.ScriptTarget.Latest, true))
  })
  return out
}

function resolveModule(from: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined // node:*, zeromq: not ours
  return resolve(dirname(from), specifier.replace(/\.js$/, ".ts"))
}

interface Site {
  file: string
  name: string
}

const key = (site: Site): string => `${site.file.slice(ROOT.length)}#${site.name}`

/** One emitted file's imports (by local name), re-exports and declarations. */
interface Module {
  imports: Map<string, Site>
  reexports: Map<string, Site>
  locals: Map<string, ts.Node[]>
}

function readModule(file: string, sf: ts.SourceFile): Module {
  const mod: Module = { imports: new Map(), reexports: new Map(), locals: new Map() }
  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      const target = resolveModule(file, st.moduleSpecifier.text)
      const bindings = st.importClause?.namedBindings
      if (target && bindings && ts.isNamedImports(bindings))
        for (const el of bindings.elements)
          mod.imports.set(el.name.text, { file: target, name: (el.propertyName ?? el.name).text })
    } else if (
      ts.isExportDeclaration(st) &&
      st.exportClause &&
      ts.isNamedExports(st.exportClause)
    ) {
      const from =
        st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)
          ? resolveModule(file, st.moduleSpecifier.text)
          : undefined
      for (const el of st.exportClause.elements) {
        const inner = (el.propertyName ?? el.name).text
        // `export { X }` of a local or an import: resolved through `imports`/`locals` below.
        mod.reexports.set(el.name.text, from ? { file: from, name: inner } : { file, name: inner })
      }
    } else {
      for (const name of declaredNames(st))
        mod.locals.set(name, [...(mod.locals.get(name) ?? []), st])
    }
  }
  return mod
}

/** The names exported by the entry points, and the internal declarations they refer to. */
function findLeaks(files: Map<string, ts.SourceFile>): { exported: Set<string>; leaks: string[] } {
  const modules = new Map<string, Module>()
  const moduleOf = (file: string): Module | undefined => {
    let mod = modules.get(file)
    const sf = files.get(file)
    if (!mod && sf) modules.set(file, (mod = readModule(file, sf)))
    return mod
  }
  /** Follows re-exports and imports to the declaration itself. */
  const declaration = (site: Site, depth = 0): Site => {
    const mod = moduleOf(site.file)
    if (!mod || depth > 20 || mod.locals.has(site.name)) return site
    let next = mod.reexports.get(site.name)
    if (!next || (next.file === site.file && next.name === site.name))
      next = mod.imports.get(site.name)
    return next ? declaration(next, depth + 1) : site
  }

  const exported = new Set<string>()
  const publicSites = new Map<string, Site>()
  for (const entry of ENTRIES) {
    const mod = moduleOf(entry)
    if (!mod) throw new Error(`no declarations emitted for ${entry}`)
    for (const name of mod.reexports.keys()) {
      exported.add(name)
      const site = declaration({ file: entry, name })
      publicSites.set(key(site), site)
    }
  }

  const leaks = new Set<string>()
  const seen = new Set<string>()
  const queue = [...publicSites.values()]
  while (queue.length > 0) {
    const site = queue.pop() as Site
    if (seen.has(key(site))) continue
    seen.add(key(site))
    const mod = moduleOf(site.file)
    if (!mod) continue
    const refs = new Set<string>()
    for (const decl of mod.locals.get(site.name) ?? []) collectIdentifiers(decl, refs)
    refs.delete(site.name)
    for (const ref of refs) {
      if (!mod.imports.has(ref) && !mod.locals.has(ref)) continue // a property name, a global
      const target = declaration(mod.imports.get(ref) ?? { file: site.file, name: ref })
      if (!publicSites.has(key(target))) leaks.add(`${key(target)} (in ${key(site)})`)
      queue.push(target)
    }
  }
  return { exported, leaks: [...leaks] }
}

function declaredNames(st: ts.Statement): string[] {
  if (
    (ts.isClassDeclaration(st) ||
      ts.isInterfaceDeclaration(st) ||
      ts.isTypeAliasDeclaration(st) ||
      ts.isFunctionDeclaration(st) ||
      ts.isEnumDeclaration(st)) &&
    st.name
  )
    return [st.name.text]
  if (ts.isVariableStatement(st))
    return st.declarationList.declarations.flatMap((d) =>
      ts.isIdentifier(d.name) ? [d.name.text] : [],
    )
  return []
}

/** Every identifier a declaration mentions, but inside private members (not published). */
function collectIdentifiers(node: ts.Node, into: Set<string>): void {
  if (ts.isPrivateIdentifier(node)) return
  const modifiers = ts.canHaveModifiers(node) ? ts.getModifiers(node) : undefined
  if (modifiers?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword)) return
  if (ts.isIdentifier(node)) into.add(node.text)
  if (ts.isImportTypeNode(node)) throw new Error(`inline import() type: ${node.getText()}`)
  ts.forEachChild(node, (child) => collectIdentifiers(child, into))
}

describe("published declarations", () => {
  it("refer only to names exported by an entry point", { timeout: 60_000 }, () => {
    const { exported, leaks } = findLeaks(emitDeclarations())
    expect(exported.size).toBeGreaterThan(50)
    expect(leaks).toEqual([])
  })
})
