//! The layout holds: no module of `server` or `app` reaches, through the
//! names it uses, a module that uses it back. A module may use what its
//! ancestors hold, and a module's own files (its children) are part of it;
//! everything else is an edge, and a circle of edges fails the test with
//! the names that tie it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module by its path from the crate root (`["services", "audit"]`).
type Module = Vec<String>;

/// Every module of the crate whose sources are under `src`, with its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let mut module: Module = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            // A binary's main.rs is a crate of its own: the library is
            // what the layout is about.
            if relative == Path::new("main.rs") {
                continue;
            }
            found.insert(module, path);
        }
    }
    found
}

/// The text of a file without comments, string literals and its tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => &text[..tests],
        None => text,
    };
    let mut code = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        code.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                code.push_str("\"\"");
            }
            // A char literal: '"' must not open a string. Lifetimes
            // ('a) are left as they are.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                let literal = rest.starts_with("\\") || rest.chars().nth(1) == Some('\'');
                if literal {
                    let mut escaped = false;
                    for c in chars.by_ref() {
                        if escaped {
                            escaped = false;
                        } else if c == '\\' {
                            escaped = true;
                        } else if c == '\'' {
                            break;
                        }
                    }
                    code.push_str("' '");
                } else {
                    code.push(c);
                }
            }
            c => code.push(c),
        }
    }
    code
}

/// Every path the code names that starts at `crate`, `super` or `self`,
/// `use` trees expanded (`crate::a::{b, c::d}` is `crate::a::b` and
/// `crate::a::c::d`).
fn paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokenize(code);
    let mut found = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let starts = matches!(tokens[at].as_str(), "crate" | "super" | "self")
            && tokens.get(at + 1).map(String::as_str) == Some("::")
            && (at == 0 || tokens[at - 1] != "::");
        if starts {
            at = tree(&tokens, at, Vec::new(), &mut found);
        } else {
            at += 1;
        }
    }
    found
}

/// Reads one path or `use` tree from `tokens[at]`, adding each path it
/// names to `found` after `prefix`; where it ends.
fn tree(
    tokens: &[String],
    mut at: usize,
    mut prefix: Vec<String>,
    found: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(at).map(String::as_str) {
            Some("{") => {
                at += 1;
                loop {
                    match tokens.get(at).map(String::as_str) {
                        Some("}") => return at + 1,
                        Some(",") => at += 1,
                        Some(_) => at = tree(tokens, at, prefix.clone(), found),
                        None => return at,
                    }
                }
            }
            Some(word) if is_identifier(word) => {
                prefix.push(word.to_string());
                at += 1;
                if tokens.get(at).map(String::as_str) == Some("::") {
                    at += 1;
                    continue;
                }
                found.push(prefix);
                return at;
            }
            _ => {
                if !prefix.is_empty() {
                    found.push(prefix);
                }
                return at;
            }
        }
    }
}

