//! The `MLproject` file as MLflow defines it: entry points with typed
//! parameters and a command template. Commands become an argv with each
//! parameter substituted inside its own token; nothing runs through a shell.

use std::collections::BTreeMap;
use std::path::Path;

use app::model::{EntryPointSpec, ParamKind, ParamSpec};
use serde_yaml::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct MlProject {
    pub name: Option<String>,
    /// `docker_env.image`, the image the project says it runs in.
    pub docker_image: Option<String>,
    /// `python_env`: the file (relative to the project) naming its Python
    /// and packages, as `mlflow run --env-manager virtualenv` builds them.
    pub python_env: Option<String>,
    /// `conda_env`: a conda environment file, which Slipway does not build.
    pub conda_env: Option<String>,
    pub entry_points: Vec<EntryPoint>,
}

/// A `python_env.yaml`: the Python version and what pip installs, build
/// dependencies first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PythonEnv {
    pub python: Option<String>,
    pub build_dependencies: Vec<String>,
    pub dependencies: Vec<String>,
}

impl PythonEnv {
    pub fn parse(text: &str) -> Result<Self, String> {
        let document: Value =
            serde_yaml::from_str(text).map_err(|err| format!("not valid YAML: {err}"))?;
        let list = |key: &str| -> Result<Vec<String>, String> {
            match document.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|item| scalar_text(item).ok_or(format!("`{key}` holds a non-text item")))
                    .collect(),
                Some(_) => Err(format!("`{key}` is not a list")),
            }
        };
        Ok(Self {
            python: document.get("python").and_then(scalar_text),
            build_dependencies: list("build_dependencies")?,
            dependencies: list("dependencies")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntryPoint {
    pub name: String,
    pub params: Vec<ParamSpec>,
    pub command: String,
    tokens: Vec<Vec<Piece>>,
}

/// A command token is literal text and parameter references, concatenated.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Param(String),
}

/// Shell syntax a command would need a shell for. Slipway never uses one, so
/// such a command is refused when the catalog is loaded instead of failing
/// oddly at launch.
const SHELL_OPERATORS: &[&str] = &["&&", "||", "|", ";", "&", ">", ">>", "<", "2>&1", "2>"];

impl MlProject {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let document: Value =
            serde_yaml::from_str(text).map_err(|err| format!("not valid YAML: {err}"))?;
        let name = document.get("name").and_then(scalar_text);
        let docker_image = document
            .get("docker_env")
            .and_then(|env| env.get("image"))
            .and_then(scalar_text);
        let env_file = |key: &str| -> Result<Option<String>, String> {
            let Some(path) = document.get(key).and_then(scalar_text) else {
                return Ok(None);
            };
            let inside = !path.starts_with('/') && !path.split('/').any(|part| part == "..");
            if inside {
                Ok(Some(path))
            } else {
                Err(format!(
                    "`{key}` must be a path inside the project, not {path:?}"
                ))
            }
        };
        let python_env = env_file("python_env")?;
        let conda_env = env_file("conda_env")?;
        let Some(Value::Mapping(entry_points)) = document.get("entry_points") else {
            return Err("no `entry_points` mapping".into());
        };
        let entry_points = entry_points
            .iter()
            .map(|(name, body)| {
                let name = scalar_text(name).ok_or("an entry point name is not text")?;
                EntryPoint::parse(&name, body).map_err(|err| format!("entry point {name:?}: {err}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if entry_points.is_empty() {
            return Err("`entry_points` is empty".into());
        }
        Ok(Self {
            name,
            docker_image,
            python_env,
            conda_env,
            entry_points,
        })
    }

    pub fn entry_point(&self, name: &str) -> Option<&EntryPoint> {
        self.entry_points.iter().find(|entry| entry.name == name)
    }
}

impl EntryPoint {
    fn parse(name: &str, body: &Value) -> Result<Self, String> {
        let command = body
            .get("command")
            .and_then(scalar_text)
            .ok_or("no `command`")?;
        let params = match body.get("parameters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(params)) => params
                .iter()
                .map(|(key, spec)| {
                    let key = scalar_text(key).ok_or("a parameter name is not text")?;
                    parse_param(&key, spec).map_err(|err| format!("parameter {key:?}: {err}"))
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("`parameters` is not a mapping".into()),
        };
        let tokens = tokenize(&command, &params)?;
        Ok(Self {
            name: name.into(),
            params,
            command,
            tokens,
        })
    }

    pub fn spec(&self) -> EntryPointSpec {
        EntryPointSpec {
            name: self.name.clone(),
            params: self.params.clone(),
            command: self.command.clone(),
        }
    }

    /// Checks submitted values against the declared types. Empty or missing
    /// values take the default. Returns every value, or an error per field.
    pub fn resolve(
        &self,
        submitted: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, BTreeMap<String, String>> {
        let mut values = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for param in &self.params {
            let given = submitted.get(&param.name).map(|text| text.trim());
            let value = match (given, &param.default) {
                (Some(text), _) if !text.is_empty() => text.to_string(),
                (_, Some(default)) => default.clone(),
                _ => {
                    errors.insert(param.name.clone(), "required".to_string());
                    continue;
                }
            };
            match check_value(param.kind, &value) {
                Ok(()) => {
                    values.insert(param.name.clone(), value);
                }
                Err(message) => {
                    errors.insert(param.name.clone(), message);
                }
            }
        }
        // Undeclared parameters go on as `--name value`, as `mlflow run -P`
        // passes them.
        for (name, value) in submitted {
            if self.params.iter().any(|param| &param.name == name) {
                continue;
            }
            let value = value.trim();
            if !is_extra_param_name(name) {
                errors.insert(
                    name.clone(),
                    format!(
                        "{name:?} is not a parameter name (letters, digits, '_', '-' and '.', starting with a letter or '_')"
                    ),
                );
            } else if value.is_empty() {
                errors.insert(
                    name.clone(),
                    format!("{name} is not a parameter of this entry point: give it a value (name=value) to pass it on as --{name}"),
                );
            } else if let Err(message) = check_value(ParamKind::String, value) {
                errors.insert(name.clone(), message);
            } else {
                values.insert(name.clone(), value.to_string());
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }

    /// The command as an argv: each parameter's value lands inside the token
    /// that names it, so a value with spaces or quotes stays one argument;
    /// undeclared parameters follow as `--name value`.
    pub fn argv(&self, values: &BTreeMap<String, String>) -> Vec<String> {
        let mut argv: Vec<String> = self
            .tokens
            .iter()
            .map(|pieces| {
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.as_str(),
                        Piece::Param(name) => values.get(name).map_or("", String::as_str),
                    })
                    .collect()
            })
            .collect();
        for (name, value) in values {
            if !self.params.iter().any(|param| &param.name == name) {
                argv.push(format!("--{name}"));
                argv.push(value.clone());
            }
        }
        argv
    }
}

fn parse_param(name: &str, spec: &Value) -> Result<ParamSpec, String> {
    let (kind, default) = match spec {
        // `alpha: float`
        Value::String(kind) => (kind.clone(), None),
        // `alpha: {type: float, default: 0.5}`
        Value::Mapping(_) => (
            spec.get("type")
                .and_then(scalar_text)
                .unwrap_or_else(|| "string".into()),
            spec.get("default").and_then(scalar_text),
        ),
        Value::Null => ("string".into(), None),
        _ => return Err("expected a type name or a mapping with `type` and `default`".into()),
    };
    let kind = match kind.as_str() {
        "float" => ParamKind::Float,
        "int" => ParamKind::Int,
        "string" | "str" => ParamKind::String,
        "path" => ParamKind::Path,
        "uri" => ParamKind::Uri,
        other => {
            return Err(format!(
                "unknown type {other:?} (MLflow's types: float, int, string, path, uri)"
            ));
        }
    };
    if let Some(default) = &default {
        check_value(kind, default).map_err(|err| format!("default {default:?}: {err}"))?;
    }
    Ok(ParamSpec {
        name: name.into(),
        kind,
        default,
    })
}

/// A name `--name` can carry: not an option of its own (`--x=y`), not empty.
fn is_extra_param_name(name: &str) -> bool {
    name.len() <= 100
        && name
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub fn check_value(kind: ParamKind, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    match kind {
        ParamKind::Float => match value.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(()),
            // `1e400` parses, as infinity: a number, just not one a float holds.
            Ok(number) if !number.is_nan() && !value.to_ascii_lowercase().contains("inf") => Err(
                format!("{value:?} is too large for a float (at most about 1.8e308)"),
            ),
            _ => Err(format!("{value:?} is not a number")),
        },
        ParamKind::Int => value
            .parse::<i64>()
            .map(|_| ())
            .map_err(|err| match err.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    format!("{value:?} is out of range for a whole number (64 bits)")
                }
                _ => format!("{value:?} is not a whole number"),
            }),
        ParamKind::String | ParamKind::Path | ParamKind::Uri => Ok(()),
    }
}

/// Splits the command template like a POSIX shell would split words (the
/// template is the project author's, not user input), then finds
/// `{param}` references inside each word. `{{` and `}}` are literal braces,
/// as in Python's `str.format`, which MLflow uses.
fn tokenize(command: &str, params: &[ParamSpec]) -> Result<Vec<Vec<Piece>>, String> {
    let words = shlex::split(command).ok_or("the command has an unclosed quote")?;
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    words
        .iter()
        .map(|word| {
            if SHELL_OPERATORS.contains(&word.as_str()) || word.contains("$(") || word.contains('`') {
                return Err(format!(
                    "the command uses shell syntax ({word}); Slipway runs commands without a shell, \
                     so put the steps in a script and call that"
                ));
            }
            word_pieces(word, params)
        })
        .collect()
}

fn word_pieces(word: &str, params: &[ParamSpec]) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(format!("unclosed {{ in {word:?}"));
                }
                if !params.iter().any(|param| param.name == name) {
                    return Err(format!(
                        "the command uses {{{name}}}, which is not a declared parameter"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param(name));
            }
            '}' => return Err(format!("unmatched }} in {word:?}")),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_LIKE: &str = r#"
name: elasticnet
docker_env:
  image: registry.example.com/elasticnet:1.0
entry_points:
  main:
    parameters:
      alpha: float
      l1_ratio: {type: float, default: 0.1}
    command: "python train.py {alpha} {l1_ratio}"
  report:
    parameters:
      title: {type: string, default: "weekly report"}
      epochs: {type: int, default: 3}
      data: path
    command: "python report.py --title={title} --epochs {epochs} '{data}' {{literal}}"
"#;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_seed_project_becomes_typed_parameters_and_an_argv() {
        let project = MlProject::parse(SEED_LIKE).unwrap();
        assert_eq!(project.name.as_deref(), Some("elasticnet"));
        assert_eq!(
            project.docker_image.as_deref(),
            Some("registry.example.com/elasticnet:1.0")
        );
        let main = project.entry_point("main").unwrap();
        assert_eq!(
            main.params,
            vec![
                ParamSpec {
                    name: "alpha".into(),
                    kind: ParamKind::Float,
                    default: None
                },
                ParamSpec {
                    name: "l1_ratio".into(),
                    kind: ParamKind::Float,
                    default: Some("0.1".into())
                },
            ]
        );
        let resolved = main
            .resolve(&values(&[("alpha", "0.5"), ("l1_ratio", "")]))
            .unwrap();
        assert_eq!(main.argv(&resolved), ["python", "train.py", "0.5", "0.1"]);
        // Undeclared ones follow, as `mlflow run -P` passes them on.
        let resolved = main
            .resolve(&values(&[
                ("alpha", "0.5"),
                ("max_iter", "200"),
                ("note", "a b; c"),
            ]))
            .unwrap();
        assert_eq!(
            main.argv(&resolved),
            [
                "python",
                "train.py",
                "0.5",
                "0.1",
                "--max_iter",
                "200",
                "--note",
                "a b; c"
            ]
        );
    }

    #[test]
    fn a_value_stays_one_literal_argument_whatever_it_contains() {
        let project = MlProject::parse(SEED_LIKE).unwrap();
        let report = project.entry_point("report").unwrap();
        let hostile = "x; rm -rf / && echo $(id) 'quoted' \"double\"";
        let resolved = report
            .resolve(&values(&[
                ("title", hostile),
                ("data", "/data/my file.csv"),
            ]))
            .unwrap();
        assert_eq!(
            report.argv(&resolved),
            [
                "python".to_string(),
                "report.py".into(),
                format!("--title={hostile}"),
                "--epochs".into(),
                "3".into(),
                "/data/my file.csv".into(),
                "{literal}".into(),
            ]
        );
    }

    #[test]
    fn each_bad_value_gets_its_own_error() {
        let project = MlProject::parse(SEED_LIKE).unwrap();
        let main = project.entry_point("main").unwrap();
        let errors = main
            .resolve(&values(&[
                ("l1_ratio", "abc"),
                ("--gamma", "1"),
                ("delta", " "),
            ]))
            .unwrap_err();
        assert_eq!(errors["alpha"], "required");
        assert!(errors["--gamma"].contains("is not a parameter name"));
        assert!(errors["delta"].ends_with("to pass it on as --delta"));
        assert_eq!(errors["l1_ratio"], "\"abc\" is not a number");
        for (value, message) in [
            (
                "1e400",
                "\"1e400\" is too large for a float (at most about 1.8e308)",
            ),
            ("inf", "\"inf\" is not a number"),
            ("NaN", "\"NaN\" is not a number"),
        ] {
            assert_eq!(check_value(ParamKind::Float, value).unwrap_err(), message);
        }
        assert_eq!(
            check_value(ParamKind::Int, "99999999999999999999").unwrap_err(),
            "\"99999999999999999999\" is out of range for a whole number (64 bits)"
        );
        let report = project.entry_point("report").unwrap();
        let errors = report
            .resolve(&values(&[("epochs", "2.5"), ("data", "d")]))
            .unwrap_err();
        assert_eq!(errors["epochs"], "\"2.5\" is not a whole number");
        assert!(main.resolve(&values(&[("alpha", "inf")])).is_err());
        assert!(main.resolve(&values(&[("alpha", "NaN")])).is_err());
    }

    #[test]
    fn projects_a_shell_would_be_needed_for_are_refused_when_loaded() {
        let piped = "entry_points:\n  main:\n    command: \"python a.py && python b.py\"\n";
        assert!(
            MlProject::parse(piped)
                .unwrap_err()
                .contains("shell syntax (&&)")
        );
        let substitution = "entry_points:\n  main:\n    command: \"python a.py $(date)\"\n";
        assert!(
            MlProject::parse(substitution)
                .unwrap_err()
                .contains("shell syntax")
        );
        let undeclared = "entry_points:\n  main:\n    command: \"python a.py {alpha}\"\n";
        assert!(
            MlProject::parse(undeclared)
                .unwrap_err()
                .contains("{alpha}")
        );
        let bad_type = "entry_points:\n  main:\n    parameters: {a: decimal}\n    command: x\n";
        assert!(
            MlProject::parse(bad_type)
                .unwrap_err()
                .contains("unknown type \"decimal\"")
        );
        let bad_default = "entry_points:\n  main:\n    parameters: {a: {type: int, default: x}}\n    command: x {a}\n";
        assert!(
            MlProject::parse(bad_default)
                .unwrap_err()
                .contains("default \"x\"")
        );
        assert!(
            MlProject::parse("name: x\n")
                .unwrap_err()
                .contains("entry_points")
        );
        assert!(
            MlProject::parse("entry_points: [")
                .unwrap_err()
                .contains("YAML")
        );
    }
}