fn is_identifier(word: &str) -> bool {
    word.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && word.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".into());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// The module a path names from `from` (its longest prefix that is a
/// module), and the name it takes from there.
fn resolve(
    from: &Module,
    path: &[String],
    known: &BTreeMap<Module, PathBuf>,
) -> Option<(Module, String)> {
    // `super` is the parent of the module, whichever file holds it.
    let mut base: Module = from.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut module = base;
    let mut taken = String::new();
    for segment in rest {
        let mut deeper = module.clone();
        deeper.push(segment.clone());
        if known.contains_key(&deeper) {
            module = deeper;
        } else {
            taken = segment.clone();
            break;
        }
    }
    Some((module, taken))
}

/// Module → module → the names the first takes from the second.
type Edges = BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>;

fn edges(src: &Path) -> Edges {
    let known = modules(src);
    let mut edges: Edges = BTreeMap::new();
    for (module, file) in &known {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for path in paths(&code) {
            let Some((target, name)) = resolve(module, &path, &known) else {
                continue;
            };
            // Itself, or one of its own files: not an edge.
            if target.starts_with(module) {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .entry(target)
                .or_default()
                .insert(name);
        }
    }
    edges
}

/// The strongly connected groups of more than one module (Tarjan).
fn circles(edges: &Edges) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    fn visit(state: &mut State, module: &Module) {
        state.index.insert(module.clone(), state.next);
        state.low.insert(module.clone(), state.next);
        state.next += 1;
        state.stack.push(module.clone());
        state.on_stack.insert(module.clone());
        let targets: Vec<Module> = state
            .edges
            .get(module)
            .map(|targets| targets.keys().cloned().collect())
            .unwrap_or_default();
        for target in targets {
            if !state.index.contains_key(&target) {
                visit(state, &target);
                let low = state.low[module].min(state.low[&target]);
                state.low.insert(module.clone(), low);
            } else if state.on_stack.contains(&target) {
                let low = state.low[module].min(state.index[&target]);
                state.low.insert(module.clone(), low);
            }
        }
        if state.low[module] == state.index[module] {
            let mut group = Vec::new();
            loop {
                let member = state.stack.pop().unwrap();
                state.on_stack.remove(&member);
                let done = &member == module;
                group.push(member);
                if done {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                state.found.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    let modules: Vec<Module> = edges.keys().cloned().collect();
    for module in &modules {
        if !state.index.contains_key(module) {
            visit(&mut state, module);
        }
    }
    state.found
}

fn described(edges: &Edges, circle: &[Module]) -> String {
    let name = |module: &Module| {
        if module.is_empty() {
            "crate".to_string()
        } else {
            module.join("::")
        }
    };
    let mut lines = vec![format!(
        "circle of {}:",
        circle.iter().map(name).collect::<Vec<_>>().join(", ")
    )];
    for from in circle {
        for (to, names) in &edges[from] {
            if circle.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                lines.push(format!(
                    "  {} -> {}: {}",
                    name(from),
                    name(to),
                    names.join(", ")
                ));
            }
        }
    }
    lines.join("\n")
}

fn assert_no_circles(crate_dir: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src");
    let edges = edges(&src);
    assert!(edges.len() > 5, "no modules read under {}", src.display());
    let circles = circles(&edges);
    assert!(
        circles.is_empty(),
        "modules of {crate_dir} that use each other:\n{}",
        circles
            .iter()
            .map(|circle| described(&edges, circle))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_server_s_modules_use_each_other_in_one_direction_only() {
    assert_no_circles("server");
}

#[test]
fn the_ui_s_modules_use_each_other_in_one_direction_only() {
    assert_no_circles("app");
}

#[test]
fn a_circle_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a;\nmod b;\nmod c;\n");
    write("a.rs", "use crate::b::{Thing, other::Deep};\n");
    write(
        "b/mod.rs",
        "pub mod other;\nuse other::Deep;\n// use crate::c::Commented;\n",
    );
    write(
        "b/other.rs",
        "use super::super::c::More; fn f() { let s = \"crate::a::Quoted\"; }\n",
    );
    write(
        "c.rs",
        "pub fn g() { crate::a::call(); super::b::Thing::new(); }\n",
    );
    let edges = edges(dir.path());
    let circles = circles(&edges);
    assert_eq!(circles.len(), 1, "{edges:?}");
    let text = described(&edges, &circles[0]);
    assert!(text.starts_with("circle of a, b::other, c:"), "{text}");
    assert!(text.contains("a -> b::other: Deep"), "{text}");
    assert!(text.contains("b::other -> c: More"), "{text}");
    assert!(text.contains("c -> a: call"), "{text}");
    assert!(
        !text.contains("Quoted") && !text.contains("Commented"),
        "{text}"
    );
    // A module using what its own files hold is no edge: b -> b::other.
    assert!(!edges.contains_key(&vec!["b".to_string()]), "{edges:?}");
}
